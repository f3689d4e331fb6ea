"""Seeds, variation seeds, seed resize and per-image noise streams (spec §2.16)."""

from __future__ import annotations

import random

import pytest
import torch

from retouch.sampling.noise import MAX_RANDOM_SEED, ImageNoise, batch_seeds, resolve_seed, slerp

SHAPE = (4, 6, 5)


def randn(seed: int, shape=SHAPE, draws: int = 1) -> torch.Tensor:
    """The ``draws``-th draw of a CPU generator seeded with ``seed`` (A1111 with randn_source=CPU)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(draws - 1):
        torch.randn(shape, generator=g)
    return torch.randn(shape, generator=g)


def test_resolve_seed_leaves_global_rngs_alone():
    py_state, torch_state = random.getstate(), torch.get_rng_state()
    seeds = {resolve_seed(-1) for _ in range(20)}
    assert all(0 <= s < MAX_RANDOM_SEED for s in seeds) and len(seeds) > 1
    assert resolve_seed(1234) == 1234 and resolve_seed(0) == 0
    assert random.getstate() == py_state
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_batch_seeds():
    assert batch_seeds(10, 100, 0.0, 3) == ([10, 11, 12], [100, 101, 102])
    assert batch_seeds(10, 100, 0.3, 3) == ([10, 10, 10], [100, 101, 102])
    assert batch_seeds(10, 100, 0.0, 0) == ([], [])


def test_slerp_end_points_are_exact():
    low, high = randn(1), randn(2)
    assert torch.equal(slerp(0.0, low, high), low)
    assert torch.equal(slerp(1.0, low, high), high)


def test_slerp_is_per_channel_per_column():
    """Orthogonal columns of equal norm: the t = 0.5 result is (low + high) / (2 cos(pi/4))."""
    low = torch.zeros(1, 2, 1)
    high = torch.zeros(1, 2, 1)
    low[0, 0, 0], high[0, 1, 0] = 3.0, 3.0
    mid = slerp(0.5, low, high)
    torch.testing.assert_close(mid, (low + high) / (2 * 0.5**0.5))
    # the second column is interpolated independently of the first
    both_low, both_high = torch.cat([low, 2 * low], dim=2), torch.cat([high, 2 * high], dim=2)
    torch.testing.assert_close(slerp(0.5, both_low, both_high)[..., 1:], 2 * mid)


def test_slerp_linear_fallback_has_reversed_weights():
    low = randn(3)
    high = low + 1e-3 * randn(4)
    out = slerp(0.25, low, high)
    torch.testing.assert_close(out, 0.25 * low + 0.75 * high)


def test_first_draw_is_the_seed_generator_first_draw():
    noise = ImageNoise([42], [0], 0.0, SHAPE)
    first = noise.first()
    assert first.shape == (1, *SHAPE) and first.dtype == torch.float32
    torch.testing.assert_close(first[0], randn(42), rtol=0, atol=0)
    torch.testing.assert_close(noise.next()[0], randn(42, draws=2), rtol=0, atol=0)
    torch.testing.assert_close(noise.next()[0], randn(42, draws=3), rtol=0, atol=0)


def test_same_seeds_same_noise_and_global_rng_untouched():
    state = torch.get_rng_state()
    a, b = ImageNoise([7, 8], [1, 2], 0.4, SHAPE), ImageNoise([7, 8], [1, 2], 0.4, SHAPE)
    assert torch.equal(a.first(), b.first()) and torch.equal(a.next(), b.next())
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("strength", [0.0, 0.6])
@pytest.mark.parametrize("resize", [None, (64, 32)])
def test_batch_equals_singles(strength, resize):
    batch = ImageNoise([5, 6], [50, 51], strength, SHAPE, seed_resize_from=resize, eta_noise_seed_delta=31337)
    singles = [
        ImageNoise([s], [u], strength, SHAPE, seed_resize_from=resize, eta_noise_seed_delta=31337)
        for s, u in ((5, 50), (6, 51))
    ]
    torch.testing.assert_close(batch.first(), torch.cat([s.first() for s in singles]), rtol=0, atol=0)
    for _ in range(2):
        torch.testing.assert_close(batch.next(), torch.cat([s.next() for s in singles]), rtol=0, atol=0)


def test_image_noise_depends_only_on_its_own_seed():
    a = ImageNoise([1, 9], [3, 4], 0.5, SHAPE).first()
    b = ImageNoise([2, 9], [5, 4], 0.5, SHAPE).first()
    assert torch.equal(a[1], b[1]) and not torch.equal(a[0], b[0])


def test_subseed_strength_zero_ignores_subseed():
    a = ImageNoise([11], [100], 0.0, SHAPE).first()
    b = ImageNoise([11], [200], 0.0, SHAPE).first()
    assert torch.equal(a, b) and torch.equal(a[0], randn(11))


def test_subseed_strength_one_gives_the_subseed_noise():
    noise = ImageNoise([11], [100], 1.0, SHAPE)
    torch.testing.assert_close(noise.first()[0], randn(100), rtol=0, atol=0)
    # later draws still come from the image's own seed
    torch.testing.assert_close(noise.next()[0], randn(11, draws=2), rtol=0, atol=0)


def test_variation_is_slerp_of_seed_and_subseed():
    out = ImageNoise([11], [100], 0.3, SHAPE).first()[0]
    torch.testing.assert_close(out, slerp(0.3, randn(11), randn(100)), rtol=0, atol=0)


def test_seed_resize_to_the_same_size_is_no_resize():
    plain = ImageNoise([3], [0], 0.0, SHAPE).first()
    same = ImageNoise([3], [0], 0.0, SHAPE, seed_resize_from=(SHAPE[2] * 8, SHAPE[1] * 8)).first()
    zero = ImageNoise([3], [0], 0.0, SHAPE, seed_resize_from=(0, 48)).first()
    assert torch.equal(plain, same) and torch.equal(plain, zero)


def test_seed_resize_from_larger_crops_centrally():
    # from 7 x 8 latents (56 x 64 px) to 5 x 6: dx = -1, dy = -1
    out = ImageNoise([3], [0], 0.0, SHAPE, seed_resize_from=(56, 64)).first()[0]
    torch.testing.assert_close(out, randn(3, (4, 8, 7))[:, 1:7, 1:6], rtol=0, atol=0)


def test_seed_resize_from_smaller_pastes_into_a_fresh_draw():
    # from 3 x 4 latents (24 x 32 px) to 5 x 6: pasted at (1, 1); the border is the seed's own first draw
    out = ImageNoise([3], [0], 0.0, SHAPE, seed_resize_from=(24, 32)).first()[0]
    expected = randn(3).clone()
    expected[:, 1:5, 1:4] = randn(3, (4, 4, 3))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_seed_resize_odd_crop_keeps_a1111_offsets():
    # 3 latent columns wider: dx = -3 // 2 = -2, so columns 0..3 come from source columns 2..5 and the
    # last target column stays from the target-size draw (A1111's floor-division quirk)
    out = ImageNoise([3], [0], 0.0, SHAPE, seed_resize_from=(64, 48)).first()[0]
    source = randn(3, (4, 6, 8))
    torch.testing.assert_close(out[:, :, :4], source[:, :, 2:6], rtol=0, atol=0)
    torch.testing.assert_close(out[:, :, 4], randn(3)[:, :, 4], rtol=0, atol=0)


def test_ensd_reseeds_after_the_first_draw():
    noise = ImageNoise([20, 21], [0, 0], 0.0, SHAPE, eta_noise_seed_delta=31337)
    first = noise.first()
    torch.testing.assert_close(first[1], randn(21), rtol=0, atol=0)
    nxt = noise.next()
    torch.testing.assert_close(nxt[0], randn(20 + 31337), rtol=0, atol=0)
    torch.testing.assert_close(nxt[1], randn(21 + 31337), rtol=0, atol=0)


def test_next_before_first_returns_first_and_like_sets_dtype():
    noise = ImageNoise([4], [0], 0.0, SHAPE)
    like = torch.zeros(1, *SHAPE, dtype=torch.bfloat16)
    out = noise.next(like)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out[0].float(), randn(4).bfloat16().float())
    with pytest.raises(RuntimeError, match="already drawn"):
        noise.first()
    with pytest.raises(ValueError, match="shape"):
        noise.next(torch.zeros(2, *SHAPE))


def test_constructor_validation():
    with pytest.raises(ValueError, match="seed"):
        ImageNoise([], [], 0.0, SHAPE)
    with pytest.raises(ValueError, match="shape"):
        ImageNoise([1], [1], 0.0, (4, 0, 5))  # type: ignore[arg-type]
