"""Retouch on Ray: the same API on many model replicas (Ray Serve) and folder batches (Ray Data).

Needs the ``ray`` extra (``pip install 'retouch[ray]'``); nothing outside this package imports Ray,
and importing this package does not either (the deployments are made when an app is built).

* ``retouch serve --ray`` / :func:`app` (``serve run retouch.scale:app model=a.safetensors,b.safetensors
  replicas=2``): the routes of ``retouch serve`` on a FastAPI ingress before model replicas, with
  job state, options and the queue limit shared on one board actor (:mod:`retouch.scale.board`).
* ``retouch batch --ray`` (:mod:`retouch.scale.batch`): the folder batch as a Ray Data pipeline.
"""

from __future__ import annotations

from typing import Any

from retouch.scale.settings import ClusterSettings

__all__ = ["app", "ClusterSettings"]


def app(args: dict[str, Any] | None = None) -> Any:
    """Ray Serve application builder: ``serve run retouch.scale:app model=demo replicas=2``.

    ``args`` are :meth:`ClusterSettings.from_args` arguments (a Serve config file's ``args``)."""
    from retouch.scale.cluster import require_ray

    require_ray()
    from retouch.scale.deploy import build_app

    return build_app(ClusterSettings.from_args(dict(args or {})))
