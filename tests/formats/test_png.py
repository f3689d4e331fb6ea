"""PNG parameters chunk and infotext reading (spec §6.4)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouch.formats.png import decode_user_comment, read_infotext, save_png

TEXT = "a hat\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, Seed: 5"


def _chunk_types(data: bytes) -> list[bytes]:
    pos, types = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        types.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return types


def test_latin1_text_goes_to_text_chunk(tmp_path: Path) -> None:
    path = save_png(Image.new("RGB", (8, 8), (1, 2, 3)), tmp_path / "a.png", TEXT)
    data = path.read_bytes()
    assert b"tEXt" in _chunk_types(data)
    assert b"tEXtparameters\x00" + TEXT.encode("latin-1") in data
    assert read_infotext(path) == TEXT


def test_non_latin1_text_goes_to_itxt_chunk(tmp_path: Path) -> None:
    text = "赤い帽子\nSteps: 20, Sampler: Euler, Seed: 5"
    path = save_png(Image.new("RGB", (8, 8)), tmp_path / "u.png", text)
    types = _chunk_types(path.read_bytes())
    assert b"iTXt" in types and b"tEXt" not in types
    assert read_infotext(path) == text


def test_pixels_preserved_and_no_temp_left(tmp_path: Path) -> None:
    a = np.random.default_rng(0).integers(0, 256, (10, 12, 4), dtype=np.uint8)
    path = save_png(Image.fromarray(a), tmp_path / "x.png", None)
    assert np.array_equal(np.asarray(Image.open(path)), a)
    assert read_infotext(path) is None
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_no_overwrite_keeps_existing(tmp_path: Path) -> None:
    target = tmp_path / "00001-5.png"
    save_png(Image.new("RGB", (4, 4), (255, 0, 0)), target, "first\nSteps: 1, Seed: 1, Sampler: Euler")
    with pytest.raises(FileExistsError):
        save_png(Image.new("RGB", (4, 4)), target, "second", overwrite=False)
    assert read_infotext(target) == "first\nSteps: 1, Seed: 1, Sampler: Euler"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00001-5.png"]
    save_png(Image.new("RGB", (4, 4)), target, "third")
    assert read_infotext(target) == "third"


@pytest.mark.parametrize("codec", ["utf-16-be", "utf-16-le"])
def test_jpeg_exif_user_comment(tmp_path: Path, codec: str) -> None:
    text = "héllo, 日本\nSteps: 3, Seed: 4, Sampler: Euler"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode(codec)
    path = tmp_path / "c.jpg"
    Image.new("RGB", (8, 8)).save(path, format="JPEG", exif=exif)
    assert read_infotext(path) == text


def test_user_comment_charsets() -> None:
    assert decode_user_comment(b"ASCII\x00\x00\x00plain text\x00") == "plain text"
    assert decode_user_comment(b"\x00" * 8 + "ünï".encode()) == "ünï"
    assert decode_user_comment(b"UNICODE\x00" + "\ufeffabc".encode("utf-16-le")) == "abc"
    assert decode_user_comment("already text") == "already text"
    assert decode_user_comment(b"UNICODE\x00") is None


def test_gif_comment() -> None:
    buf = io.BytesIO()
    Image.new("P", (4, 4)).save(buf, format="GIF", comment=b"gif prompt\nSteps: 1, Seed: 2, Sampler: Euler")
    assert (
        read_infotext(Image.open(io.BytesIO(buf.getvalue())))
        == "gif prompt\nSteps: 1, Seed: 2, Sampler: Euler"
    )


def test_read_infotext_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_infotext(tmp_path / "missing.png")
    (tmp_path / "t.txt").write_text("text")
    with pytest.raises(ValueError, match="not an image"):
        read_infotext(tmp_path / "t.txt")
