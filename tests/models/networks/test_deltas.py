"""Delta formulas of spec a1111-prompts.md §5.3 (case 38's toy values, worked by hand in the spec) and the
finalisation rules (scale, dyn_dim, bias quirk, DoRA, inpainting zero-pad)."""

from __future__ import annotations

import pytest
import torch

from retouch.models.networks.deltas import detect_type, module_delta, network_scale
from retouch.models.networks.errors import NetworkError

T = torch.tensor


def _close(a: torch.Tensor, b: list) -> None:
    torch.testing.assert_close(a, T(b, dtype=a.dtype), atol=1e-5, rtol=0)


def test_lora_toy():
    """up=[[1],[2]], down=[[1,0,-1]], alpha 0.5, rank 1, m 0.8: 0.8 * 0.5 * up@down."""
    parts = {"lora_up.weight": T([[1.0], [2.0]]), "lora_down.weight": T([[1.0, 0.0, -1.0]]), "alpha": T(0.5)}
    delta, bias = module_delta(parts, torch.zeros(2, 3), 0.8)
    _close(delta, [[0.4, 0, -0.4], [0.8, 0, -0.8]])
    assert bias is None


def test_loha_toy():
    """(w1a@w1b) * (w2a@w2b) = [[1,1],[2,2]] * [[2,3],[2,3]] = [[2,3],[4,6]] (no alpha: s = 1)."""
    parts = {"hada_w1_a": T([[1.0], [2.0]]), "hada_w1_b": T([[1.0, 1.0]]),
             "hada_w2_a": T([[1.0], [1.0]]), "hada_w2_b": T([[2.0, 3.0]])}
    _close(module_delta(parts, torch.zeros(2, 2), 1.0)[0], [[2, 3], [4, 6]])


def test_lokr_toy():
    parts = {"lokr_w1": T([[1.0, 0.0], [0.0, 2.0]]), "lokr_w2": T([[1.0, 1.0]])}
    _close(module_delta(parts, torch.zeros(2, 4), 1.0)[0], [[1, 1, 0, 0], [0, 0, 2, 2]])


@pytest.mark.parametrize(("on_input", "expected"), [(False, [[0.5, 1], [-3, -4]]), (True, [[0.5, -2], [1.5, -4]])])
def test_ia3_toy(on_input, expected):
    parts = {"weight": T([0.5, -1.0]), "on_input": T(on_input)}
    _close(module_delta(parts, T([[1.0, 2.0], [3.0, 4.0]]), 1.0)[0], expected)


def test_ia3_without_on_input_is_refused():
    with pytest.raises(NetworkError, match="on_input"):
        module_delta({"weight": T([1.0, 1.0])}, torch.ones(2, 2), 1.0)


def test_dora_toy():
    """W=[[3,1],[4,0]], D=I, s=0.5 (scale part), dora_scale=[[10,2]]: column norms of W+0.5I are
    [5.31507, 1.11803], so ΔW = dora_scale*(W+0.5I)/norms - W (spec §5.3)."""
    parts = {"diff": torch.eye(2), "scale": T(0.5), "dora_scale": T([[10.0, 2.0]])}
    _close(module_delta(parts, T([[3.0, 1.0], [4.0, 0.0]]), 1.0)[0], [[3.58505, 0.78885], [3.52577, 0.89443]])


def test_glora_toy():
    """b2@b1 + (W@a2)@a1 = [[2,2],[0,0]] + [[2,0],[4,0]]; its alpha part is ignored (no dim)."""
    parts = {"a1.weight": T([[1.0, 0.0]]), "b1.weight": T([[1.0, 1.0]]), "a2.weight": T([[0.0], [1.0]]),
             "b2.weight": T([[2.0], [0.0]]), "alpha": T(7.0)}
    _close(module_delta(parts, T([[1.0, 2.0], [3.0, 4.0]]), 1.0)[0], [[4, 2], [4, 0]])


def test_scale_rules():
    """`scale` wins over alpha/dim; alpha/dim needs a rank; otherwise 1."""
    lora = {"lora_up.weight": torch.ones(2, 4), "lora_down.weight": torch.ones(4, 3), "alpha": T(2.0)}
    assert network_scale("lora", lora) == 0.5
    assert network_scale("lora", {**lora, "scale": T(3.0)}) == 3.0
    assert network_scale("full", {"diff": torch.ones(2), "alpha": T(2.0)}) == 1.0
    lokr = {"lokr_w1": torch.ones(1, 1), "lokr_w2_a": torch.ones(2, 5), "lokr_w2_b": torch.ones(5, 3), "alpha": T(1.0)}
    assert network_scale("lokr", lokr) == 0.2


def test_dyn_dim_uses_the_first_ranks_and_full_rank_scale():
    """dyn 1 of rank 2 with alpha 2: s = 2/2 = 1 (full rank), D = up[:, :1] @ down[:1]."""
    up, down = T([[1.0, 10.0], [2.0, 20.0]]), T([[1.0, 1.0], [5.0, 5.0]])
    parts = {"lora_up.weight": up, "lora_down.weight": down, "alpha": T(2.0)}
    _close(module_delta(parts, torch.zeros(2, 2), 1.0, dyn=1)[0], [[1, 1], [2, 2]])
    _close(module_delta(parts, torch.zeros(2, 2), 1.0)[0], (up @ down).tolist())


def test_conv_lora_with_mid_is_the_tucker_product():
    g = torch.Generator().manual_seed(0)
    up, down, mid = (torch.randn(*s, generator=g) for s in ((5, 2, 1, 1), (2, 3, 1, 1), (2, 2, 3, 3)))
    parts = {"lora_up.weight": up, "lora_down.weight": down, "lora_mid.weight": mid}
    expected = torch.zeros(5, 3, 3, 3)
    for i in range(5):
        for j in range(3):
            for n in range(2):
                for q in range(2):
                    expected[i, j] += mid[n, q] * up[i, n, 0, 0] * down[q, j, 0, 0]
    torch.testing.assert_close(module_delta(parts, torch.zeros(5, 3, 3, 3), 1.0)[0], expected)


def test_loha_tucker_factor():
    """With hada_t1/t2 each factor is F[a,b,k,l] = sum_ij t[i,j,k,l] wa[i,a] wb[j,b]."""
    g = torch.Generator().manual_seed(1)
    t1, t2 = torch.randn(2, 2, 3, 3, generator=g), torch.randn(2, 2, 3, 3, generator=g)
    wa1, wb1, wa2, wb2 = (torch.randn(2, n, generator=g) for n in (4, 5, 4, 5))
    parts = {"hada_w1_a": wa1, "hada_w1_b": wb1, "hada_w2_a": wa2, "hada_w2_b": wb2, "hada_t1": t1, "hada_t2": t2}

    def factor(t, wa, wb):
        out = torch.zeros(wa.shape[1], wb.shape[1], 3, 3)
        for i in range(2):
            for j in range(2):
                out += t[i, j] * (wa[i][:, None] * wb[j][None, :])[:, :, None, None]
        return out

    expected = factor(t1, wa1, wb1) * factor(t2, wa2, wb2)
    torch.testing.assert_close(module_delta(parts, torch.zeros(4, 5, 3, 3), 1.0)[0], expected)


def test_lokr_factor_forms_and_conv():
    """w1 = w1_a@w1_b, w2 = w2_a@w2_b, s = alpha / rank(w2); a 4-D w2 gets w1 expanded to (a,b,1,1)."""
    g = torch.Generator().manual_seed(2)
    w1a, w1b, w2a, w2b = (torch.randn(*s, generator=g) for s in ((2, 1), (1, 3), (4, 2), (2, 5)))
    parts = {"lokr_w1_a": w1a, "lokr_w1_b": w1b, "lokr_w2_a": w2a, "lokr_w2_b": w2b, "alpha": T(1.0)}
    torch.testing.assert_close(module_delta(parts, torch.zeros(8, 15), 1.0)[0], torch.kron(w1a @ w1b, w2a @ w2b) / 2)
    w1, w2 = torch.randn(2, 3, generator=g), torch.randn(4, 5, 3, 3, generator=g)
    expected = torch.kron(w1[:, :, None, None], w2)
    torch.testing.assert_close(module_delta({"lokr_w1": w1, "lokr_w2": w2}, torch.zeros(8, 15, 3, 3), 1.0)[0], expected)


def test_bias_quirk_and_bias_delta_scaling():
    """A `bias` part is added to D before scaling; diff_b is multiplied by m only (not by s)."""
    parts = {"diff": T([[1.0, 2.0]]), "bias": T([[10.0, 20.0]]), "diff_b": T([3.0]), "scale": T(2.0)}
    delta, bias = module_delta(parts, torch.zeros(1, 2), 0.5)
    _close(delta, [[11.0, 22.0]])  # (D + bias) * s * m = [11, 22] * 2 * 0.5
    _close(bias, [1.5])


def test_inpainting_conv_in_delta_is_zero_padded():
    up, down = torch.ones(2, 1, 1, 1), torch.ones(1, 4, 3, 3)
    delta, _ = module_delta({"lora_up.weight": up, "lora_down.weight": down}, torch.zeros(2, 9, 3, 3), 1.0)
    assert delta.shape == (2, 9, 3, 3)
    assert torch.equal(delta[:, :4], torch.ones(2, 4, 3, 3)) and torch.equal(delta[:, 4:], torch.zeros(2, 5, 3, 3))


def test_type_detection_order():
    assert detect_type({"lora_A.weight": T(1.0), "lora_B.weight": T(1.0)}) == "lora"
    assert detect_type({"weight": T(1.0), "diff": T(1.0)}) == "ia3"  # IA3 is tested before Full
    assert detect_type({"w_norm": T(1.0)}) is None  # Norm needs b_norm too
    assert detect_type({"oft_blocks": T(1.0)}) == "oft"


def test_oft_toy():
    """One 2x2 block B=[[0,1],[0,0]]: Q = B - B^T = [[0,1],[-1,0]], R = (I+Q)(I-Q)^-1 = [[0,1],[-1,0]];
    W' = R^T W = [[-3,-4],[1,2]] for W = [[1,2],[3,4]], so D = W' - W (alpha 10: no clamp; s forced to 1)."""
    parts = {"oft_blocks": T([[[0.0, 1.0], [0.0, 0.0]]]), "alpha": T(10.0), "scale": T(5.0)}
    _close(module_delta(parts, T([[1.0, 2.0], [3.0, 4.0]]), 1.0)[0], [[-4, -6], [-2, -2]])


def test_oft_constraint_clamps_the_rotation():
    """alpha 0.25 on 2 rows: constraint 0.5 < ||Q|| = sqrt(2), so Q = a [[0,1],[-1,0]] with a = 0.5/sqrt(2);
    the Cayley transform of that is the rotation [[1-a^2, 2a], [-2a, 1-a^2]] / (1+a^2)."""
    a = 0.5 / 2**0.5
    r = T([[1 - a * a, 2 * a], [-2 * a, 1 - a * a]]) / (1 + a * a)
    parts = {"oft_blocks": T([[[0.0, 1.0], [0.0, 0.0]]]), "alpha": T(0.25)}
    w = T([[1.0, 2.0], [3.0, 4.0]])
    _close(module_delta(parts, w, 0.5)[0], (0.5 * (r.T @ w - w)).tolist())


def test_compute_in_float32_for_half_weights():
    parts = {"diff": T([[1.0, 2.0]], dtype=torch.float16)}
    delta, _ = module_delta(parts, torch.zeros(1, 2, dtype=torch.bfloat16), 1.0)
    assert delta.dtype == torch.float32
