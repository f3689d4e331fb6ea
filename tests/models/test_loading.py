"""load_model on tiny random checkpoints of every family, written in the original LDM single-file layout."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from retouch.models import loading
from retouch.models.bundle import ModelBundle, scaled_linear_alphas_cumprod
from retouch.models.families import FAMILIES
from retouch.models.ldm_layout import save_ldm_checkpoint, to_ldm_state_dict, vae_to_ldm
from retouch.models.loading import UnsafeCheckpointError, load_model
from retouch.testing import tiny_model

from .helpers import ALL_FAMILIES, text_outputs, unet_output, vae_outputs

PROMPT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]  # "a photo of a cat" in CLIP's BPE


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def assert_same_outputs(original: ModelBundle, loaded: ModelBundle) -> None:
    torch.testing.assert_close(unet_output(loaded.unet), unet_output(original.unet), rtol=1e-4, atol=1e-5)
    for got, want in zip(vae_outputs(loaded.vae), vae_outputs(original.vae), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert len(loaded.text_encoders) == len(original.text_encoders)
    for enc, ref, tok in zip(loaded.text_encoders, original.text_encoders, loaded.tokenizers, strict=True):
        for got, want in zip(text_outputs(enc, tok), text_outputs(ref, tok), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ALL_FAMILIES)
def test_every_family_loads_detected_and_reproduces_outputs(name, originals, checkpoints, loaded):
    loaded = loaded(name)
    assert loaded.family is FAMILIES[name]
    original = originals[name]
    for got, want in zip((loaded.unet, loaded.vae, *loaded.text_encoders), (original.unet, original.vae, *original.text_encoders), strict=True):
        assert type(got) is type(want)
        assert_same_weights(got, want)
    assert_same_outputs(original, loaded)
    assert loaded.unet.config.in_channels == FAMILIES[name].unet_in_channels
    assert loaded.name == f"tiny-{name}"
    assert loaded.hash == hashlib.sha256(checkpoints[name].read_bytes()).hexdigest()[:10]
    assert loaded.path == str(checkpoints[name])
    torch.testing.assert_close(loaded.alphas_cumprod, scaled_linear_alphas_cumprod(0.00085, 0.012, 1000))


@pytest.mark.parametrize(
    ("name", "encoder_types", "pads"),
    [
        ("sd1", ["CLIPTextModel"], [49407]),
        ("sd2", ["CLIPTextModel"], [0]),
        ("sdxl", ["CLIPTextModel", "CLIPTextModelWithProjection"], [49407, 0]),
    ],
)
def test_text_encoders_and_tokenizers_per_base(name, encoder_types, pads, loaded):
    """SD1: OpenAI CLIP; SD2: OpenCLIP as CLIPTextModel, padded with "!" (id 0); SDXL: both, second projected."""
    loaded = loaded(name)
    assert [type(e).__name__ for e in loaded.text_encoders] == encoder_types
    for tokenizer, pad in zip(loaded.tokenizers, pads, strict=True):
        ids = tokenizer("a photo of a cat", padding="max_length", max_length=77).input_ids
        assert ids[:7] == PROMPT_IDS
        assert ids[7:] == [pad] * 70


def test_loaded_modules_are_frozen_eval_float32(loaded):
    """Same-dtype loading keeps the stored float32; modules come back in eval mode without grads."""
    params = list(loaded("sd1").unet.parameters())
    assert not loaded("sd1").unet.training
    assert all(not p.requires_grad for p in params)
    assert {p.dtype for p in params} == {torch.float32}


def test_dtype_none_keeps_stored_half_precision_and_dtype_converts(originals, tmp_path):
    path = tmp_path / "half.safetensors"
    save_ldm_checkpoint(originals["sd1"], path, dtype=torch.float16)
    kept = load_model(path)
    for module in (kept.unet, kept.vae, *kept.text_encoders):
        assert {p.dtype for p in module.parameters()} == {torch.float16}
    converted = load_model(path, dtype=torch.float32)
    assert converted.unet.conv_in.weight.dtype == torch.float32
    want = originals["sd1"].unet.conv_in.weight.half().float()
    assert torch.equal(converted.unet.conv_in.weight, want)


def _lightning_module(monkeypatch: pytest.MonkeyPatch) -> type:
    """A stand-in for pytorch_lightning's ModelCheckpoint, importable while the test saves a .ckpt."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    cls = type("ModelCheckpoint", (), {"__module__": names[-1]})
    sys.modules[names[-1]].ModelCheckpoint = cls  # type: ignore[attr-defined]
    return cls


def test_lightning_ckpt_with_nested_state_dict_loads(originals, tmp_path, monkeypatch):
    """An old SD1-style .ckpt: {"state_dict": ..., "global_step": ..., "callbacks": {ModelCheckpoint: ...}}."""
    callback = _lightning_module(monkeypatch)
    path = tmp_path / "old-style.ckpt"
    state = {k: v.clone() for k, v in to_ldm_state_dict(originals["sd1-inpaint"]).items()}
    state["model_ema.decay"] = torch.tensor(0.9999)
    torch.save({"state_dict": state, "global_step": 470000, "callbacks": {callback: {"best": 1.0}}}, path)
    for name in list(sys.modules):
        if name.startswith("pytorch_lightning"):
            monkeypatch.delitem(sys.modules, name)
    loaded = load_model(path, config_dir=_config_folder(originals["sd1-inpaint"], tmp_path / "cfg"))
    assert loaded.family is FAMILIES["sd1-inpaint"]
    assert_same_outputs(originals["sd1-inpaint"], loaded)
    assert loaded.name == "old-style"


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize(
    ("kind", "reason"),
    [("zip", "import `posix.system`"), ("pickle2", "import `posix.system`"), ("pickle4", "Unsupported operand")],
)
def test_malicious_ckpt_is_refused_and_never_runs(tmp_path, kind, reason):
    """torch.save (zip) and bare pickles with a ``__reduce__`` that would run a shell command."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    if kind == "zip":
        torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "hook": _Evil(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"global_step": 1, "hook": _Evil(marker)}, protocol=int(kind[-1])))
    with pytest.raises(UnsafeCheckpointError, match=r"refused to load .*evil\.ckpt.*arbitrary code") as info:
        load_model(path)
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError)
    assert not marker.exists()


def test_old_sd1_text_encoder_keys_without_text_model_are_moved(originals, tmp_path):
    """Early SD1 files name CLIP keys ``cond_stage_model.transformer.encoder...`` (no ``text_model.``)."""
    old = "cond_stage_model.transformer."
    state = {k.replace(old + "text_model.", old): v.contiguous() for k, v in to_ldm_state_dict(originals["sd1"]).items()}
    assert old + "encoder.layers.0.mlp.fc1.weight" in state
    path = tmp_path / "old-keys.safetensors"
    save_file(state, path)
    loaded = load_model(path, config_dir=_config_folder(originals["sd1"], tmp_path / "cfg"))
    assert_same_weights(loaded.text_encoders[0], originals["sd1"].text_encoders[0])


def test_unknown_layout_names_what_was_found(tmp_path):
    path = tmp_path / "odd.safetensors"
    save_file({"transformer.blocks.0.weight": torch.zeros(4, 4), "pos_embed": torch.zeros(1, 4)}, path)
    with pytest.raises(ValueError, match=r"unknown checkpoint layout.*2 tensors; key prefixes: pos_embed \(1\), transformer\.blocks \(1\)"):
        load_model(path)


def test_truncated_files_and_incomplete_config_folders_fail_clearly(checkpoints, tmp_path):
    for suffix in (".safetensors", ".ckpt"):
        path = tmp_path / f"cut{suffix}"
        source = checkpoints["sd1"].read_bytes() if suffix == ".safetensors" else b"PK\x03\x04broken"
        path.write_bytes(source[: len(source) // 2])
        with pytest.raises(ValueError, match=rf"cannot read checkpoint .*cut\{suffix}.*is the file complete"):
            load_model(path)
    (tmp_path / "cfg").mkdir()
    with pytest.raises(ValueError, match=r"config folder is incomplete: .*cfg/unet/config\.json is missing"):
        load_model(checkpoints["sd1"], config_dir=tmp_path / "cfg")


def test_unsupported_suffix_and_missing_paths(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.safetensors, \.ckpt, \.pt, \.pth"):
        load_model(tmp_path / "model.bin")
    with pytest.raises(FileNotFoundError, match="no model at"):
        load_model(tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match="without model_index.json"):
        load_model(tmp_path)


def test_unknown_family_override_lists_families(checkpoints):
    with pytest.raises(ValueError, match="known families: sd1, sd1-inpaint"):
        load_model(checkpoints["sd1"], family="sd3")


def _config_folder(bundle: ModelBundle, folder: Path) -> Path:
    bundle.unet.save_config(folder / "unet")
    bundle.vae.save_config(folder / "vae")
    for sub, encoder in zip(("text_encoder", "text_encoder_2"), bundle.text_encoders, strict=False):
        encoder.config.save_pretrained(folder / sub)
    return folder


def test_file_without_embedded_configs_uses_bundled_config_or_config_dir(originals, tmp_path):
    path = tmp_path / "plain.safetensors"
    save_ldm_checkpoint(originals["sd2"], path, embed_configs=False)
    with pytest.raises(ValueError, match=r"UNet weights do not fit its config: .*missing.*with other shapes"):
        load_model(path, family="sd2")  # the bundled SD2 config is full size; the weights are tiny
    loaded = load_model(path, family="sd2", config_dir=_config_folder(originals["sd2"], tmp_path / "cfg"))
    assert_same_outputs(originals["sd2"], loaded)


def test_sd2_v_prediction_probe_follows_a1111_rule(tmp_path):
    """No ``v_pred`` key: A1111's probe decides (mean(out - x) < -1 at t=999 means v-prediction)."""
    results = {}
    for bias in (-10.0, 10.0):
        bundle = tiny_model(0, "sd2")
        with torch.no_grad():
            bundle.unet.conv_out.bias.fill_(bias)
        path = tmp_path / f"sd2-bias{bias:+.0f}.safetensors"
        save_ldm_checkpoint(bundle, path)
        results[bias] = load_model(path).family.name
    assert results == {-10.0: "sd2-v", 10.0: "sd2"}


def test_sd2_yaml_beside_checkpoint_and_family_override(tmp_path):
    bundle = tiny_model(0, "sd2")
    with torch.no_grad():
        bundle.unet.conv_out.bias.fill_(10.0)  # the probe would say epsilon
    path = tmp_path / "v2-1_768-ema-pruned.safetensors"
    save_ldm_checkpoint(bundle, path)
    path.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n    linear_start: 0.00085\n')
    assert load_model(path).family.name == "sd2-v"
    assert load_model(path, family="sd2").family.name == "sd2"


def test_v_pred_key_is_written_for_v_models_and_read_back(checkpoints):
    from safetensors import safe_open

    with safe_open(str(checkpoints["sd2-v"]), "pt") as f:
        assert "v_pred" in f.keys()  # noqa: SIM118
    with safe_open(str(checkpoints["sd2"]), "pt") as f:
        assert "v_pred" not in f.keys()  # noqa: SIM118


def test_separate_vae_file_bare_ldm_keys(checkpoints, tmp_path):
    other = tiny_model(1, "sd1").vae
    vae_path = tmp_path / "my-vae.safetensors"
    save_file({k: v.contiguous() for k, v in vae_to_ldm(other.state_dict(), prefix="").items()}, vae_path)
    loaded = load_model(checkpoints["sd1"], vae=vae_path)
    assert_same_weights(loaded.vae, other)
    assert loaded.vae_name == "my-vae.safetensors"
    assert loaded.vae_hash == hashlib.sha256(vae_path.read_bytes()).hexdigest()[:10]
    assert loaded.hash != loaded.vae_hash


def test_separate_vae_ckpt_with_prefix_loss_and_ema_keys(checkpoints, tmp_path):
    other = tiny_model(2, "sdxl").vae
    state = dict(vae_to_ldm(other.state_dict()))  # "first_stage_model." prefix
    state["loss.discriminator.main.0.weight"] = torch.zeros(2, 3, 4, 4)
    state["model_ema.decay"] = torch.tensor(0.999)
    path = tmp_path / "vae-ft.pt"
    torch.save({"state_dict": state}, path)
    loaded = load_model(checkpoints["sdxl"], vae=path)
    assert_same_weights(loaded.vae, other)
    assert loaded.vae.config.scaling_factor == pytest.approx(0.13025)
    assert loaded.vae_name == "vae-ft.pt"


def test_separate_vae_in_diffusers_layout(checkpoints, tmp_path):
    other = tiny_model(3, "sd2").vae
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(other.state_dict(), path)
    assert_same_weights(load_model(checkpoints["sd2"], vae=path).vae, other)


def test_separate_vae_rejects_a_non_vae_file(checkpoints, tmp_path):
    path = tmp_path / "not-a-vae.safetensors"
    save_file({"lora_unet_down.alpha": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"not a VAE file: .*lora_unet_down\.alpha \(1\)"):
        load_model(checkpoints["sd1"], vae=path)


def _diffusers_folder(bundle: ModelBundle, folder: Path) -> Path:
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLInpaintPipeline,
    )

    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type=bundle.family.prediction
    )
    parts = dict(vae=bundle.vae, unet=bundle.unet, scheduler=scheduler)
    if bundle.family.is_sdxl:
        pipe = StableDiffusionXLInpaintPipeline(
            text_encoder=bundle.text_encoders[0], text_encoder_2=bundle.text_encoders[1],
            tokenizer=bundle.tokenizers[0], tokenizer_2=bundle.tokenizers[1], **parts,
        )
    else:
        cls = StableDiffusionInpaintPipeline if bundle.family.is_inpaint else StableDiffusionPipeline
        pipe = cls(
            text_encoder=bundle.text_encoders[0], tokenizer=bundle.tokenizers[0], safety_checker=None,
            feature_extractor=None, requires_safety_checker=False, **parts,
        )
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(originals, tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    return {name: _diffusers_folder(originals[name], root / name) for name in ("sd1", "sd2-v", "sdxl-inpaint")}


@pytest.mark.parametrize("name", ["sd1", "sd2-v", "sdxl-inpaint"])
def test_diffusers_folder_loads(name, originals, folders):
    loaded = load_model(folders[name])
    assert loaded.family is FAMILIES[name]
    assert_same_outputs(originals[name], loaded)
    assert (loaded.name, loaded.hash, loaded.path) == (name, None, str(folders[name]))


def test_no_network_is_touched_while_loading(checkpoints, folders, monkeypatch):
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert load_model(checkpoints["sdxl"]).family.name == "sdxl"
    assert load_model(folders["sd1"]).family.name == "sd1"


def test_demo_resolves_to_the_bundled_file_or_says_it_is_missing(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "DEMO_MODEL_PATH", tmp_path / "demo" / "demo.safetensors")
    with pytest.raises(FileNotFoundError, match="demo model is not installed"):
        load_model("demo")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "demo.safetensors").write_bytes(checkpoints["sd1"].read_bytes())
    loaded = load_model("demo")
    assert (loaded.name, loaded.family.name) == ("demo", "sd1")


def test_hash_is_cached_across_loads(checkpoints, _private_hash_cache):
    load_model(checkpoints["pix2pix"])
    cache = json.loads((_private_hash_cache / "hashes.json").read_text())
    entry = cache[str(checkpoints["pix2pix"].resolve())]
    assert entry["sha256"] == hashlib.sha256(checkpoints["pix2pix"].read_bytes()).hexdigest()
