"""Token merging maths (retouch.token_merge) on hand-made tensors, and its hooks on the tiny UNet.

Expected values follow tomesd 0.1.3 with A1111's arguments (use_rand False, sx = sy = 2,
max_downsample 1, self-attention only), worked out by hand in each test's docstring.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from retouch import Engine, Img2Img, ParamError
from retouch.infotext import parse_infotext
from retouch.models.bundle import ModelBundle
from retouch.testing import tiny_model
from retouch.token_merge import grid_size, merge, partition, plan_merge, token_merging, unmerge

#: The 4x4 grid's src positions in order (row-major, dst positions 0, 2, 8, 10 left out).
SRC_4X4 = [1, 3, 4, 5, 6, 7, 9, 11, 12, 13, 14, 15]


def _cell(pos: int, w: int = 4) -> int:
    row, col = divmod(pos, w)
    return (row // 2) * 2 + col // 2


def test_partition_puts_each_cells_top_left_first() -> None:
    """4x4: the 2x2 cells' top-left corners 0, 2, 8, 10 are dst, the other 12 src (here in grid order).
    5x5: 2x2 cells cover the top-left 4x4, so dst are 0, 2, 10, 12 and the last row/column is src.

    The order within each part is whatever ``argsort(dim=1)`` (not stable) gives on the (1, h*w, 1) int64
    buffer of -1 at dst and 0 at src, as tomesd calls it: on torch 2.13 CPU it is grid order up to 16
    tokens and scrambled beyond (5x5 src starts 24, 23, 22, ...), so only that call reproduces tomesd."""
    src, dst = partition(4, 4)
    assert dst.flatten().tolist() == [0, 2, 8, 10]
    assert src.flatten().tolist() == SRC_4X4
    for h, w, corners in ((5, 5, [0, 2, 10, 12]), (4, 5, [0, 2, 10, 12]), (6, 6, [0, 2, 4, 12, 14, 16, 24, 26, 28])):
        src, dst = partition(h, w)
        assert sorted(dst.flatten().tolist()) == corners
        assert sorted(src.flatten().tolist()) == [p for p in range(h * w) if p not in corners]
        marks = torch.tensor([-1 if p in corners else 0 for p in range(h * w)], dtype=torch.int64)
        assert torch.equal(torch.cat([dst, src], dim=1), marks.reshape(1, -1, 1).argsort(dim=1))
    assert src.shape == (1, 27, 1) and dst.dtype == torch.int64


@pytest.mark.parametrize(
    ("latent", "tokens", "expected"),
    [((8, 8), 64, (8, 8)), ((8, 8), 16, None), ((9, 9), 81, (9, 9)), ((9, 9), 25, None), ((64, 96), 6144, (64, 96))],
)
def test_grid_size_merges_only_full_resolution(latent: tuple[int, int], tokens: int, expected: Any) -> None:
    """downsample = ceil(sqrt(H*W // N)): 64 // 16 = 4 -> 2 and 81 // 25 = 3 -> ceil(1.73) = 2 exceed 1."""
    assert grid_size(latent, tokens) == expected


def _hand_tokens() -> torch.Tensor:
    """4x4 grid, C = 2: cell c's dst points at angle c*pi/2 (length 1); src j (in SRC_4X4 order) points
    0.01*(j+1) rad past its cell's angle with length j+2, so its best dst is its own cell's, with cosine
    cos(0.01*(j+1)): strictly decreasing in j."""
    x = torch.zeros(1, 16, 2, dtype=torch.float64)
    for c, pos in enumerate([0, 2, 8, 10]):
        x[0, pos] = torch.tensor([math.cos(c * math.pi / 2), math.sin(c * math.pi / 2)])
    for j, pos in enumerate(SRC_4X4):
        angle = _cell(pos) * math.pi / 2 + 0.01 * (j + 1)
        x[0, pos] = (j + 2) * torch.tensor([math.cos(angle), math.sin(angle)])
    return x


def test_merge_on_a_hand_made_grid() -> None:
    """ratio 0.5 of 16 tokens: r = 8. The 8 best-matched src are j = 0..7 (positions 1, 3, 4, 5, 6, 7, 9,
    11): cell 0 takes positions 1, 4, 5, cell 1 takes 3, 6, 7, cell 2 takes 9, cell 3 takes 11. Output:
    the kept src 12, 13, 14, 15 (in descending score order), then each dst's mean with its merged src."""
    x = _hand_tokens()
    plan = plan_merge(x, 4, 4, int(16 * 0.5))
    assert plan is not None and plan.removed == 8
    y = merge(x, plan)
    assert y.shape == (1, 8, 2)
    assert torch.equal(y[0, :4], x[0, [12, 13, 14, 15]])
    groups = {0: [0, 1, 4, 5], 1: [2, 3, 6, 7], 2: [8, 9], 3: [10, 11]}
    for c, members in groups.items():
        torch.testing.assert_close(y[0, 4 + c], x[0, members].mean(dim=0), rtol=0, atol=1e-12)


def test_unmerge_restores_kept_tokens_and_spreads_group_means() -> None:
    """unmerge(merge(x)): kept src 12-15 come back bit for bit; every member of a merged group (its dst
    and the src merged into it) reads the group mean."""
    x = _hand_tokens()
    plan = plan_merge(x, 4, 4, 8)
    assert plan is not None
    back = unmerge(merge(x, plan), plan)
    assert back.shape == x.shape
    assert torch.equal(back[0, 12:], x[0, 12:])
    for members in ([0, 1, 4, 5], [2, 3, 6, 7], [8, 9], [10, 11]):
        mean = x[0, members].mean(dim=0)
        for pos in members:
            torch.testing.assert_close(back[0, pos], mean, rtol=0, atol=1e-12)


def test_ratio_zero_or_tiny_plans_nothing_and_r_is_capped_at_the_src_count() -> None:
    """r = int(N * ratio): 16 * 0.05 = 0.8 -> 0, no plan. r = 15 > 12 src tokens: all 12 merge, 4 remain."""
    x = _hand_tokens()
    assert plan_merge(x, 4, 4, int(16 * 0.05)) is None
    plan = plan_merge(x, 4, 4, 15)
    assert plan is not None and plan.removed == 12
    assert merge(x, plan).shape == (1, 4, 2)


def test_random_tokens_follow_greedy_matching_per_batch_item() -> None:
    """B = 2 random 6x6 grids, r = 10: an independent per-item loop (best dst by cosine, the 10 highest
    merge) predicts which positions share a value after merge∘unmerge, and the rest stay exact."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 36, 5, generator=gen, dtype=torch.float64)
    plan = plan_merge(x, 6, 6, 10)
    assert plan is not None
    back = unmerge(merge(x, plan), plan)
    dst_pos = [0, 2, 4, 12, 14, 16, 24, 26, 28]
    src_pos = [p for p in range(36) if p not in dst_pos]
    for b in range(2):
        unit = x[b] / x[b].norm(dim=-1, keepdim=True)
        best = {s: max(dst_pos, key=lambda d, s=s: float(unit[s] @ unit[d])) for s in src_pos}
        score = {s: float(unit[s] @ unit[best[s]]) for s in src_pos}
        merged = sorted(src_pos, key=lambda s: -score[s])[:10]
        groups = {d: [d] + [s for s in merged if best[s] == d] for d in dst_pos}
        for members in groups.values():
            mean = x[b, members].mean(dim=0)
            for pos in members:
                torch.testing.assert_close(back[b, pos], mean, rtol=0, atol=1e-12)
        for s in set(src_pos) - set(merged):
            assert torch.equal(back[b, s], x[b, s])


def full_res_model(seed: int = 0) -> ModelBundle:
    """The tiny sd1 model with its cross-attention block moved to full resolution (down block 0, up block 1).

    ``tiny_model``'s UNet, like SDXL's, has attention only below full resolution, where A1111's token
    merging (max_downsample 1) never merges; SD1.5 has it at full resolution, as this one does."""
    from diffusers import UNet2DConditionModel

    bundle = tiny_model(seed)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
    ).eval()
    return dataclasses.replace(bundle, unet=unet, name=f"tiny-tome-{seed}")


def _unet_call(unet: Any, size: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, size // 8, size // 8, generator=gen)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=gen)
    with torch.inference_mode():
        return unet(sample, torch.tensor([500.0, 500.0]), encoder_hidden_states=context).sample  # type: ignore[no-any-return]


def _hook_count(module: torch.nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in module.modules())


def test_hooks_merge_only_full_resolution_blocks_and_are_removed() -> None:
    """Latent 4x4: the full-resolution blocks (down 0, up 1 x2) see 16 tokens and merge; the mid block
    sees 2x2 = 4 tokens (16 // 4 = 4 -> downsample 2) and is left alone: per UNet call 3 merged, 1 plain."""
    unet = full_res_model().unet
    exact = _unet_call(unet)
    with token_merging(unet, 0.5) as state:
        assert state is not None
        merged = _unet_call(unet)
        again = _unet_call(unet)
    assert (state.merged_calls, state.plain_calls) == (6, 2)
    assert state.latent_hw == (4, 4)
    assert _hook_count(unet) == 0
    assert torch.equal(merged, again) and not torch.equal(merged, exact)
    assert torch.equal(_unet_call(unet), exact)  # hooks gone: the exact UNet again


def test_a_unet_without_full_resolution_attention_merges_nothing() -> None:
    """tiny_model's UNet (attention at 2x2 and in the mid block only): 4 plain block calls, same output."""
    unet = tiny_model(0).unet.eval()
    exact = _unet_call(unet)
    with token_merging(unet, 0.5) as state:
        out = _unet_call(unet)
    assert state is not None and (state.merged_calls, state.plain_calls) == (0, 4)
    assert torch.equal(out, exact)


def test_ratio_zero_registers_nothing_and_an_error_still_removes_hooks() -> None:
    unet = tiny_model(0).unet.eval()
    with token_merging(unet, 0.0) as state:
        assert state is None and _hook_count(unet) == 0
    with pytest.raises(RuntimeError, match="boom"), token_merging(unet, 0.5):
        assert _hook_count(unet) > 0
        raise RuntimeError("boom")
    assert _hook_count(unet) == 0
    with pytest.raises(ValueError, match=r"token_merging_ratio must be in \[0, 1\)"), token_merging(unet, 1.0):
        pass


# -- the engine -----------------------------------------------------------------------------------

SIZE = 32


def _job(**kw: Any) -> Img2Img:
    rng = np.random.default_rng(0)
    scene = Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    base: dict[str, Any] = dict(prompt="a red circle", negative_prompt="blurry", init_images=[scene], steps=6,
                                width=SIZE, height=SIZE, seed=1234, sampler_name="Euler",
                                denoising_strength=0.5, cfg_scale=5.0)
    base.update(kw)
    return Img2Img(**base)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(full_res_model(), precision="fp32")


def test_engine_ratio_zero_is_the_exact_path_and_ratio_half_is_deterministic(engine: Engine) -> None:
    """Ratio 0 gives the bytes of a job without the field and no infotext key; 0.5 repeats exactly,
    differs from 0 and writes ``Token merging ratio: 0.5`` (A1111 create_infotext)."""
    exact = engine.run(_job())
    zero = engine.run(_job(token_merging_ratio=0.0))
    assert zero.images[0].tobytes() == exact.images[0].tobytes() and zero.infotexts == exact.infotexts
    assert "Token merging ratio" not in parse_infotext(exact.infotexts[0])
    half = engine.run(_job(token_merging_ratio=0.5))
    again = engine.run(_job(token_merging_ratio=0.5))
    assert half.images[0].tobytes() == again.images[0].tobytes()
    assert half.images[0].tobytes() != exact.images[0].tobytes()
    assert parse_infotext(half.infotexts[0])["Token merging ratio"] == "0.5"
    assert _hook_count(engine.model.unet) == 0


def test_engine_merges_with_the_feature_cache(engine: Engine) -> None:
    """The feature cache calls the blocks itself; the hooks still fire, so the image changes."""
    cached = engine.run(_job(feature_cache_interval=2)).images[0]
    both = engine.run(_job(feature_cache_interval=2, token_merging_ratio=0.5)).images[0]
    assert both.tobytes() != cached.tobytes()
    assert _hook_count(engine.model.unet) == 0


def test_engine_removes_hooks_when_sampling_fails(engine: Engine) -> None:
    def fail(_: Any) -> None:
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        engine.run(_job(token_merging_ratio=0.5), on_step=fail)
    assert _hook_count(engine.model.unet) == 0


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.5"])
def test_img2img_refuses_ratios_outside_zero_to_one(bad: Any) -> None:
    with pytest.raises(ParamError, match="token_merging_ratio must be"):
        _job(token_merging_ratio=bad)
