"""Networks merged into tiny models through kohya-format files, compared with the delta merged by hand.

Every file is written here (safetensors in tmp_path), read through ``NetworkPatcher.load`` (the safe
loader), merged, and compared with the formula of spec §5.3 written out again in float64 below; then
``apply([])`` must give back every parameter of the UNet and the text encoders bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from retouch.models.networks.errors import NetworkError
from retouch.models.networks.patcher import ActiveNetwork, NetworkPatcher
from retouch.testing import tiny_model

TE, UNET = 0.7, 0.6
g = torch.Generator().manual_seed(0)


def rnd(*shape: int) -> torch.Tensor:
    """Float32-representable values held in float64, so the hand formulas below run in float64."""
    return (torch.randn(*shape, generator=g) * 0.1).double()


def state(bundle) -> dict[str, torch.Tensor]:
    parts = {"unet": bundle.unet} | {f"te{i}": e for i, e in enumerate(bundle.text_encoders)}
    return {f"{n}.{k}": v.detach().clone() for n, m in parts.items() for k, v in m.state_dict().items()}


def assert_same(bundle, before: dict[str, torch.Tensor], except_: tuple[str, ...] = ()) -> None:
    now = state(bundle)
    assert now.keys() == before.keys()
    changed = [k for k in now if not torch.equal(now[k], before[k])]
    assert sorted(changed) == sorted(except_)


def write(tmp_path: Path, tensors: dict[str, torch.Tensor], name: str = "net") -> Path:
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    return path


# module (kohya name, state-dict key in ``state``) of the tiny SD1 model
TO_K = ("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k",
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k")   # Linear 32 -> 64, no bias
CONV = ("lora_unet_down_blocks_0_resnets_0_conv1", "unet.down_blocks.0.resnets.0.conv1")  # 3x3, 32 -> 32
NORM = ("lora_unet_down_blocks_0_resnets_0_norm1", "unet.down_blocks.0.resnets.0.norm1")  # GroupNorm(8, 32)
FC1 = ("lora_te_text_model_encoder_layers_1_mlp_fc1", "te0.encoder.layers.1.mlp.fc1")  # Linear 32 -> 37


def lora_linear():
    up, down = rnd(64, 4), rnd(4, 32)
    parts = {"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(2.0)}
    return TO_K, parts, lambda w, b, m: (w + m * 0.5 * up @ down, b)


def lora_conv():
    up, down = rnd(32, 3, 1, 1), rnd(3, 32, 3, 3)
    parts = {"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(1.5)}
    return CONV, parts, lambda w, b, m: (w + m * 0.5 * (up.flatten(1) @ down.flatten(1)).reshape(w.shape), b)


def lora_conv_cp():
    up, down, mid = rnd(32, 2, 1, 1), rnd(2, 32, 1, 1), rnd(2, 2, 3, 3)
    parts = {"lora_up.weight": up, "lora_down.weight": down, "lora_mid.weight": mid}
    full = torch.einsum("nmkl,in,mj->ijkl", mid, up[:, :, 0, 0], down[:, :, 0, 0])
    return CONV, parts, lambda w, b, m: (w + m * full, b)


def loha():
    w1a, w1b, w2a, w2b = rnd(37, 2), rnd(2, 32), rnd(37, 2), rnd(2, 32)
    parts = {"hada_w1_a": w1a, "hada_w1_b": w1b, "hada_w2_a": w2a, "hada_w2_b": w2b, "alpha": torch.tensor(1.0)}
    return FC1, parts, lambda w, b, m: (w + m * 0.5 * (w1a @ w1b) * (w2a @ w2b), b)


def lokr():
    w1, w2a, w2b = rnd(8, 4), rnd(8, 2), rnd(2, 8)
    parts = {"lokr_w1": w1, "lokr_w2_a": w2a, "lokr_w2_b": w2b, "alpha": torch.tensor(1.0)}
    return TO_K, parts, lambda w, b, m: (w + m * 0.5 * torch.kron(w1, w2a @ w2b), b)


def ia3():
    scale = rnd(37)
    parts = {"weight": scale, "on_input": torch.tensor(False)}
    return FC1, parts, lambda w, b, m: (w + m * w * scale[:, None], b)


def full():
    diff, diff_b = rnd(37, 32), rnd(37)
    return FC1, {"diff": diff, "diff_b": diff_b}, lambda w, b, m: (w + m * diff, b + m * diff_b)


def norm():
    w_norm, b_norm = rnd(32), rnd(32)
    return NORM, {"w_norm": w_norm, "b_norm": b_norm}, lambda w, b, m: (w + m * w_norm, b + m * b_norm)


def glora():
    a1, a2, b1, b2 = rnd(2, 32), rnd(32, 2), rnd(2, 32), rnd(64, 2)
    parts = {"a1.weight": a1, "a2.weight": a2, "b1.weight": b1, "b2.weight": b2, "alpha": torch.tensor(9.0)}
    return TO_K, parts, lambda w, b, m: (w + m * (b2 @ b1 + (w @ a2) @ a1), b)


def oft():
    blocks = rnd(4, 16, 16)
    q = blocks - blocks.transpose(1, 2)  # ||q|| is far below the constraint alpha * 64 = 64: no clamp

    def rotated(w, b, m):
        eye = torch.eye(16, dtype=w.dtype)
        r = (eye + q) @ torch.linalg.inv(eye - q)
        merged = torch.cat([r[k].T @ w[16 * k:16 * (k + 1)] for k in range(4)])
        return w + m * (merged - w), b

    return TO_K, {"oft_blocks": blocks, "alpha": torch.tensor(1.0)}, rotated


def dora():
    up, down, magnitude = rnd(64, 4), rnd(4, 32), rnd(1, 32).abs() + 1

    def merged(w, b, m):
        target = w + 0.25 * up @ down
        columns = target.norm(dim=0, keepdim=True)
        return w + m * (magnitude * target / columns - w), b

    parts = {"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(1.0), "dora_scale": magnitude}
    return TO_K, parts, merged


CASES: dict[str, Callable[[], tuple]] = {
    f.__name__: f for f in (lora_linear, lora_conv, lora_conv_cp, loha, lokr, ia3, full, norm, glora, oft, dora)
}


def _tensor(bundle, key: str) -> torch.Tensor:
    return state(bundle)[key]


@pytest.mark.parametrize("case", CASES)
def test_every_type_merges_as_the_formula_and_restores_exactly(tmp_path, case):
    bundle = tiny_model(0, "sd1")
    (kohya, key), parts, formula = CASES[case]()
    path = write(tmp_path, {f"{kohya}.{p}": t for p, t in parts.items()})
    before = state(bundle)
    w0, b0 = before[key + ".weight"].double(), before.get(key + ".bias")
    patcher = NetworkPatcher(bundle)
    network = patcher.load(path)
    assert network.unmatched == () and [m.key for m in network.modules] and network.name == "net"
    assert patcher.apply([ActiveNetwork(network, te=TE, unet=UNET)])
    m = TE if key.startswith("te") else UNET
    w1, b1 = formula(w0, None if b0 is None else b0.double(), m)
    after = state(bundle)
    torch.testing.assert_close(after[key + ".weight"].double(), w1, atol=2e-6, rtol=1e-5)
    changed = (key + ".weight",) if b0 is None or torch.equal(b1.float(), b0) else (key + ".weight", key + ".bias")
    if b0 is not None and len(changed) == 2:
        torch.testing.assert_close(after[key + ".bias"].double(), b1, atol=2e-6, rtol=1e-5)
    assert_same(bundle, before, except_=changed)
    patcher.apply([])
    assert_same(bundle, before)


def test_only_touched_weights_are_backed_up_and_freed_on_restore(tmp_path):
    bundle = tiny_model(0, "sd1")
    (kohya, key), parts, _ = lora_conv()
    (kohya2, key2), parts2, _ = full()
    path = write(tmp_path, {f"{kohya}.{p}": t for p, t in parts.items()} | {f"{kohya2}.{p}": t for p, t in parts2.items()})
    patcher = NetworkPatcher(bundle)
    patcher.apply([ActiveNetwork(patcher.load(path))])
    touched = [state(bundle)[k] for k in (key + ".weight", key2 + ".weight", key2 + ".bias")]
    assert patcher.backup_bytes == sum(t.numel() * 4 for t in touched)
    unet_bytes = sum(p.numel() * p.element_size() for p in bundle.unet.parameters())
    assert patcher.backup_bytes < unet_bytes / 10
    patcher.apply([])
    assert patcher.backup_bytes == 0


def test_the_same_set_again_does_not_merge_again(tmp_path):
    bundle = tiny_model(0, "sd1")
    (kohya, key), parts, formula = lora_linear()
    path = write(tmp_path, {f"{kohya}.{p}": t for p, t in parts.items()})
    patcher = NetworkPatcher(bundle)
    w0 = _tensor(bundle, key + ".weight").double()
    assert patcher.apply([ActiveNetwork(patcher.load(path), unet=0.5)])
    assert not patcher.apply([ActiveNetwork(patcher.load(path), unet=0.5)])  # same file, unchanged: same object
    assert patcher.merge_count == 1
    assert patcher.apply([ActiveNetwork(patcher.load(path), unet=0.25)])  # other multiplier: restore, merge
    assert patcher.merge_count == 2
    expected, _ = formula(w0, None, 0.25)  # not 0.5 + 0.25
    torch.testing.assert_close(_tensor(bundle, key + ".weight").double(), expected, atol=2e-6, rtol=1e-5)


def test_networks_merge_in_order_and_w_dependent_types_see_earlier_ones(tmp_path):
    bundle = tiny_model(0, "sd1")
    (kohya, key), lora_parts, lora_formula = lora_linear()
    ia3_scale = rnd(64)
    first = write(tmp_path, {f"{kohya}.{p}": t for p, t in lora_parts.items()}, "first")
    second = write(tmp_path, {f"{kohya}.weight": ia3_scale, f"{kohya}.on_input": torch.tensor(False)}, "second")
    patcher = NetworkPatcher(bundle)
    w0 = _tensor(bundle, key + ".weight").double()
    patcher.apply([ActiveNetwork(patcher.load(first), unet=0.8), ActiveNetwork(patcher.load(second), unet=0.5)])
    w1, _ = lora_formula(w0, None, 0.8)
    expected = w1 + 0.5 * w1 * ia3_scale[:, None].double()
    torch.testing.assert_close(_tensor(bundle, key + ".weight").double(), expected, atol=2e-6, rtol=1e-5)


def test_shape_mismatch_names_the_module_and_leaves_weights_untouched(tmp_path):
    """An SD1-shaped LoRA (cross-attention 32) on the tiny SDXL model (cross-attention 64)."""
    bundle = tiny_model(0, "sdxl")
    before = state(bundle)
    (kohya, _), parts, _ = lora_linear()
    (kohya2, _), parts2, _ = lora_conv()  # fits, and comes first: must be rolled back
    good = write(tmp_path, {f"{kohya2}.{p}": t for p, t in parts2.items()}, "good")
    bad = write(tmp_path, {f"{kohya}.{p}": t for p, t in parts.items()}, "sd1lora")
    patcher = NetworkPatcher(bundle)
    with pytest.raises(NetworkError, match=r"'sd1lora' does not fit this model: module diffusion_model_input_blocks_3_1_"
                                            r"transformer_blocks_0_attn2_to_k \(unet\.down_blocks\.1\.attentions\.0\."):
        patcher.apply([ActiveNetwork(patcher.load(good)), ActiveNetwork(patcher.load(bad))])
    assert_same(bundle, before)
    assert patcher.active == () and patcher.backup_bytes == 0


def test_a_file_that_matches_nothing_is_refused_and_unmatched_keys_are_reported(tmp_path):
    bundle = tiny_model(0, "sd1")
    patcher = NetworkPatcher(bundle)
    alien = write(tmp_path, {"lora_unet_no_such_module.lora_up.weight": rnd(2, 1),
                             "lora_unet_no_such_module.lora_down.weight": rnd(1, 2)}, "alien")
    with pytest.raises(NetworkError, match="none of its 2 keys names a module of this model"):
        patcher.load(alien)
    (kohya, _), parts, _ = lora_linear()
    mixed = write(tmp_path, {f"{kohya}.{p}": t for p, t in parts.items()} | {"lora_te2_text_projection.diff": rnd(2)})
    assert patcher.load(mixed).unmatched == ("lora_te2_text_projection.diff",)


def test_unknown_type_and_oft_are_refused(tmp_path):
    patcher = NetworkPatcher(tiny_model(0, "sd1"))
    odd = write(tmp_path, {f"{TO_K[0]}.mystery": rnd(2)}, "odd")
    with pytest.raises(NetworkError, match="module diffusion_model_input_blocks_3_1_.*has parts mystery; no network type accepts them"):
        patcher.load(odd)
    oft = write(tmp_path, {f"{TO_K[0]}.oft_diag": rnd(4, 16, 16)}, "oft")
    with pytest.raises(NetworkError, match=r"old LyCORIS OFT \(oft_diag\) is not supported"):
        patcher.load(oft)


def test_under_inference_mode_and_restored_outside(tmp_path):
    bundle = tiny_model(0, "sd1")
    (kohya, _), parts, _ = full()
    path = write(tmp_path, {f"{kohya}.{p}": t for p, t in parts.items()})
    before = state(bundle)
    patcher = NetworkPatcher(bundle)
    with torch.inference_mode():
        patcher.apply([ActiveNetwork(patcher.load(path))])
    patcher.apply([])
    assert_same(bundle, before)


def test_a_bias_delta_creates_a_missing_bias_and_restore_removes_it(tmp_path):
    bundle = tiny_model(0, "sd1")
    diff, diff_b = rnd(64, 32), rnd(64)
    path = write(tmp_path, {f"{TO_K[0]}.diff": diff, f"{TO_K[0]}.diff_b": diff_b})
    before = state(bundle)
    patcher = NetworkPatcher(bundle)
    patcher.apply([ActiveNetwork(patcher.load(path), unet=0.5)])
    module = bundle.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k
    torch.testing.assert_close(module.bias, (0.5 * diff_b).float())
    patcher.apply([])
    assert module.bias is None
    assert_same(bundle, before)


def test_inpainting_conv_in_gets_the_4_channel_delta_zero_padded(tmp_path):
    bundle = tiny_model(0, "sd1-inpaint")
    up, down = rnd(32, 2, 1, 1), rnd(2, 4, 3, 3)
    path = write(tmp_path, {"lora_unet_conv_in.lora_up.weight": up, "lora_unet_conv_in.lora_down.weight": down})
    w0 = bundle.unet.conv_in.weight.detach().clone()
    patcher = NetworkPatcher(bundle)
    patcher.apply([ActiveNetwork(patcher.load(path))])
    w1 = bundle.unet.conv_in.weight
    torch.testing.assert_close(w1[:, :4].double(), w0[:, :4] + (up.flatten(1) @ down.flatten(1)).reshape(32, 4, 3, 3))
    assert torch.equal(w1[:, 4:], w0[:, 4:])


def test_sd2_attention_changes_only_with_all_four_projections(tmp_path):
    """A1111 applies an OpenCLIP attention LoRA only with q, k, v and out; then q/k/v bias deltas are dropped."""
    bundle = tiny_model(0, "sd2")
    layer = "lora_te_text_model_encoder_layers_0_self_attn_"
    three = {f"{layer}{p}_proj.diff": rnd(32, 32) for p in "qkv"}
    patcher = NetworkPatcher(bundle)
    before = state(bundle)
    partial = patcher.load(write(tmp_path, three | {"lora_te_text_model_encoder_layers_1_mlp_fc1.diff": rnd(37, 32)}, "partial"))
    assert sorted(partial.skipped) == [f"model_transformer_resblocks_0_attn_{p}_proj" for p in "kqv"]
    patcher.apply([ActiveNetwork(partial)])
    assert_same(bundle, before, except_=("te0.encoder.layers.1.mlp.fc1.weight",))
    four = three | {f"{layer}out_proj.diff": rnd(32, 32), f"{layer}q_proj.diff_b": rnd(32), f"{layer}out_proj.diff_b": rnd(32)}
    patcher.apply([ActiveNetwork(patcher.load(write(tmp_path, four, "four")))])
    attn = "te0.encoder.layers.0.self_attn."
    assert_same(bundle, before, except_=tuple(f"{attn}{p}_proj.weight" for p in ("q", "k", "v", "out")) + (f"{attn}out_proj.bias",))


def test_sdxl_both_encoders_and_ldm_named_unet_keys(tmp_path):
    bundle = tiny_model(0, "sdxl")
    te1, te2, unet = rnd(37, 32), rnd(37, 32), rnd(64, 64)
    path = write(tmp_path, {
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.diff": te1,
        "lora_te2_text_model_encoder_layers_1_mlp_fc1.diff": te2,
        "lora_unet_input_blocks_3_1_transformer_blocks_0_attn2_to_k.diff": unet,
    })
    before = state(bundle)
    patcher = NetworkPatcher(bundle)
    patcher.apply([ActiveNetwork(patcher.load(path), te=TE, unet=UNET)])
    now = state(bundle)
    for key, delta, m in (("te0.encoder.layers.0.mlp.fc1", te1, TE), ("te1.text_model.encoder.layers.1.mlp.fc1", te2, TE),
                          ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", unet, UNET)):
        torch.testing.assert_close(now[key + ".weight"].double(), before[key + ".weight"] + m * delta)


def test_diffusers_peft_keys_are_an_extension(tmp_path):
    bundle = tiny_model(0, "sd1")
    a, b = rnd(4, 32), rnd(37, 4)
    path = write(tmp_path, {"text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_A.weight": a,
                            "text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_B.weight": b})
    before = state(bundle)
    patcher = NetworkPatcher(bundle)
    patcher.apply([ActiveNetwork(patcher.load(path), te=TE, unet=UNET)])
    key = "te0.encoder.layers.1.mlp.fc1.weight"
    torch.testing.assert_close(state(bundle)[key].double(), before[key] + TE * b @ a)


def test_bfloat16_weights_merge_in_float32_and_restore_exactly(tmp_path):
    bundle = tiny_model(0, "sd1")
    bundle.unet.to(torch.bfloat16)
    (kohya, key), parts, _ = lora_linear()
    path = write(tmp_path, {f"{kohya}.{p}": t.half() for p, t in parts.items()})
    before = state(bundle)
    patcher = NetworkPatcher(bundle)
    patcher.apply([ActiveNetwork(patcher.load(path))])
    up, down = parts["lora_up.weight"].half().float(), parts["lora_down.weight"].half().float()
    expected = (before[key + ".weight"].float() + 0.5 * up @ down).to(torch.bfloat16)
    assert torch.equal(state(bundle)[key + ".weight"], expected)
    patcher.apply([])
    assert_same(bundle, before)


def test_multipliers_are_validated():
    network = NetworkPatcher(tiny_model(0, "sd1"))
    del network
    from retouch.models.networks.network import LoadedNetwork

    empty = LoadedNetwork("x", ())
    with pytest.raises(NetworkError, match="te multiplier must be a finite number"):
        ActiveNetwork(empty, te=float("nan"))
    with pytest.raises(NetworkError, match="dyn must be a positive integer"):
        ActiveNetwork(empty, dyn=0)


def test_channels_last_convolutions_take_the_general_path_and_restore_exactly(tmp_path):
    """The Engine stores conv weights NHWC; the one-pass addmm needs a contiguous weight, so this runs
    the delta-then-add path, which must give the same merged values."""
    bundle = tiny_model(0, "sd1")
    bundle.unet.to(memory_format=torch.channels_last)
    (kohya, key), parts, formula = lora_conv()
    path = write(tmp_path, {f"{kohya}.{p}": t for p, t in parts.items()})
    before = state(bundle)
    assert not bundle.unet.down_blocks[0].resnets[0].conv1.weight.is_contiguous()
    patcher = NetworkPatcher(bundle)
    patcher.apply([ActiveNetwork(patcher.load(path), unet=UNET)])
    expected, _ = formula(before[key + ".weight"].double(), None, UNET)
    torch.testing.assert_close(state(bundle)[key + ".weight"].double(), expected, atol=2e-6, rtol=1e-5)
    patcher.apply([])
    assert_same(bundle, before)


def test_a_network_bound_to_another_model_is_refused(tmp_path):
    (kohya, _), parts, _ = lora_linear()
    path = write(tmp_path, {f"{kohya}.{p}": t for p, t in parts.items()})
    other = NetworkPatcher(tiny_model(0, "sd1")).load(path)
    bundle = tiny_model(0, "sd1")
    before = state(bundle)
    with pytest.raises(NetworkError, match="was bound to another model"):
        NetworkPatcher(bundle).apply([ActiveNetwork(other)])
    assert_same(bundle, before)
