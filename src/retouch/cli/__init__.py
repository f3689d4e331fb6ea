"""The ``retouch`` command line (issue #5): ``img2img``, ``inpaint``, ``batch``, ``info``, ``models``, ``serve``.

``main(argv)`` is the console-script entry point and the in-process test entry point; it returns the
exit code instead of exiting. ``model_loader`` replaces ``retouch.load_model`` for every command
(tests pass ``lambda model, vae: tiny_model()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retouch.cli.run import ModelLoader

__all__ = ["main"]


def main(argv: list[str] | None = None, *, model_loader: ModelLoader | None = None) -> int:
    """Run the ``retouch`` command on ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    from retouch.cli.app import build_app, run_app
    from retouch.cli.run import Session

    return run_app(build_app(Session(model_loader)), argv)
