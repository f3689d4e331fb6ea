"""The built-in upscalers of A1111 that need no weights: "None", "Lanczos", "Nearest" (v1.10.1
``modules/upscaler.py``), for the SD upscale script.

A1111's ``Upscaler.upscale(img, scale)``: the target is ``int(w * scale // 8 * 8)`` x
``int(h * scale // 8 * 8)``; up to three times, ``do_upscale`` resizes to ``int(w * scale)`` x
``int(h * scale)`` (LANCZOS or NEAREST), stopping when the size did not change or the target is
reached; then, if the size is not the target, one LANCZOS resize to it. "None" is the identity (the
SD upscale script then skips upscaling altogether). Model upscalers (ESRGAN, R-ESRGAN, SwinIR, LDSR,
ScuNET, DAT) need weights that this project does not ship, so they are not offered.
"""

from __future__ import annotations

from PIL import Image

__all__ = ["UPSCALERS", "upscaler_name", "upscale_image"]

#: A1111's built-in upscalers in its list order (``/sdapi/v1/upscalers``).
UPSCALERS = ("None", "Lanczos", "Nearest")
_FILTERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}


def upscaler_name(value: object) -> str:
    """A1111 accepts an upscaler's name (any case) or its index in :data:`UPSCALERS`; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(UPSCALERS):
            return UPSCALERS[value]
    elif isinstance(value, str):
        for name in UPSCALERS:
            if name.lower() == value.strip().lower():
                return name
    raise ValueError(
        f"upscaler {value!r} is not available; choose one of {', '.join(UPSCALERS)} (or its index 0-"
        f"{len(UPSCALERS) - 1}); model upscalers such as ESRGAN_4x, R-ESRGAN 4x+, SwinIR 4x, LDSR, ScuNET "
        "and DAT need weights this server does not have"
    )


def upscale_image(image: Image.Image, scale: float, upscaler: str) -> Image.Image:
    """Upscale ``image`` by ``scale`` as A1111's built-in upscaler ``upscaler`` does (module docstring)."""
    name = upscaler_name(upscaler)
    if name == "None":
        return image
    if not scale > 0:
        raise ValueError(f"scale factor must be above 0; got {scale!r}")
    dest = (int(image.width * scale // 8 * 8), int(image.height * scale // 8 * 8))
    if min(dest) < 1:
        raise ValueError(f"scale factor {scale} makes {image.width}x{image.height} smaller than 8 pixels")
    img = image
    for _ in range(3):
        before = img.size
        img = img.resize((int(img.width * scale), int(img.height * scale)), resample=_FILTERS[name])
        if img.size == before or (img.width >= dest[0] and img.height >= dest[1]):
            break
    if img.size != dest:
        img = img.resize(dest, resample=Image.Resampling.LANCZOS)
    return img
