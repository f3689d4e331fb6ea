"""Procedural captioned scenes for the demo model: coloured shapes on plain, gradient or textured grounds.

Every scene is a pure function of ``(index, split)``: the same index always draws the same picture, so
the training set needs no files. ``split="train"`` and ``split="heldout"`` use disjoint seed streams;
evaluation and the README examples use held-out scenes only.

A scene is 1-3 shapes (circle, square, triangle, diamond) of a named colour and size (small/large) at a
named position (left/right/top/bottom/center) on a background of another named colour. Captions say
what is in the scene, e.g. "a large red circle on the left and a small blue square at the top, on a
yellow background"; ``caption`` drops the position/background/size phrases at random so that short
prompts ("a large red circle") are as familiar to the model as full descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (30, 160, 50),
    "blue": (35, 75, 215),
    "yellow": (245, 215, 30),
    "orange": (245, 130, 20),
    "purple": (135, 50, 185),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle", "diamond")
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75), "center": (0.5, 0.5),
}
POSITION_WORDS = {
    "left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
    "center": "in the center",
}
_SPLIT_OFFSET = {"train": 0, "heldout": 1 << 40}


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str  # "small" | "large"
    position: str
    cx: float  # centre, pixels
    cy: float
    radius: float  # half the extent, pixels


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    background: str
    style: str  # "plain" | "gradient" | "textured"
    seed: int


def scene_rng(index: int, split: str = "train") -> np.random.Generator:
    """The generator that draws scene ``index`` of ``split`` ("train" or "heldout")."""
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(_SPLIT_OFFSET)}")
    return np.random.default_rng([index + _SPLIT_OFFSET[split], 20261122])


def draw_scene(index: int, split: str = "train") -> Scene:
    """The scene description for ``index``: shapes, background colour and style."""
    rng = scene_rng(index, split)
    n = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    colours = rng.permutation(len(COLOURS))
    background = COLOURS[colours[0]]
    positions = rng.permutation(list(POSITIONS))[:n]
    shapes = []
    for i in range(n):
        large = rng.random() < (0.75 if n == 1 else 0.35 if i == 0 else 0.1)
        radius = float(rng.uniform(21, 29) if large else rng.uniform(8, 13))
        fx, fy = POSITIONS[str(positions[i])]
        jitter = 6.0 if large else 9.0
        cx = float(np.clip(fx * SIZE + rng.uniform(-jitter, jitter), radius + 2, SIZE - radius - 2))
        cy = float(np.clip(fy * SIZE + rng.uniform(-jitter, jitter), radius + 2, SIZE - radius - 2))
        shapes.append(Shape(
            kind=SHAPES[int(rng.integers(len(SHAPES)))], colour=COLOURS[colours[1 + i]],
            size="large" if large else "small", position=str(positions[i]), cx=cx, cy=cy, radius=radius,
        ))
    style = str(rng.choice(["plain", "gradient", "textured"], p=[0.4, 0.35, 0.25]))
    return Scene(shapes=tuple(shapes), background=background, style=style, seed=int(rng.integers(1 << 31)))


def _background(scene: Scene, scale: int) -> np.ndarray:
    rng = np.random.default_rng(scene.seed)
    side = SIZE * scale
    base = np.array(PALETTE[scene.background], dtype=np.float32)
    img = np.broadcast_to(base, (side, side, 3)).copy()
    if scene.style == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
        t = (np.cos(angle) * xx + np.sin(angle) * yy)[..., None]  # in about [-0.7, 0.7]
        img = img + t * 60.0 * (1 if base.mean() < 128 else -1) * rng.uniform(0.6, 1.0)
    elif scene.style == "textured":
        cells = int(rng.integers(4, 12))
        noise = rng.uniform(-1, 1, size=(cells, cells)).astype(np.float32)
        up = np.asarray(Image.fromarray(noise, mode="F").resize((side, side), Image.BICUBIC))
        img = img + up[..., None] * rng.uniform(12, 22)
    return img


def _polygon(shape: Shape, scale: int) -> list[tuple[float, float]] | None:
    cx, cy, r = shape.cx * scale, shape.cy * scale, shape.radius * scale
    if shape.kind == "square":
        r *= 0.9
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape.kind == "triangle":
        return [(cx, cy - r), (cx + r * 1.05, cy + r * 0.85), (cx - r * 1.05, cy + r * 0.85)]
    if shape.kind == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    return None


def render(scene: Scene, scale: int = 2) -> np.ndarray:
    """The scene as uint8 RGB, (SIZE, SIZE, 3); drawn at ``scale``x and box-filtered down (anti-aliased)."""
    bg = np.clip(_background(scene, scale), 0, 255).astype(np.uint8)
    img = Image.fromarray(bg, mode="RGB")
    draw = ImageDraw.Draw(img)
    for shape in scene.shapes:
        fill = PALETTE[shape.colour]
        poly = _polygon(shape, scale)
        if poly is None:
            cx, cy, r = shape.cx * scale, shape.cy * scale, shape.radius * scale
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(poly, fill=fill)
    return np.asarray(img.resize((SIZE, SIZE), Image.BOX))


def shape_phrase(shape: Shape, size: bool = True, position: bool = True) -> str:
    """ "a large red circle on the left" with the optional parts included or not."""
    words = ["a"] + ([shape.size] if size else []) + [shape.colour, shape.kind]
    if position:
        words.append(POSITION_WORDS[shape.position])
    return " ".join(words)


def full_caption(scene: Scene) -> str:
    """The complete caption: every shape with size and position, then the background."""
    parts = [shape_phrase(s) for s in scene.shapes]
    return " and ".join(parts) + f", on a {scene.background} background"


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A random caption of ``scene``: positions, sizes and background each kept or dropped at random."""
    position = rng.random() < 0.6
    size = rng.random() < 0.85
    parts = [shape_phrase(s, size=size, position=position) for s in scene.shapes]
    text = " and ".join(parts)
    if rng.random() < 0.6:
        text += f", on a {scene.background} background"
    return text


def nearest_colour(rgb: np.ndarray) -> str:
    """The palette name nearest (Euclidean RGB) to ``rgb`` (3 values, 0-255)."""
    names = list(PALETTE)
    table = np.array([PALETTE[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((table - np.asarray(rgb, dtype=np.float32)) ** 2).sum(1)))]


def build_images(count: int, split: str = "train") -> np.ndarray:
    """Scenes 0..count-1 of ``split`` as one uint8 array (count, SIZE, SIZE, 3)."""
    out = np.empty((count, SIZE, SIZE, 3), dtype=np.uint8)
    for i in range(count):
        out[i] = render(draw_scene(i, split))
    return out
