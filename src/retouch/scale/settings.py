"""What a Retouch cluster serves and how: checkpoints, replicas, resources, limits (no Ray import).

One frozen :class:`ClusterSettings` travels to every deployment, so the ingress and the model
replicas agree on the checkpoints (by A1111 title) and the limits. :meth:`ClusterSettings.from_args`
reads the ``key=value`` arguments of ``serve run retouch.scale:app`` or a Serve config file's ``args``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from retouch.server.config import ServerConfig, parse_api_auth
from retouch.server.state import ModelInfo

__all__ = ["ClusterSettings", "checkpoint_info"]


def checkpoint_info(source: str) -> ModelInfo:
    """How A1111 names checkpoint ``source`` (a file, a diffusers folder or "demo"), without loading
    it: the same name and hash ``load_model`` gives (file stem and short SHA-256; folder name)."""
    from retouch.models.hashing import model_hash
    from retouch.models.loading import demo_path

    path = demo_path(source) or Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}")
    if path.is_dir():
        return ModelInfo.of(SimpleNamespace(name=path.name, path=str(path), hash=None))
    return ModelInfo.of(SimpleNamespace(name=path.stem, path=str(path), hash=model_hash(path)))


@dataclass(frozen=True)
class ClusterSettings:
    """A Retouch Serve application.

    * ``checkpoints``: what the cluster serves (paths, or "demo"); the first is the default model.
      Requests pick one with ``override_settings.sd_model_checkpoint``.
    * ``replicas``: a fixed number of model replicas; or autoscaling between ``min_replicas`` and
      ``max_replicas`` aiming at ``target_queue`` jobs per replica.
    * ``cpus_per_replica`` / ``gpus_per_replica``: Ray resources each model replica reserves.
    * ``models_per_replica``: checkpoints a replica keeps loaded (least recently used is dropped).
    * ``precision``, ``device``, ``threads``, ``engine_options``: how each replica builds its Engine
      (``engine_options`` are passed to ``Engine(...)`` as keyword arguments).
    * ``server``: the limits of ``retouch serve``; ``max_queue`` jobs may wait cluster-wide beyond
      one running job per replica (at the largest scale).
    * ``namespace`` / ``board_name``: where the shared job board actor lives.
    """

    checkpoints: tuple[str, ...] = ("demo",)
    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_queue: float = 1.0
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    models_per_replica: int = 1
    ingress_replicas: int = 1
    precision: str = "auto"
    device: str | None = None
    threads: int | None = None
    engine_options: tuple[tuple[str, Any], ...] = ()
    server: ServerConfig = field(default_factory=ServerConfig)
    namespace: str = "retouch"
    board_name: str = "retouch-jobs"

    def __post_init__(self) -> None:
        if not self.checkpoints:
            raise ValueError("ClusterSettings needs at least one checkpoint")
        for name in ("replicas", "models_per_replica", "ingress_replicas"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)!r}")
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ValueError("give both min_replicas and max_replicas for autoscaling, or neither")
        if self.autoscaling and not 0 <= self.min_replicas <= self.max_replicas >= 1:  # type: ignore[operator]
            raise ValueError(
                f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1; "
                f"got {self.min_replicas} and {self.max_replicas}"
            )
        for name in ("cpus_per_replica", "gpus_per_replica", "target_queue"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be a non-negative number; got {getattr(self, name)!r}")

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas is not None

    @property
    def capacity(self) -> int:
        """Model replicas at the largest scale: the jobs that can run at once."""
        return self.max_replicas if self.max_replicas is not None else self.replicas

    @property
    def max_active(self) -> int:
        """Jobs admitted at once cluster-wide (queued or running); one more gets 429."""
        return self.server.max_queue + self.capacity

    def models(self) -> tuple[ModelInfo, ...]:
        return tuple(checkpoint_info(c) for c in self.checkpoints)

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> ClusterSettings:
        """From ``serve run`` / config-file arguments: ``model`` (comma-separated), the field names
        above, and any :class:`ServerConfig` field (``api_auth`` as ``user:pass``)."""
        own = {f.name for f in fields(cls)} - {"server", "checkpoints", "engine_options"}
        limits = {f.name for f in fields(ServerConfig)}
        unknown = sorted(set(args) - own - limits - {"model", "engine_options"})
        if unknown:
            raise ValueError(f"unknown argument(s) {', '.join(unknown)}; known: model, {', '.join(sorted(own | limits))}")
        kw: dict[str, Any] = {k: _typed(cls, k, v) for k, v in args.items() if k in own}
        server = {k: _typed(ServerConfig, k, v) for k, v in args.items() if k in limits}
        if "api_auth" in server:
            server["api_auth"] = parse_api_auth(str(args["api_auth"]))
        models = args.get("model", "demo")
        kw["checkpoints"] = tuple(models.split(",")) if isinstance(models, str) else tuple(models)
        kw["engine_options"] = tuple(sorted(dict(args.get("engine_options") or {}).items()))
        return cls(server=ServerConfig(**server), **kw)


def _typed(cls: type, name: str, value: Any) -> Any:
    """A command-line string turned into the field's type (int, float, or None for "none")."""
    default = next(f.default for f in fields(cls) if f.name == name)
    if not isinstance(value, str) or isinstance(default, str) or name in ("api_auth", "device"):
        return value
    if value.lower() in ("none", "null", ""):
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    raise ValueError(f"argument {name} must be a number; got {value!r}")
