"""Load the checkpoints users already have, with no network: single files and diffusers folders.

Single files in the LDM/A1111 layout (``.safetensors``, or pickled ``.ckpt``/``.pt``/``.pth``) are
converted with diffusers' own single-file conversion functions, using the config folder bundled for
the detected family (``configs/<family>/``; ``config_dir=`` or configs embedded by
``ldm_layout.save_ldm_checkpoint`` take precedence), so no hub is ever asked. Tokenizers come from the
vendored CLIP BPE (``tokenizers.clip_tokenizer``).

Memory: each tensor of a safetensors file is its own private (copy-on-write) memory map of its bytes
in the file (``_mapped_safetensors``), and pickles are opened with ``torch.load(mmap=True)``; the
models are created with empty (meta) parameters and the file's tensors are assigned into them
(``load_state_dict(assign=True)``), so the weights are never copied unless a dtype change is asked for.
Pages are read when first used and stay file-backed (the kernel may drop them again); a tensor that
the engine later replaces (a dtype cast, channels-last convolution weights) unmaps its bytes when the
last reference goes. ``safe_open(...).get_tensor`` instead copies every tensor into new memory, which
held a second full copy of the file while loading (bench/README.md, "Memory").

Dtypes: ``dtype=None`` keeps each component in its file's dominant dtype (no copy). The engine then
casts only what its precision asks for: the UNet and text encoders to the compute dtype (fp32 ->
bf16 under "auto" on a CPU with native bf16, bf16/fp16 -> fp32 under "fp32" or on a CPU without it,
fp16 -> bf16/fp32 on any CPU, which has no fp16 kernels), and the VAE to fp32 weights always (it runs
under autocast so a NaN decode can be redone in fp32). An fp32 file on an fp32 engine, or a bf16 file
on a bf16 engine for the UNet and text encoders, is used in place.

Safety: pickles load only with ``torch.load(weights_only=True)``; a pickle that needs anything besides
tensors and plain containers is refused (``UnsafeCheckpointError``) before any of its code runs.
The exceptions are an inert stand-in for PyTorch Lightning's ``ModelCheckpoint`` class, which old
SD1 ``.ckpt`` files name as a dictionary key, and ``torch.nn.ParameterDict``, in which A1111 stores a
textual-inversion embedding's vectors (A1111's own restricted unpickler allows both for these reasons;
``torch._utils._rebuild_parameter`` is already in torch's weights-only list).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from retouch.models import detect
from retouch.models.bundle import ModelBundle, scaled_linear_alphas_cumprod
from retouch.models.families import SD2, SD2_V, Family, family_by_name
from retouch.models.hashing import model_hash, read_safetensors_header
from retouch.models.ldm_layout import CONFIG_METADATA_KEY
from retouch.models.tokenizers import CONFIG_ROOT, clip_tokenizer

__all__ = ["load_model", "read_state_dict", "load_pickle", "bundled_configs", "probe_v_prediction", "UnsafeCheckpointError", "DEMO_MODEL_PATH", "DEMO_INPAINT_PATH", "DEMO_NAMES", "demo_path", "SINGLE_FILE_SUFFIXES"]

DEMO_MODEL_PATH = Path(__file__).resolve().parent.parent / "demo" / "demo.safetensors"
DEMO_INPAINT_PATH = DEMO_MODEL_PATH.with_name("demo-inpaint.safetensors")
DEMO_NAMES = ("demo", "demo-inpaint")  # the bundled models' names, which load_model resolves


def demo_path(name: str) -> Path | None:
    """The bundled file for a demo model's name ("demo", "demo-inpaint"), else None."""
    return {"demo": DEMO_MODEL_PATH, "demo-inpaint": DEMO_INPAINT_PATH}.get(name)


SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
Tensors = dict[str, torch.Tensor]


class UnsafeCheckpointError(ValueError):
    """A pickled checkpoint asks to import or call code, which Retouch refuses to run."""


class _InertLightningCallback:
    """Stand-in for ``pytorch_lightning...ModelCheckpoint``, named (never run) by old SD1 ``.ckpt`` files."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass


_PICKLE_ALLOWED: list[Any] = [
    (_InertLightningCallback, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
    torch.nn.modules.container.ParameterDict,
]


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, memory-mapped for zip-format files; unsafe pickles refused."""
    try:
        with torch.serialization.safe_globals(_PICKLE_ALLOWED):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(f"refused to load {path}: {_pickle_problem(str(exc))}") from None


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """Whatever a pickled ``.pt``/``.bin``/``.ckpt`` holds, loaded without running code from it.

    Tensors, parameters, ``ParameterDict`` and plain containers only; anything else raises
    ``UnsafeCheckpointError`` before any of the file's code runs.
    """
    return _torch_load(Path(path))


def _pickle_problem(message: str) -> str:
    """Why torch's weights-only unpickler stopped, in one sentence for the user."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        detail = f"the pickle asks to import `{found[1]}`, which a weights file never needs"
    else:
        reason = re.search(r"WeightsUnpickler error:\s*(.+)", message)
        detail = f"the pickle uses features a plain weights file does not ({reason[1].strip() if reason else 'unknown'})"
    return (
        f"{detail}; unpickling it fully could run arbitrary code from the file, so it was not unpickled "
        "(nothing in it ran). Use a .safetensors version of this model."
    )


def _normalize_keys(sd: Tensors) -> Tensors:
    """Old SD1 files name the CLIP text model without ``text_model.``; move those keys (as A1111 does)."""
    old = "cond_stage_model.transformer."
    moved = {}
    for key, value in sd.items():
        if key.startswith(old) and not key.startswith(old + "text_model."):
            key = old + "text_model." + key[len(old):]
        moved[key] = value
    return moved


def read_state_dict(path: str | os.PathLike[str]) -> tuple[Tensors, dict[str, str]]:
    """(tensors, safetensors metadata) of a single-file checkpoint, memory-mapped where possible.

    A ``state_dict`` entry (PyTorch Lightning) is unwrapped; non-tensor entries are dropped.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SINGLE_FILE_SUFFIXES:
        raise ValueError(f"unsupported checkpoint file {file.name!r}; expected one of {', '.join(SINGLE_FILE_SUFFIXES)}")
    metadata: dict[str, str] = {}
    raw: Any
    try:
        if suffix == ".safetensors":
            raw, metadata = _mapped_safetensors(file)
        else:
            raw = _torch_load(file)
    except (UnsafeCheckpointError, OSError):
        raise
    except Exception as exc:  # safetensors/zip/pickle errors of a damaged or truncated file
        raise ValueError(f"cannot read checkpoint {file}: {exc} (is the file complete?)") from exc
    while isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise ValueError(f"{file} does not hold a state dict (found {type(raw).__name__})")
    return _normalize_keys({k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}), metadata


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def _mapped_safetensors(file: Path) -> tuple[Tensors, dict[str, str]]:
    """Every tensor of a safetensors file as a view of its own private memory map (module docstring)."""
    import mmap

    header, start = read_safetensors_header(file)
    metadata = {str(k): str(v) for k, v in (header.pop("__metadata__", None) or {}).items()}
    size = file.stat().st_size
    tensors: Tensors = {}
    with file.open("rb") as f:
        for name, info in header.items():
            dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
            if dtype is None:
                raise ValueError(f"tensor {name!r} has dtype {info.get('dtype')!r}; known: {', '.join(_SAFETENSORS_DTYPES)}")
            begin, end = (start + int(o) for o in info["data_offsets"])
            shape = [int(n) for n in info["shape"]]
            if end > size or end - begin != math.prod(shape) * dtype.itemsize:
                raise ValueError(f"tensor {name!r} runs past the end of the file or has the wrong size")
            if begin == end:
                tensors[name] = torch.empty(shape, dtype=dtype)
                continue
            base = begin - begin % mmap.ALLOCATIONGRANULARITY
            view = mmap.mmap(f.fileno(), end - base, offset=base, access=mmap.ACCESS_COPY)
            flat = torch.frombuffer(view, dtype=torch.uint8, count=end - begin, offset=begin - base)
            tensors[name] = flat.view(dtype).reshape(shape) if (begin - base) % dtype.itemsize == 0 else \
                flat.clone().view(dtype).reshape(shape)
    return tensors, metadata


# ---- configs -----------------------------------------------------------------------------------


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"config folder is incomplete: {path} is missing") from None


def _component_configs(family: Family, metadata: dict[str, str], config_dir: Path | None) -> dict[str, dict[str, Any]]:
    """unet/vae/text_encoder(_2) configs: ``config_dir``, else file metadata, else the bundled folder."""
    names = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family.is_sdxl else [])
    embedded = json.loads(metadata[CONFIG_METADATA_KEY]) if CONFIG_METADATA_KEY in metadata else {}
    folder = config_dir if config_dir is not None else CONFIG_ROOT / family.config_dir
    configs = {}
    for name in names:
        if config_dir is None and name in embedded:
            configs[name] = embedded[name]
        else:
            configs[name] = _json(folder / name / "config.json")
    return configs


def bundled_configs(family: Family) -> dict[str, dict[str, Any]]:
    """The family's bundled unet/vae/text_encoder(_2) configs (dicts for ``from_config``/``CLIPTextConfig``)."""
    return _component_configs(family, {}, None)


def _tokenizers(family: Family) -> tuple[Any, ...]:
    """CLIP tokenizers with the pad token of the family's bundled ``tokenizer*/tokenizer_config.json``."""
    folders = ["tokenizer"] + (["tokenizer_2"] if family.is_sdxl else [])
    pads = [_json(CONFIG_ROOT / family.config_dir / f / "tokenizer_config.json")["pad_token"] for f in folders]
    return tuple(clip_tokenizer(pad) for pad in pads)


def _alphas_cumprod(family: Family) -> torch.Tensor:
    """The family's training noise schedule from its bundled scheduler config (scaled_linear only)."""
    cfg = _json(CONFIG_ROOT / family.config_dir / "scheduler" / "scheduler_config.json")
    if cfg.get("beta_schedule") != "scaled_linear":
        raise ValueError(f"unsupported beta_schedule {cfg.get('beta_schedule')!r} for {family.name}")
    return scaled_linear_alphas_cumprod(cfg["beta_start"], cfg["beta_end"], cfg["num_train_timesteps"])


# ---- building modules from converted state dicts -------------------------------------------------


def _dominant_dtype(sd: Tensors) -> torch.dtype:
    counts: Counter[torch.dtype] = Counter()
    for value in sd.values():
        if value.is_floating_point():
            counts[value.dtype] += value.numel()
    return counts.most_common(1)[0][0] if counts else torch.float32


def _ignorable(key: str) -> bool:
    return key.endswith("position_ids") or key in ("text_projection.weight", "logit_scale")


def _fit_report(what: str, missing: set[str], unexpected: set[str], wrong: list[str]) -> str:
    def few(keys: Any) -> str:
        return ", ".join(sorted(keys)[:4])

    parts = [f"{len(missing)} missing ({few(missing)})" if missing else ""]
    parts.append(f"{len(unexpected)} unexpected ({few(unexpected)})" if unexpected else "")
    parts.append(f"{len(wrong)} with other shapes ({few(wrong)})" if wrong else "")
    return f"the checkpoint's {what} weights do not fit its config: " + "; ".join(p for p in parts if p)


def _empty(factory: Callable[[], Any]) -> Any:
    """``factory()`` with parameters on the meta device (buffers real), to be filled by ``_assign``."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        return factory()


def _assign(what: str, model: Any, sd: Tensors, dtype: torch.dtype | None) -> Any:
    """Assign ``sd`` into the empty ``model`` after checking keys and shapes (no copy unless ``dtype`` differs)."""
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    sd = {k: v for k, v in sd.items() if k in expected or not _ignorable(k)}
    wrong = [k for k in expected.keys() & sd.keys() if tuple(sd[k].shape) != tuple(expected[k])]
    missing, unexpected = expected.keys() - sd.keys(), sd.keys() - expected.keys()
    if missing or unexpected or wrong:
        raise ValueError(_fit_report(what, missing, unexpected, wrong))
    target = dtype or _dominant_dtype(sd)
    sd = {k: v.to(target) if v.is_floating_point() else v for k, v in sd.items()}
    model.load_state_dict(sd, strict=False, assign=True)
    return model.eval().requires_grad_(False)


def _text_encoder(
    config: dict[str, Any], convert: Callable[[Any], Tensors], dtype: torch.dtype | None, what: str,
    with_projection: bool = False,
) -> Any:
    """A ``CLIPTextModel`` (``CLIPTextModelWithProjection`` for SDXL's encoder 2) from ``convert(model)``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(**{k: v for k, v in config.items() if k not in ("architectures", "model_type")})
    model = _empty(lambda: (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg))
    sd = convert(model)
    if not hasattr(model, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    return _assign(what, model, sd, dtype)


def _open_clip_layers(sd: Tensors, prefix: str, layers: int) -> Tensors:
    """Drop OpenCLIP resblocks the config does not hold (SD2 uses 23 of ViT-H's 24 layers)."""
    pattern = re.compile(re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.")
    return {k: v for k, v in sd.items() if not ((m := pattern.match(k)) and int(m[1]) >= layers)}


def _text_encoders(family: Family, sd: Tensors, configs: dict[str, dict[str, Any]], dtype: torch.dtype | None) -> tuple[Any, ...]:
    """SD1: OpenAI CLIP; SD2: OpenCLIP ViT-H as CLIPTextModel; SDXL: CLIP ViT-L + OpenCLIP bigG with projection."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    from retouch.models.ldm_layout import SD2_OPEN_CLIP_PREFIX, SDXL_OPEN_CLIP_PREFIX

    def open_clip(prefix: str, name: str) -> Callable[[Any], Tensors]:
        kept = _open_clip_layers(sd, prefix, int(configs[name]["num_hidden_layers"]))
        return lambda model: convert_open_clip_checkpoint(model, kept, prefix=prefix)

    if family.base == "sd1":
        return (_text_encoder(configs["text_encoder"], lambda _: convert_ldm_clip_checkpoint(sd), dtype, "text encoder"),)
    if family.base == "sd2":
        return (_text_encoder(configs["text_encoder"], open_clip(SD2_OPEN_CLIP_PREFIX, "text_encoder"), dtype, "text encoder"),)
    first = {k: v for k, v in sd.items() if k.startswith("conditioner.embedders.0.")}
    return (
        _text_encoder(configs["text_encoder"], lambda _: convert_ldm_clip_checkpoint(first), dtype, "text encoder 1"),
        _text_encoder(configs["text_encoder_2"], open_clip(SDXL_OPEN_CLIP_PREFIX, "text_encoder_2"), dtype, "text encoder 2", True),
    )


def _build_unet(config: dict[str, Any], sd: Tensors, dtype: torch.dtype | None) -> Any:
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    model = _empty(lambda: UNet2DConditionModel.from_config(config))
    return _assign("UNet", model, convert_ldm_unet_checkpoint(sd, config), dtype)


def _build_vae(config: dict[str, Any], sd: Tensors, dtype: torch.dtype | None) -> Any:
    """An ``AutoencoderKL`` from LDM VAE keys (bare, ``first_stage_model.`` or ``vae.``) or diffusers keys."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    if any(k.startswith("encoder.down_blocks.") for k in sd):
        converted = dict(sd)
    else:
        converted = convert_ldm_vae_checkpoint(sd, config)
    return _assign("VAE", _empty(lambda: AutoencoderKL.from_config(config)), converted, dtype)


# ---- SD2 v-prediction (no structural marker) ----------------------------------------------------


def _yaml_says_v(checkpoint: Path) -> bool:
    """A1111/LDM convention: ``<name>.yaml`` beside the file with ``parameterization: "v"``."""
    yaml = checkpoint.with_suffix(".yaml")
    try:
        text = yaml.read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r"""^\s*parameterization:\s*["']?v["']?\s*$""", text, re.MULTILINE) is not None


def probe_v_prediction(unet: Any) -> bool:
    """A1111's test for SD2 v-prediction (``sd_models_config``): run the UNet once at t = 999.

    Input x = 0.5 everywhere, shape (1, C_in, 8, 8); context 0.5 everywhere, shape (1, 2, width). An
    eps-model returns roughly its (almost pure noise) input there, a v-model roughly its negative
    clean-image estimate: v-prediction when ``mean(out - x) < -1``. Runs on the UNet's device and dtype.
    """
    param = next(unet.parameters())
    x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, dtype=param.dtype, device=param.device)
    context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, dtype=param.dtype, device=param.device)
    with torch.no_grad():
        out = unet(x, torch.tensor([999], device=param.device), encoder_hidden_states=context).sample
    return bool((out.float() - x[:, :4].float()).mean() < -1)


# ---- the three kinds of source -------------------------------------------------------------------


def _load_single_file(path: Path, family: Family | None, config_dir: Path | None, dtype: torch.dtype | None,
                      device: torch.device | None) -> ModelBundle:
    sd, metadata = read_state_dict(path)
    chosen = family or detect.detect_family({k: tuple(v.shape) for k, v in sd.items()})
    probe = family is None and chosen is SD2 and detect.V_PRED_KEY not in sd
    if probe and _yaml_says_v(path):
        chosen, probe = SD2_V, False
    configs = _component_configs(chosen, metadata, config_dir)
    unet = _build_unet(configs["unet"], sd, dtype).to(device)
    if probe and probe_v_prediction(unet):
        chosen = SD2_V
    vae = _build_vae(configs["vae"], sd, dtype).to(device)
    encoders = tuple(e.to(device) for e in _text_encoders(chosen, sd, configs, dtype))
    return ModelBundle(
        family=chosen, unet=unet, vae=vae, text_encoders=encoders, tokenizers=_tokenizers(chosen),
        alphas_cumprod=_alphas_cumprod(chosen), name=path.stem, hash=model_hash(path), path=str(path),
    )


def _load_diffusers_folder(root: Path, family: Family | None, dtype: torch.dtype | None,
                           device: torch.device | None) -> ModelBundle:
    """A diffusers-format folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder*/``), local only."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    chosen = family or detect.detect_family_diffusers(root)
    common: dict[str, Any] = {"local_files_only": True, "low_cpu_mem_usage": True}
    typed = {**common, "torch_dtype": dtype} if dtype is not None else common
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet", **typed)
    vae = AutoencoderKL.from_pretrained(root, subfolder="vae", **typed)
    kinds: list[tuple[str, str, Any]] = [("text_encoder", "tokenizer", CLIPTextModel)]
    if chosen.is_sdxl:
        kinds.append(("text_encoder_2", "tokenizer_2", CLIPTextModelWithProjection))
    encoders, tokenizers = [], list(_tokenizers(chosen))
    for i, (sub, tok, cls) in enumerate(kinds):
        kwargs: dict[str, Any] = {"local_files_only": True, **({"dtype": dtype} if dtype is not None else {})}
        encoders.append(cls.from_pretrained(root, subfolder=sub, **kwargs).eval().to(device))
        if any((root / tok / f).exists() for f in ("tokenizer.json", "vocab.json")):
            tokenizers[i] = CLIPTokenizer.from_pretrained(root / tok, local_files_only=True)
    return ModelBundle(
        family=chosen, unet=unet.eval().to(device), vae=vae.eval().to(device), text_encoders=tuple(encoders),
        tokenizers=tuple(tokenizers), alphas_cumprod=_alphas_cumprod(chosen), name=root.name, hash=None,
        path=str(root),
    )


def _attach_vae(bundle: ModelBundle, path: Path, dtype: torch.dtype | None, device: torch.device | None) -> None:
    """Replace the bundle's VAE with a separate VAE file (A1111's keys: bare or ``first_stage_model.`` LDM keys)."""
    sd, _ = read_state_dict(path)
    sd = {k: v for k, v in sd.items() if not k.startswith(("loss.", "model_ema."))}
    if not any(".conv_in." in k for k in sd):
        raise ValueError(f"{path} is not a VAE file: found {detect.describe_layout({k: tuple(v.shape) for k, v in sd.items()})}")
    config = dict(bundle.vae.config)
    bundle.vae = _build_vae(config, sd, dtype).to(device)
    bundle.vae_name, bundle.vae_hash = path.name, model_hash(path)


def _resolve(path: str | os.PathLike[str]) -> Path:
    demo = demo_path(os.fspath(path))
    if demo is not None:
        if not demo.is_file():
            raise FileNotFoundError(f"the demo model is not installed (expected {demo} for {os.fspath(path)!r})")
        return demo
    source = Path(path).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"no model at {source}")
    if source.is_dir() and not (source / "model_index.json").is_file():
        raise ValueError(f"{source} is a folder without model_index.json; expected a diffusers model folder")
    return source


def load_model(
    path: str | os.PathLike[str],
    vae: str | os.PathLike[str] | None = None,
    family: str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    config_dir: str | os.PathLike[str] | None = None,
) -> ModelBundle:
    """Load a checkpoint for the engine, offline: the ``ModelBundle`` of UNet, VAE, text encoders, tokenizers.

    ``path``: an LDM/A1111 single file (``.safetensors``, ``.ckpt``, ``.pt``, ``.pth``), a diffusers
    folder, ``"demo"`` (the bundled demo model) or ``"demo-inpaint"`` (its 9-channel inpainting variant). ``vae``: a separate VAE file (sets ``vae_name`` and
    ``vae_hash``). ``family``: one of ``families.FAMILIES`` to skip detection (e.g. ``"sd2-v"``).
    ``device``: where the modules go (default: stay on CPU). ``dtype``: the weights' dtype; ``None``
    keeps each component of a single file (and a separate VAE) in the floating dtype most of its stored
    weights have, so nothing is copied; diffusers folders then use the libraries' defaults. ``config_dir``: a diffusers config folder for a non-standard architecture (single files).
    ``name`` is the file stem and ``hash`` A1111's short model hash (first 10 hex of the SHA-256).
    """
    source = _resolve(path)
    chosen = family_by_name(family) if family is not None else None
    where = torch.device(device) if device is not None else None
    if source.is_dir():
        bundle = _load_diffusers_folder(source, chosen, dtype, where)
    else:
        configs = Path(config_dir) if config_dir is not None else None
        bundle = _load_single_file(source, chosen, configs, dtype, where)
    if vae is not None:
        vae_path = Path(vae).expanduser()
        if not vae_path.is_file():
            raise FileNotFoundError(f"no VAE file at {vae_path}")
        _attach_vae(bundle, vae_path, dtype, where)
    return bundle
