"""Connecting to Ray: an existing cluster, or a local one bound to loopback only; the board actor.

A local cluster (no ``address``) listens on 127.0.0.1 only: Ray picks the machine's outward address
unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before Ray is imported (Ray's own switch for a
single-machine node), so :func:`ray_session` sets it (unless the user did) and checks the node's
address afterwards. Workers get this process's ``retouch`` on their ``PYTHONPATH``, so a source
checkout runs the same code in every replica.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retouch.scale.settings import ClusterSettings

__all__ = ["RAY_MISSING", "require_ray", "prefer_loopback", "ray_session", "runtime_env", "board_actor", "drop_board"]

RAY_MISSING = "Ray is not installed; install the extra with: pip install 'retouch[ray]'"
_LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def prefer_loopback() -> None:
    """Make a local Ray node take 127.0.0.1 (call before Ray is imported; a value the user set wins)."""
    os.environ.setdefault(_LOOPBACK_SWITCH, "0")


def require_ray() -> None:
    """Raise ImportError with :data:`RAY_MISSING` unless Ray Serve and Ray Data can be imported."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
        import ray.serve  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{RAY_MISSING} ({exc})") from None


def runtime_env() -> dict[str, Any]:
    """Ray's ``runtime_env`` that puts this process's ``retouch`` first on the workers' path."""
    import retouch

    root = str(Path(retouch.__file__).resolve().parents[1])
    paths = [root, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


@contextlib.contextmanager
def ray_session(
    address: str | None = None, *, num_cpus: float | None = None, temp_dir: str | None = None
) -> Iterator[bool]:
    """Use the Ray connection this process already has, or connect to ``address``, or start a local
    cluster on loopback (``num_cpus``, logs under ``temp_dir``); yields whether it started Ray, and
    shuts down only what it started."""
    if address is None:
        prefer_loopback()
    require_ray()
    import ray

    if ray.is_initialized():
        yield False
        return
    if address is not None:
        ray.init(address=address, runtime_env=runtime_env(), log_to_driver=False)
    else:
        ray.init(
            num_cpus=int(num_cpus) if num_cpus is not None else None, include_dashboard=False,
            _temp_dir=temp_dir, runtime_env=runtime_env(), log_to_driver=False,
        )
        node_ip = ray.util.get_node_ip_address()
        if node_ip not in ("127.0.0.1", "::1", "localhost"):
            ray.shutdown()
            raise RuntimeError(
                f"the local Ray node took address {node_ip}, not loopback; set {_LOOPBACK_SWITCH}=0 "
                "before Ray is imported"
            )
    try:
        yield True
    finally:
        ray.shutdown()


def board_actor(settings: ClusterSettings) -> Any:
    """The cluster's :class:`~retouch.scale.board.JobBoard` actor (detached, named after the
    settings), created by whoever asks first."""
    import ray

    from retouch.scale.board import JobBoard

    cfg = settings.server
    actor = ray.remote(num_cpus=0, max_restarts=0)(JobBoard)
    return actor.options(  # type: ignore[attr-defined]
        name=settings.board_name, namespace=settings.namespace, lifetime="detached", get_if_exists=True,
    ).remote(settings.max_active, settings.capacity, cfg.result_ttl_s, cfg.max_results)


def drop_board(settings: ClusterSettings) -> None:
    """Kill the board actor (at shutdown of ``retouch serve --ray``; jobs on it are lost)."""
    import ray

    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(settings.board_name, namespace=settings.namespace))
