"""Writers for textual-inversion files in the formats A1111 reads (spec a1111-prompts.md §4.2), for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image, PngImagePlugin
from safetensors.torch import save_file

from retouch.models.networks import embedding_images


def vectors(n: int, width: int, seed: int = 0) -> torch.Tensor:
    """``(n, width)`` float32 values, distinct per seed."""
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def a1111_data(vec: torch.Tensor, *, parameter_dict: bool = False, **meta: Any) -> dict[str, Any]:
    """What A1111's ``Embedding.save`` writes: ``string_to_token``, ``string_to_param`` and metadata."""
    params: Any = {"*": vec}
    if parameter_dict:
        params = torch.nn.ParameterDict({"*": torch.nn.Parameter(vec.clone())})
    return {"string_to_token": {"*": 265}, "string_to_param": params, "name": "stored-name", **meta}


def write_pt(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def plain_picture(width: int = 24, height: int = 20) -> Image.Image:
    """A picture whose pixels all have three non-zero channels (a preview render stand-in)."""
    return Image.new("RGB", (width, height), (200, 120, 60))


def write_text_chunk_png(path: Path, data: Any) -> Path:
    """A PNG with the embedding in an ``sd-ti-embedding`` text chunk, as A1111's training saves it."""
    info = PngImagePlugin.PngInfo()
    info.add_text(embedding_images.TEXT_CHUNK_KEY, embedding_images.encode_text_chunk(data))
    plain_picture().save(path, format="PNG", pnginfo=info)
    return path


def write_pixel_png(path: Path, data: Any, border: int = 0) -> Path:
    """A PNG with the embedding pixel-encoded beside a picture, optionally inside a black border."""
    image = embedding_images.encode_pixel_embedding(plain_picture(), data, shades=(255, 128, 64))
    if border:
        framed = Image.new("RGB", (image.width + 2 * border, image.height + 2 * border), (0, 0, 0))
        framed.paste(image, (border, border))
        image = framed
    image.save(path, format="PNG")
    return path
