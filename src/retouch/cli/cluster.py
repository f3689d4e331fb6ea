"""``--ray`` for ``retouch serve`` and ``retouch batch``: the options, and the hand-over to
:mod:`retouch.scale` (imported only when ``--ray`` is given; without Ray, one line names the extra)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from retouch.cli.errors import EXIT_FAILED, CliError
from retouch.cli.options import _in_panel, _opt

__all__ = ["RAY_SERVE", "RAY_BATCH", "pop_ray_options", "serve_on_ray", "batch_on_ray"]

_COMMON: tuple[inspect.Parameter, ...] = (
    _opt("ray", bool, False, "--ray", help="Run on Ray (needs the extra: pip install 'retouch\\[ray]')."),
    _opt("address", str | None, None, "--address",
         help="Ray cluster address (default: start a local cluster on 127.0.0.1)."),
    _opt("replicas", int, 1, "--replicas", help="Model replicas (engine actors)."),
    _opt("cpus_per_replica", float, 1.0, "--cpus-per-replica", help="CPUs each replica reserves."),
    _opt("gpus_per_replica", float, 0.0, "--gpus-per-replica", help="GPUs each replica reserves."),
)
RAY_BATCH = _in_panel("Ray", _COMMON)
RAY_SERVE = _in_panel("Ray", (
    *_COMMON,
    _opt("min_replicas", int | None, None, "--min-replicas", help="Autoscaling: fewest replicas."),
    _opt("max_replicas", int | None, None, "--max-replicas", help="Autoscaling: most replicas."),
    _opt("target_queue", float, 1.0, "--target-queue", help="Autoscaling: jobs per replica to aim at."),
    _opt("models_per_replica", int, 1, "--models-per-replica", help="Checkpoints a replica keeps loaded."),
))
_NAMES = {p.name for p in RAY_SERVE}


def pop_ray_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Take the Ray options out of a command's options (the rest are generation options)."""
    return {name: opts.pop(name) for name in list(opts) if name in _NAMES}


def _scale(module: str, address: str | None) -> Any:
    """``retouch.scale.<module>``, or the one-line error naming the extra."""
    from retouch.scale.cluster import prefer_loopback, require_ray

    if address is None:  # a local cluster: loopback only, decided before Ray is imported
        prefer_loopback()
    try:
        require_ray()
    except ImportError as exc:
        raise CliError(str(exc).split(" (")[0], EXIT_FAILED) from None
    import importlib

    return importlib.import_module(f"retouch.scale.{module}")


def serve_on_ray(models: list[str], host: str, port: int, server: dict[str, Any], ray: dict[str, Any]) -> None:
    """``retouch serve --ray``: the settings from the command line, then :func:`serve_cluster`."""
    deploy = _scale("deploy", ray["address"])
    from retouch.scale.settings import ClusterSettings
    from retouch.server.config import ServerConfig, parse_api_auth

    try:
        config = ServerConfig(max_queue=server["max_queue"], api_auth=parse_api_auth(server["api_auth"]))
        settings = ClusterSettings(
            checkpoints=tuple(models), replicas=ray["replicas"], min_replicas=ray["min_replicas"],
            max_replicas=ray["max_replicas"], target_queue=ray["target_queue"],
            cpus_per_replica=ray["cpus_per_replica"], gpus_per_replica=ray["gpus_per_replica"],
            models_per_replica=ray["models_per_replica"], precision=server["precision"],
            device=server["device"], threads=server["threads"], server=config,
            engine_options=tuple((k, str(v)) for k in ("lora_dir", "embeddings_dir")
                                 if (v := server.get(k)) is not None)
            + ((("backend", server["backend"]),) if server.get("backend", "torch") != "torch" else ()),
        )
        deploy.serve_cluster(settings, host, port, address=ray["address"])
    except (OSError, ValueError, RuntimeError) as exc:
        raise CliError(str(exc)) from None


def batch_on_ray(session: Any, settings: Any, input_dir: Path, outdir: Path, mask_dir: Path | None,
                 mask: Path | None, ray: dict[str, Any]) -> int:
    """``retouch batch --ray``: :func:`retouch.scale.batch.run_batch_ray`."""
    batch = _scale("batch", ray["address"])
    opts = batch.RayBatchOptions(
        address=ray["address"], replicas=ray["replicas"], cpus_per_replica=ray["cpus_per_replica"],
        gpus_per_replica=ray["gpus_per_replica"],
    )
    return int(batch.run_batch_ray(session, settings, input_dir, outdir, mask_dir, mask, opts))
