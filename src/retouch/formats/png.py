"""PNG files with A1111's ``parameters`` chunk, and reading infotext back from any image (spec §6.4).

Writing: the infotext goes into a text chunk with keyword ``parameters``; Pillow writes ``tEXt`` when
the text is Latin-1 and ``iTXt`` (UTF-8) otherwise, exactly A1111's behaviour. Reading follows A1111's
``read_info_from_image``: the ``parameters`` chunk, else the EXIF UserComment (JPEG/WebP/AVIF), else a
GIF comment.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from PIL import Image, PngImagePlugin, UnidentifiedImageError

__all__ = ["png_info", "save_png", "read_infotext", "decode_user_comment"]

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286


def png_info(infotext: str | None) -> PngImagePlugin.PngInfo | None:
    """A ``PngInfo`` holding ``infotext`` under keyword ``parameters``; None when there is no text."""
    if infotext is None:
        return None
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)  # tEXt if Latin-1, else iTXt (spec §6.4)
    return info


def save_png(
    image: Image.Image, path: str | os.PathLike[str], infotext: str | None = None, *, overwrite: bool = True
) -> Path:
    """Write ``image`` as PNG with the ``parameters`` chunk; return the path written.

    The file appears complete or not at all (written to a temporary name in the same folder first), so
    an interrupted run never leaves a truncated PNG that a resumed batch would take as done. With
    ``overwrite=False`` an existing file is left alone and :class:`FileExistsError` is raised.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        image.save(tmp, format="PNG", pnginfo=png_info(infotext))
        if overwrite:
            os.replace(tmp, target)
        else:
            _link_exclusive(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


def _link_exclusive(src: Path, dst: Path) -> None:
    """Give ``src`` the name ``dst`` unless ``dst`` exists (FileExistsError), atomically where possible."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem: exclusive create, then copy the bytes
        with dst.open("xb") as out:
            out.write(src.read_bytes())


def decode_user_comment(value: bytes | str) -> str | None:
    """Text of an EXIF UserComment: 8-byte charset prefix ``UNICODE``/``ASCII``/none, then the data."""
    if isinstance(value, str):
        return value.rstrip("\x00") or None
    prefix, data = value[:8], value[8:]
    if prefix == b"UNICODE\x00":
        if data[:2] in (b"\xfe\xff", b"\xff\xfe"):
            text = data.decode("utf-16")
        else:  # no BOM: ASCII-range text puts its zero bytes first in big-endian (piexif, A1111)
            even_zeros = data[0::2].count(0)
            odd_zeros = data[1::2].count(0)
            text = data.decode("utf-16-be" if even_zeros >= odd_zeros else "utf-16-le", errors="replace")
    elif prefix == b"ASCII\x00\x00\x00":
        text = data.decode("latin-1")
    elif prefix == b"\x00" * 8:  # "undefined" charset
        text = data.decode("utf-8", errors="replace")
    else:  # no charset prefix at all (non-conforming writers)
        text = value.decode("utf-8", errors="replace")
    return text.rstrip("\x00") or None


def _infotext_of(image: Image.Image) -> str | None:
    text = image.info.get("parameters")
    if text is None and isinstance(image, PngImagePlugin.PngImageFile):
        text = image.text.get("parameters")  # chunks after the image data
    if isinstance(text, str):
        return text
    try:
        comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # unreadable EXIF: treat as absent, as A1111 does
        comment = None
    if comment:
        return decode_user_comment(comment)
    gif_comment = image.info.get("comment")
    if isinstance(gif_comment, bytes) and gif_comment:
        return gif_comment.decode("utf-8", errors="replace")
    return None


def read_infotext(image_or_path: Image.Image | str | os.PathLike[str]) -> str | None:
    """The A1111 infotext stored in an image or image file, or None when it has none (spec §6.4).

    A path must name an existing image file (FileNotFoundError, or ValueError when it is not an image).
    """
    if isinstance(image_or_path, Image.Image):
        return _infotext_of(image_or_path)
    path = Path(image_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with Image.open(path) as image:
            return _infotext_of(image)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image") from None
