"""A1111's prompt language end to end on the tiny model: what reaches the UNet, per call, per job.

The conditioning that reaches the UNet is captured with a forward pre-hook (test-only) and compared
with values computed here from the model's own tokenizer and text encoder with A1111's formulas
(spec a1111-prompts.md §1.7, §2.6, §3, §5); LoRA files are written in kohya's format in the test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import Tensor

from retouch import Engine, Img2Img, ParamError
from retouch.infotext import parse_infotext
from retouch.testing import tiny_model

SIZE = 32
BOS, EOS = 49406, 49407


def _scene() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


def _job(**kw: object) -> Img2Img:
    base: dict[str, object] = dict(
        prompt="a cat", init_images=[_scene()], steps=4, width=SIZE, height=SIZE, seed=7,
        sampler_name="Euler", denoising_strength=0.75, cfg_scale=5.0,
    )
    base.update(kw)
    return Img2Img(**base)  # type: ignore[arg-type]


class Capture:
    """Records ``encoder_hidden_states`` (and SDXL's added conds) of every UNet call."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.contexts: list[Tensor] = []
        self.added: list[dict[str, Tensor]] = []
        self.handle = unet.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module: object, args: tuple, kwargs: dict) -> None:
        self.contexts.append(kwargs["encoder_hidden_states"].detach().clone())
        if "added_cond_kwargs" in kwargs:
            self.added.append({k: v.detach().clone() for k, v in kwargs["added_cond_kwargs"].items()})

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def _hf(model, text: str) -> Tensor:
    """A1111's SD1 encoding of a plain text: last_hidden_state of [BOS, ids, EOS, EOS...]."""
    tok, enc = model.tokenizers[0], model.text_encoders[0]
    ids = [BOS, *tok(text, add_special_tokens=False)["input_ids"], EOS]
    with torch.inference_mode():
        return enc(input_ids=torch.tensor([ids + [EOS] * (77 - len(ids))])).last_hidden_state[0]


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


def test_prompt_editing_is_squeezed_in_img2img_case_15(model) -> None:
    """Case 15: steps 20, Euler, ``[a:b:0.5]``: denoise 0.75 runs 16 calls, 11×a then 5×b; 0.5 runs 11, all a."""
    engine = Engine(model, precision="fp32")
    a, b = _hf(model, "cat"), _hf(model, "dog")
    for strength, want in ((0.75, ["a"] * 11 + ["b"] * 5), (0.5, ["a"] * 11)):
        with Capture(model.unet) as cap:
            engine.run(_job(prompt="[cat:dog:0.5]", steps=20, denoising_strength=strength, negative_prompt=""))
        got = []
        for ctx in cap.contexts:
            cond = ctx[0]
            got.append("a" if torch.allclose(cond, a, atol=1e-6) else "b" if torch.allclose(cond, b, atol=1e-6) else "?")
        assert got == want


def test_emphasis_reaching_the_unet_is_a1111s_formula(model) -> None:
    """§2.6: the cond row of ``a (cat:1.5)`` is z·w·mean(z)/mean(z·w) with w = 1.5 on the cat token."""
    engine = Engine(model, precision="fp32")
    with Capture(model.unet) as cap:
        engine.run(_job(prompt="a (cat:1.5)", negative_prompt="", steps=2))
    z = _hf(model, "a cat")
    w = torch.ones(77, 1)
    w[2] = 1.5
    want = (z * w) * (z.mean() / (z * w).mean())
    assert torch.allclose(cap.contexts[0][0], want, rtol=0, atol=1e-6)
    assert torch.allclose(cap.contexts[0][1], _hf(model, ""), rtol=0, atol=1e-6)  # uncond row


def test_and_sub_prompts_are_batched_and_combined_with_their_weights(model) -> None:
    """§3: ``cat AND dog:0.5`` sends rows [cat, dog, uncond] in one call; the result is u + s·(c1-u) + 0.5·s·(c2-u)."""
    engine = Engine(model, precision="fp32")
    with Capture(model.unet) as cap:
        engine.run(_job(prompt="cat AND dog:0.5", negative_prompt="", steps=2))
    rows = cap.contexts[0]
    assert rows.shape[0] == 3
    assert torch.allclose(rows[0], _hf(model, "cat"), atol=1e-6)
    assert torch.allclose(rows[1], _hf(model, " dog"), atol=1e-6)
    plain = engine.run(_job(prompt="cat", steps=2)).images[0]
    anded = engine.run(_job(prompt="cat AND dog:0.5", steps=2)).images[0]
    assert plain.tobytes() != anded.tobytes()


def test_break_and_long_prompts_reach_the_unet_as_chunks(model) -> None:
    """§2.4: ``a BREAK b`` is two 77-token chunks; the uncond stays one chunk and runs in its own call."""
    engine = Engine(model, precision="fp32")
    with Capture(model.unet) as cap:
        engine.run(_job(prompt="a BREAK b", negative_prompt="", steps=2))
    assert [c.shape[1] for c in cap.contexts[:2]] == [154, 77]


def test_emphasis_key_in_the_infotext_and_read_back(model) -> None:
    """§2.2: ``Emphasis`` is written only when a text holds brackets and the mode is not Original."""
    engine = Engine(model, precision="fp32")
    text = engine.run(_job(prompt="a (cat:1.2)", emphasis="No norm", steps=2)).infotexts[0]
    assert parse_infotext(text)["Emphasis"] == "No norm"
    assert "Emphasis" not in engine.run(_job(prompt="a cat", emphasis="No norm", steps=2)).infotexts[0]
    assert "Emphasis" not in engine.run(_job(prompt="a (cat:1.2)", steps=2)).infotexts[0]
    with pytest.raises(ParamError, match="emphasis must be one of"):
        _job(emphasis="Loud")


def test_malformed_emphasis_weight_is_a_param_error(model) -> None:
    """Case 23: A1111 raises on ``(a:1.3.5)``; we refuse the job naming the fragment."""
    with pytest.raises(ParamError, match="1.3.5"):
        Engine(model, precision="fp32").run(_job(prompt="(a:1.3.5)", steps=2))


def test_sdxl_all_empty_negative_prompt_is_zeroed_case_41() -> None:
    """Case 41: SDXL with negative prompt "" -> uncond context and pooled are zeros, the size ids are not."""
    m = tiny_model(seed=0, family="sdxl")
    engine = Engine(m, precision="fp32")
    with Capture(m.unet) as cap:
        engine.run(_job(prompt="a cat", negative_prompt="", steps=2))
    ctx, added = cap.contexts[0], cap.added[0]
    assert ctx.shape[0] == 2 and torch.count_nonzero(ctx[1]) == 0 and torch.count_nonzero(ctx[0]) > 0
    assert torch.count_nonzero(added["text_embeds"][1]) == 0
    assert torch.equal(added["time_ids"][1], torch.tensor([SIZE, SIZE, 0, 0, SIZE, SIZE], dtype=torch.float32))
    with Capture(m.unet) as cap:
        engine.run(_job(prompt="a cat", negative_prompt="blurry", steps=2))
    assert torch.count_nonzero(cap.contexts[0][1]) > 0


# -- LoRA ------------------------------------------------------------------------------------------------


def _kohya_lora(folder: Path, model, name: str = "tlora", scale: float = 1.0) -> Path:
    """A rank-2 kohya LoRA on the text encoder's layer-0 q_proj and the UNet's first attn1.to_q."""
    g = torch.Generator().manual_seed(3)
    q = model.text_encoders[0].get_submodule("encoder.layers.0.self_attn.q_proj")
    unet_name = next(n for n, _ in model.unet.named_modules() if n.endswith("attn1.to_q"))
    uq = model.unet.get_submodule(unet_name)
    tensors = {}
    for key, mod in (("lora_te_text_model_encoder_layers_0_self_attn_q_proj", q),
                     ("lora_unet_" + unet_name.replace(".", "_"), uq)):
        out_f, in_f = mod.weight.shape
        tensors[f"{key}.lora_down.weight"] = torch.randn(2, in_f, generator=g) * scale
        tensors[f"{key}.lora_up.weight"] = torch.randn(out_f, 2, generator=g) * scale
        tensors[f"{key}.alpha"] = torch.tensor(2.0)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    save_file(tensors, str(path))
    return path


def test_lora_tag_changes_the_image_and_plain_jobs_get_the_original_back(tmp_path: Path) -> None:
    """§5.4: merged for the job, restored exactly: a plain job after a LoRA job equals one on a fresh engine."""
    m = tiny_model(seed=0)
    _kohya_lora(tmp_path / "lora", m)
    fresh = Engine(tiny_model(seed=0), precision="fp32").run(_job()).images[0].tobytes()
    engine = Engine(m, precision="fp32", lora_dir=tmp_path / "lora")
    lora = engine.run(_job(prompt="a cat <lora:tlora:0.8>")).images[0].tobytes()
    again = engine.run(_job(prompt="a cat <lora:tlora:0.8>")).images[0].tobytes()
    assert engine.networks.patcher.merge_count == 1  # the same set is not merged again
    plain = engine.run(_job()).images[0].tobytes()
    assert lora != fresh and again == lora and plain == fresh


def test_lora_hashes_in_the_infotext_and_the_tag_kept_in_the_prompt(tmp_path: Path) -> None:
    """§5.7, case 40: ``Lora hashes: "tlora: <addnet short hash>"``; the prompt keeps the tag."""
    from retouch.models.hashing import addnet_hash

    m = tiny_model(seed=0)
    path = _kohya_lora(tmp_path, m)
    engine = Engine(m, precision="fp32", lora_dir=tmp_path)
    text = engine.run(_job(prompt="a cat <lora:tlora:0.5>", steps=2)).infotexts[0]
    parsed = parse_infotext(text)
    assert parsed["Lora hashes"] == f"tlora: {addnet_hash(path)[:12]}"
    assert parsed["Prompt"] == "a cat <lora:tlora:0.5>"


def test_lora_tag_in_the_negative_prompt_stays_text_case_42(tmp_path: Path) -> None:
    """Case 42: A1111 does not parse negative prompts for extra networks: nothing is activated."""
    m = tiny_model(seed=0)
    _kohya_lora(tmp_path, m)
    engine = Engine(m, precision="fp32", lora_dir=tmp_path)
    result = engine.run(_job(negative_prompt="<lora:tlora:1>", steps=2))
    assert engine.networks.patcher.active == () and "Lora hashes" not in result.infotexts[0]


def test_unknown_lora_names_and_types_are_refused(tmp_path: Path) -> None:
    """Where A1111 only logs "Lora not found", we refuse and list what there is."""
    m = tiny_model(seed=0)
    _kohya_lora(tmp_path, m)
    engine = Engine(m, precision="fp32", lora_dir=tmp_path)
    with pytest.raises(ParamError, match=r"no LoRA named 'nope'.*tlora"):
        engine.run(_job(prompt="a <lora:nope:1>", steps=2))
    with pytest.raises(ParamError, match="hypernet"):
        engine.run(_job(prompt="a <hypernet:x:1>", steps=2))
    with pytest.raises(ParamError, match="no LoRA folder"):
        Engine(m, precision="fp32").run(_job(prompt="a <lora:tlora:1>", steps=2))


def test_textual_inversion_in_the_prompt_and_ti_hashes(tmp_path: Path, model) -> None:
    """§4: an embedding equal to the token embedding of "dog" conditions like "dog"; ``TI hashes`` once."""
    from retouch.models.hashing import file_sha256

    tok, enc = model.tokenizers[0], model.text_encoders[0]
    dog = enc.embeddings.token_embedding.weight[tok("dog", add_special_tokens=False)["input_ids"][0]][None]
    path = tmp_path / "zzdog.safetensors"
    save_file({"emb_params": dog.detach().clone().contiguous()}, str(path))
    engine = Engine(model, precision="fp32", embeddings_dir=tmp_path)
    with Capture(model.unet) as cap:
        result = engine.run(_job(prompt="a zzdog", negative_prompt="zzdog", steps=2))
    assert torch.allclose(cap.contexts[0][0], _hf(model, "a dog"), atol=1e-6)
    assert parse_infotext(result.infotexts[0])["TI hashes"] == f"zzdog: {file_sha256(path)[:12]}"


def test_keys_that_name_no_module_are_reported_in_the_comments(tmp_path: Path) -> None:
    """A1111 ignores (debug-logs) LoRA keys that match no module; we run the job and say so."""
    m = tiny_model(seed=0)
    path = _kohya_lora(tmp_path, m)
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    tensors["lora_unet_no_such_block.lora_down.weight"] = torch.zeros(2, 4)
    tensors["lora_unet_no_such_block.lora_up.weight"] = torch.zeros(4, 2)
    save_file(tensors, str(path))
    result = Engine(m, precision="fp32", lora_dir=tmp_path).run(_job(prompt="a <lora:tlora:1>", steps=2))
    assert any("tlora" in c and "name no module" in c and "no_such_block" in c for c in result.comments)
