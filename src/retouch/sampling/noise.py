"""Seeds, per-image noise streams, variation seeds and seed resize (spec §2.16).

Every image owns one CPU ``torch.Generator`` seeded with its own seed, so its noise depends only on
that seed, never on its position in a batch, and is identical on every device (noise is drawn on the
CPU in float32, then moved). This corresponds to A1111 with ``randn_source = "CPU"``; A1111's default
"GPU" source draws from a CUDA generator, whose numbers differ from the CPU ones.

Python's global ``random`` state and torch's global RNG are never touched.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["resolve_seed", "batch_seeds", "slerp", "ImageNoise", "MAX_RANDOM_SEED"]

#: ``-1`` resolves to a seed drawn uniformly from ``range(MAX_RANDOM_SEED)`` (A1111's bound).
MAX_RANDOM_SEED = 4294967294

_LATENT_FACTOR = 8


def resolve_seed(seed: int) -> int:
    """Seed to use for a requested seed: -1 means a fresh random one (spec §2.16), else unchanged.

    Draws from a private ``random.Random()`` instance, never the global generator.
    """
    if seed == -1:
        return random.Random().randrange(MAX_RANDOM_SEED)
    return int(seed)


def batch_seeds(seed: int, subseed: int, subseed_strength: float, count: int) -> tuple[list[int], list[int]]:
    """Seeds and subseeds of ``count`` consecutive images (A1111 ``all_seeds``/``all_subseeds``, §2.16).

    ``seeds[i] = seed + i`` when ``subseed_strength == 0``; with variation on, every image keeps ``seed``
    and only the subseed varies: ``subseeds[i] = subseed + i``. Pass already-resolved seeds.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0; got {count}")
    seeds = [seed + (i if subseed_strength == 0 else 0) for i in range(count)]
    return seeds, [subseed + i for i in range(count)]


def slerp(t: float, low: Tensor, high: Tensor) -> Tensor:
    """A1111's variation-seed interpolation of two noise tensors (spec §2.16 step 3).

    Spherical interpolation computed per channel and per column: for a (C, H, W) tensor the vectors
    run along dim 1 (height). Weights ``sin((1-t) w)/sin w`` on ``low`` and ``sin(t w)/sin w`` on
    ``high``, with ``w = arccos(<low^, high^>)``, so t = 0 gives ``low`` and t = 1 gives ``high``. When the
    mean normalised dot product exceeds 0.9995 it falls back to ``t*low + (1-t)*high``; those reversed
    weights are A1111's, kept on purpose.
    """
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * t + high * (1 - t)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    w_low = (torch.sin((1.0 - t) * omega) / so).unsqueeze(1)
    w_high = (torch.sin(t * omega) / so).unsqueeze(1)
    return w_low * low + w_high * high


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def _randn(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32, device="cpu")


def _paste_centered(target: Tensor, source: Tensor) -> Tensor:
    """Paste ``source`` (C, h, w) centred into ``target`` (C, H, W), cropping centrally if larger.

    Offsets use floor division exactly as A1111 does, including its asymmetric result for odd negative
    size differences (spec §2.16 step 4)."""
    out = target.clone()
    dx = (target.shape[2] - source.shape[2]) // 2
    dy = (target.shape[1] - source.shape[1]) // 2
    w = source.shape[2] if dx >= 0 else source.shape[2] + 2 * dx
    h = source.shape[1] if dy >= 0 else source.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    out[:, ty : ty + h, tx : tx + w] = source[:, sy : sy + h, sx : sx + w]
    return out


class ImageNoise:
    """Per-image noise streams for one batch (A1111 ``ImageRNG``, spec §2.16).

    ``seeds``/``subseeds``: one per image (a missing subseed counts as 0, as in A1111).
    ``shape``: the per-image latent shape (C, H/8, W/8). ``seed_resize_from``: (width, height) in pixels
    of the size whose noise to reproduce, or None; it only has an effect when both are > 0 and they give
    a latent size different from ``shape``. ``eta_noise_seed_delta`` (ENSD): when non-zero, every
    generator is re-created with ``seed + ENSD`` right after the first draw.

    Draw order: :meth:`first` once (initial noise), then :meth:`next` for each further draw (ancestral
    and SDE sampler noise). Each draw is (B, C, H, W) float32 drawn on the CPU.
    """

    def __init__(
        self,
        seeds: Sequence[int],
        subseeds: Sequence[int],
        subseed_strength: float,
        shape: tuple[int, int, int],
        seed_resize_from: tuple[int, int] | None = None,
        eta_noise_seed_delta: int = 0,
    ) -> None:
        if len(seeds) == 0:
            raise ValueError("ImageNoise needs at least one seed")
        if len(shape) != 3 or any(int(s) <= 0 for s in shape):
            raise ValueError(f"shape must be (C, H, W) with positive sizes; got {shape!r}")
        self.seeds = tuple(int(s) for s in seeds)
        self.subseeds = tuple(int(s) for s in subseeds)
        self.subseed_strength = float(subseed_strength)
        self.shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.seed_resize_from = seed_resize_from
        self.eta_noise_seed_delta = int(eta_noise_seed_delta)
        self._generators = [_generator(s) for s in self.seeds]
        self._drawn_first = False

    @property
    def batch_size(self) -> int:
        return len(self.seeds)

    def _noise_shape(self) -> tuple[int, int, int]:
        if self.seed_resize_from is None:
            return self.shape
        from_w, from_h = (int(v) for v in self.seed_resize_from)
        if from_w <= 0 or from_h <= 0:
            return self.shape
        return (self.shape[0], from_h // _LATENT_FACTOR, from_w // _LATENT_FACTOR)

    def _first_one(self, i: int, noise_shape: tuple[int, int, int]) -> Tensor:
        resized = noise_shape != self.shape
        sub = None
        if self.subseed_strength != 0:
            subseed = self.subseeds[i] if i < len(self.subseeds) else 0
            sub = _randn(noise_shape, _generator(subseed))
        if resized:
            noise = _randn(noise_shape, _generator(self.seeds[i]))
        else:
            noise = _randn(self.shape, self._generators[i])
        if sub is not None:
            noise = slerp(self.subseed_strength, noise, sub)
        if resized:
            noise = _paste_centered(_randn(self.shape, self._generators[i]), noise)
        return noise

    def first(self) -> Tensor:
        """The initial noise (B, C, H, W), float32 on the CPU: variation slerp and seed resize applied.

        Image ``k`` depends only on ``seeds[k]``, ``subseeds[k]`` and the settings. May be called once.
        """
        if self._drawn_first:
            raise RuntimeError("ImageNoise.first() was already drawn; use next() for further draws")
        noise_shape = self._noise_shape()
        out = torch.stack([self._first_one(i, noise_shape) for i in range(self.batch_size)])
        self._drawn_first = True
        if self.eta_noise_seed_delta:
            self._generators = [_generator(s + self.eta_noise_seed_delta) for s in self.seeds]
        return out

    def next(self, like: Tensor | None = None) -> Tensor:
        """The next draw of every image's own stream, (B, C, H, W) standard normal.

        As in A1111 the very first call returns :meth:`first`. With ``like`` (which must have shape
        (B, C, H, W)) the result is moved to its device and dtype, so ``noise=image_noise.next`` is a valid
        sampler noise source; without it the draw stays float32 on the CPU.
        """
        expected = (self.batch_size, *self.shape)
        if like is not None and tuple(like.shape) != expected:
            raise ValueError(f"noise requested for shape {tuple(like.shape)}; this stream draws {expected}")
        if not self._drawn_first:
            out = self.first()
        else:
            out = torch.stack([_randn(self.shape, g) for g in self._generators])
        return out if like is None else out.to(device=like.device, dtype=like.dtype)
