"""Retouch: A1111-compatible img2img and inpainting for latent diffusion models.

Public API::

    from retouch import Img2Img, Engine, load_model
    result = Engine(load_model("demo")).run(Img2Img(prompt="...", init_images=[image], mask=mask))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retouch.params import Img2Img, InpaintArea, MaskedContent, ParamError, ResizeMode

if TYPE_CHECKING:
    from retouch.engine import Engine, Result, StepInfo
    from retouch.models.bundle import ModelBundle

__all__ = [
    "Img2Img", "ResizeMode", "MaskedContent", "InpaintArea", "ParamError",
    "Engine", "Result", "StepInfo", "ModelBundle", "load_model",
]


def load_model(path: Any, **kwargs: Any) -> ModelBundle:
    """Load a checkpoint (single file or diffusers folder) offline; see ``retouch.models.loading``."""
    from retouch.models.loading import load_model as _load

    return _load(path, **kwargs)


def __getattr__(name: str) -> Any:
    # The engine pulls in torch and diffusers; import it on first use, not at package import.
    if name in ("Engine", "Result", "StepInfo"):
        from retouch import engine

        return getattr(engine, name)
    if name == "ModelBundle":
        from retouch.models.bundle import ModelBundle

        return ModelBundle
    raise AttributeError(f"module 'retouch' has no attribute {name!r}")
