"""The Ray Serve application: a FastAPI ingress (the routes of ``retouch serve``) before model replicas.

:func:`build_app` binds the two deployments for ``serve.run`` or a Serve config file; the ingress
builds the very app ``retouch serve`` runs (:func:`retouch.server.app.create_app`) with a
cluster-backed :class:`~retouch.server.state.ServerState`: the :class:`ClusterQueue` and the
:class:`SharedOptions` on the board actor. :func:`serve_cluster` is ``retouch serve --ray``.
"""

from __future__ import annotations

import logging
from typing import Any

from retouch.scale.cluster import board_actor, drop_board, ray_session
from retouch.scale.replica import worker_class
from retouch.scale.settings import ClusterSettings
from retouch.server.config import ServerConfig
from retouch.server.state import ServerState

__all__ = ["build_app", "serve_cluster", "APP_NAME"]

APP_NAME = "retouch"
log = logging.getLogger("retouch.scale")


def cluster_state(settings: ClusterSettings, workers: Any, config: ServerConfig) -> ServerState:
    """The ingress's server state: no engine, every checkpoint, queue and options on the board."""
    from retouch.scale.queue import ClusterQueue, SharedOptions

    board = board_actor(settings)
    models = settings.models()
    names = tuple(n for m in models for n in m.names)
    titles = {n: m.title for m in reversed(models) for n in m.names}
    options = SharedOptions(board, models[0].title, names, titles)
    queue = ClusterQueue(board, workers, settings, options)
    return ServerState(None, config, models=models, queue=queue, options=options)


def _ingress_class() -> type:
    from ray import serve

    @serve.ingress()
    class RetouchIngress:
        def __init__(self, workers: Any, settings: ClusterSettings) -> None:
            self.workers = workers
            self.settings = settings

        def __serve_build_asgi_app__(self) -> Any:
            from retouch.server.app import create_app

            return create_app(
                config=self.settings.server,
                state_factory=lambda config: cluster_state(self.settings, self.workers, config),
            )

    return RetouchIngress


def _scaling(settings: ClusterSettings) -> dict[str, Any]:
    if not settings.autoscaling:
        return {"num_replicas": settings.replicas}
    return {"autoscaling_config": {
        "min_replicas": settings.min_replicas, "max_replicas": settings.max_replicas,
        "target_ongoing_requests": settings.target_queue,
    }}


def build_app(settings: ClusterSettings) -> Any:
    """The bound Serve application (ingress -> model deployment) for ``settings``; a missing
    checkpoint raises FileNotFoundError here, before anything is deployed."""
    from ray import serve

    settings.models()
    resources = {"num_cpus": settings.cpus_per_replica, "num_gpus": settings.gpus_per_replica}
    model: Any = serve.deployment(
        worker_class(settings.models_per_replica), name="RetouchModel", max_ongoing_requests=1,
        ray_actor_options=resources, **_scaling(settings),
    )
    ingress: Any = serve.deployment(
        _ingress_class(), name="RetouchIngress", num_replicas=settings.ingress_replicas,
        max_ongoing_requests=max(256, 4 * settings.max_active), ray_actor_options={"num_cpus": 0},
    )
    return ingress.bind(model.bind(settings), settings)


def serve_cluster(
    settings: ClusterSettings, host: str = "127.0.0.1", port: int = 7861, *, address: str | None = None,
    num_cpus: float | None = None,
) -> None:
    """``retouch serve --ray``: run the app on ``address`` (or a local loopback cluster) until Ctrl-C."""
    from ray import serve

    settings.models()  # a missing checkpoint fails here, before Ray starts
    with ray_session(address, num_cpus=num_cpus):
        serve.start(http_options={"host": host, "port": port})
        try:
            serve.run(build_app(settings), name=APP_NAME, route_prefix="/", blocking=True)
        except KeyboardInterrupt:
            log.info("stopping")
        finally:
            serve.delete(APP_NAME)
            drop_board(settings)
