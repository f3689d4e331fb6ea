"""The OpenVINO CPU backend (``retouch[openvino]``): the UNet and the VAE as compiled OpenVINO models.

The loaded diffusers modules are converted with ``openvino.convert_model`` (its PyTorch frontend
traces them; it needs no torchvision), saved as OpenVINO IR in a cache folder and compiled for the
CPU. The torch modules stay as they are, in fp32: the network patcher merges LoRA into them, and the
NaN fallback of the VAE decode runs them.

* **One graph for every size.** Inputs have dynamic batch, height, width and text length. The UNet is
  traced on a latent whose sides are *not* multiples of its upsampling factor, so the traced graph
  carries the explicit ``upsample_size`` path of diffusers' ``forward``, which is correct for every
  size (a graph traced on an aligned size fails on an unaligned one). The example is tiny, so the
  trace costs little memory.
* **Cache key.** sha256 of: the part (unet, vae-encoder, vae-decoder), the checkpoint hash (``Model
  hash``) and VAE hash, the module's config, the LoRA networks merged into the UNet now (each file's
  addnet hash with its ``unet`` multiplier and ``dyn``), the OpenVINO, diffusers and torch versions and
  :data:`FORMAT` (not the precision: fp32 and bf16 compile the same fp32 IR). A bundle without a checkpoint hash adds a digest of the weights as they are merged
  now (computed once per network state).
  LoRA is supported: a new LoRA set converts once (as long as a first conversion) and is cached too.
* **Bounded.** At most ``keep`` entries stay on disk (the least recently used go); in memory, one
  compiled model per part (the one of the current LoRA set).
* **Precision.** ``INFERENCE_PRECISION_HINT`` is ``f32`` for fp32 and ``bf16`` for bf16 (OpenVINO's
  CPU plugin runs bf16 natively where the CPU has AVX-512 BF16 or AMX). The IR is saved uncompressed.

Default cache folder: ``$RETOUCH_CACHE_DIR/openvino``, else ``$XDG_CACHE_HOME/retouch/openvino``,
else ``~/.cache/retouch/openvino`` (:func:`default_cache_dir`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from retouch.params import ParamError

__all__ = ["BACKENDS", "FORMAT", "OpenVINOBackend", "check_backend", "default_cache_dir", "cache_key",
           "import_openvino", "OV_PRECISIONS"]

BACKENDS = ("torch", "openvino")
FORMAT = 1  # bump when the traced wrappers below change what a cached IR computes
OV_PRECISIONS = {torch.float32: "f32", torch.bfloat16: "bf16"}
INSTALL_HINT = "pip install 'retouch[openvino]'"


def check_backend(backend: object) -> str:
    """``backend`` when it is one of :data:`BACKENDS`, else a ParamError listing them."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ParamError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    return backend


def import_openvino() -> Any:
    """The ``openvino`` module, or a ParamError saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise ParamError(f"backend openvino needs the OpenVINO runtime, which is not installed ({exc}); "
                         f"install it with: {INSTALL_HINT}") from None
    return openvino


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where converted models go: ``$RETOUCH_CACHE_DIR/openvino``, ``$XDG_CACHE_HOME/retouch/openvino``
    or ``~/.cache/retouch/openvino`` (``env``: the environment to read, default ``os.environ``)."""
    env = os.environ if env is None else env
    if env.get("RETOUCH_CACHE_DIR"):
        return Path(env["RETOUCH_CACHE_DIR"]) / "openvino"
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "retouch" / "openvino"


def cache_key(parts: Mapping[str, Any]) -> str:
    """The hex sha256 of ``parts`` as canonical JSON (sorted keys; values JSON-able or ``str()``-ed)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 over a module's parameter and buffer names, shapes, dtypes and bytes (for unhashed bundles)."""
    h = hashlib.sha256()
    for name, tensor in (*module.named_parameters(), *module.named_buffers()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class _UNetGraph(torch.nn.Module):
    """``unet(x, t, context[, added]).sample`` with positional tensor inputs, for tracing."""

    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: Tensor, t: Tensor, context: Tensor, text_embeds: Tensor | None = None,
                time_ids: Tensor | None = None) -> Tensor:
        kwargs = {} if text_embeds is None else {"added_cond_kwargs": {"text_embeds": text_embeds, "time_ids": time_ids}}
        return self.unet(x, t, encoder_hidden_states=context, return_dict=False, **kwargs)[0]


class _VAEEncoder(torch.nn.Module):
    """The VAE posterior's mean and std, as diffusers' ``DiagonalGaussianDistribution`` computes them."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        dist = self.vae.encode(x).latent_dist
        return dist.mean, dist.std


class _VAEDecoder(torch.nn.Module):
    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: Tensor) -> Tensor:
        return self.vae.decode(z).sample


@dataclass
class _Compiled:
    key: str
    model: Any  # openvino.CompiledModel


class OpenVINOBackend:
    """Compiled OpenVINO UNet and VAE of one bundle on the CPU, converted once per key and cached on disk.

    ``dtype``: float32 or bfloat16 (the inference precision). ``threads``: OpenVINO's CPU threads
    (``None``: torch's current count, so ``--threads`` governs both). Counters: ``conversions`` (graphs
    converted here), ``disk_hits`` (graphs read from the cache folder), ``convert_s`` (seconds spent
    converting and saving).
    """

    def __init__(self, model: Any, dtype: torch.dtype, *, cache_dir: str | os.PathLike[str] | None = None,
                 keep: int = 4, threads: int | None = None) -> None:
        if dtype not in OV_PRECISIONS:
            raise ParamError(f"backend openvino runs fp32 or bf16; got {str(dtype).removeprefix('torch.')}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 3:
            raise ParamError(f"openvino cache keep must be a whole number >= 3 (UNet + VAE encoder + decoder); got {keep!r}")
        self._ov = import_openvino()
        self.model = model
        self.hint = OV_PRECISIONS[dtype]
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.keep = keep
        self.threads = threads
        self._core = self._ov.Core()
        self._compiled: dict[str, _Compiled] = {}
        self._unet_memo: tuple[tuple[Any, ...], str] | None = None
        self._vae_memo: dict[str, str] = {}
        self.conversions = 0
        self.disk_hits = 0
        self.convert_s = 0.0

    # -- calls ------------------------------------------------------------------------------------

    def unet(self, x: Tensor, t: Tensor, context: Tensor, added: dict[str, Tensor] | None) -> Tensor:
        """The UNet's output (float32 on the CPU) for inputs as ``Runtime.unet_fn`` prepares them."""
        inputs = [x, t, context] if added is None else [x, t, context, added["text_embeds"], added["time_ids"]]
        compiled = self._get("unet", self._unet_key(), lambda: self._unet_example(added is not None))
        return self._infer(compiled, inputs)[0]

    def vae_encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, std) of the VAE posterior of ``x`` (1, 3, H, W) in [-1, 1]."""
        out = self._infer(self._get("vae-encoder", self._vae_key("vae-encoder"), self._encoder_example), [x])
        return out[0], out[1]

    def vae_decode(self, z: Tensor) -> Tensor:
        """Decoded pixels in about [-1, 1] for unscaled latents ``z`` (B, 4, h, w)."""
        return self._infer(self._get("vae-decoder", self._vae_key("vae-decoder"), self._decoder_example), [z])[0]

    def _infer(self, compiled: Any, inputs: list[Tensor]) -> list[Tensor]:
        arrays = [i.detach().to("cpu", torch.float32).contiguous().numpy() for i in inputs]
        result = compiled.create_infer_request().infer(arrays, share_inputs=True)
        return [torch.from_numpy(result[out].copy()) for out in compiled.outputs]

    # -- keys ---------------------------------------------------------------------------------------

    def _base(self) -> dict[str, Any]:
        import diffusers

        return {"format": FORMAT, "openvino": self._ov.__version__, "torch": torch.__version__,
                "diffusers": diffusers.__version__, "model": self.model.hash}

    def _unet_key(self) -> str:
        """Memoised per merged-network state (the tuple is held, so the networks' identities stay valid)."""
        active = tuple(self.model.network_patcher().active)
        if self._unet_memo is not None and self._unet_memo[0] == active:
            return self._unet_memo[1]
        networks = [(_network_hash(a.network), a.unet, a.dyn) for a in active if a.unet != 0]
        weights = None if self.model.hash else weights_digest(self.model.unet)  # the weights as merged now
        key = cache_key({**self._base(), "part": "unet", "class": type(self.model.unet).__name__,
                         "config": dict(self.model.unet.config),
                         "networks": networks, "weights": weights})
        self._unet_memo = (active, key)
        return key

    def _vae_key(self, part: str) -> str:
        if part not in self._vae_memo:
            weights = None if self.model.hash or self.model.vae_hash else weights_digest(self.model.vae)
            self._vae_memo[part] = cache_key({**self._base(), "part": part, "vae": self.model.vae_hash,
                                              "config": dict(self.model.vae.config), "weights": weights})
        return self._vae_memo[part]

    # -- conversion and cache ---------------------------------------------------------------------

    def _get(self, part: str, key: str, example: Any) -> Any:
        held = self._compiled.get(part)
        if held is not None and held.key == key:
            return held.model
        self._compiled.pop(part, None)  # one per part in memory: free the old one before building
        entry = self.cache_dir / key
        xml = entry / "model.xml"
        if xml.is_file():
            self.disk_hits += 1
            os.utime(entry)
        else:
            self._convert(part, example(), entry)
        compiled = self._core.compile_model(self._core.read_model(str(xml)), "CPU", self._config())
        self._compiled[part] = _Compiled(key, compiled)
        return compiled

    def _config(self) -> dict[str, Any]:
        threads = torch.get_num_threads() if self.threads is None else self.threads
        return {"INFERENCE_PRECISION_HINT": self.hint, "INFERENCE_NUM_THREADS": int(threads)}

    def _convert(self, part: str, example: tuple[torch.nn.Module, tuple[Tensor, ...]], entry: Path) -> None:
        """Trace, convert and save one part as IR into ``entry`` (written to a temporary folder, then renamed)."""
        module, inputs = example
        start = time.perf_counter()
        tmp = self.cache_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # diffusers' shape checks become constants in the trace; the graph is checked at other
                # sizes in tests/test_ov_backend.py, so the tracer's warnings only alarm users
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                converted = self._ov.convert_model(module, example_input=inputs)
            self._ov.save_model(converted, str(tmp / "model.xml"), compress_to_fp16=False)
            del converted
            (tmp / "part.txt").write_text(part + "\n")
            try:
                tmp.rename(entry)
            except OSError:  # another process wrote the same entry meanwhile: keep theirs
                if not (entry / "model.xml").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.conversions += 1
        self.convert_s += time.perf_counter() - start
        self._prune()

    def _prune(self) -> None:
        """Keep the ``keep`` most recently used entries."""
        entries = sorted((p for p in self.cache_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)

    def cache_bytes(self) -> int:
        """Bytes of every entry in the cache folder."""
        if not self.cache_dir.is_dir():
            return 0
        return sum(f.stat().st_size for f in self.cache_dir.rglob("*") if f.is_file())

    # -- trace examples (small: tracing cost and memory do not grow with the job's size) --------------

    def _unet_example(self, sdxl: bool) -> tuple[torch.nn.Module, tuple[Tensor, ...]]:
        unet = self.model.unet
        cfg = unet.config
        side = 2**unet.num_upsamplers + 1  # not a multiple of the upsampling factor (module docstring)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, cfg.in_channels, side, side, generator=gen)
        t = torch.full((2,), 500.0)
        context = torch.randn(2, 77, cfg.cross_attention_dim, generator=gen)
        inputs: tuple[Tensor, ...] = (x, t, context)
        if sdxl:
            text_embeds = torch.randn(2, cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim,
                                      generator=gen)
            inputs += (text_embeds, torch.tensor([[side * 8.0, side * 8.0, 0, 0, side * 8.0, side * 8.0]] * 2))
        return _UNetGraph(unet), inputs

    def _encoder_example(self) -> tuple[torch.nn.Module, tuple[Tensor, ...]]:
        side = 8 * 2 ** (len(self.model.vae.config.block_out_channels) - 1)
        return _VAEEncoder(self.model.vae), (torch.zeros(1, 3, side, side),)

    def _decoder_example(self) -> tuple[torch.nn.Module, tuple[Tensor, ...]]:
        channels = self.model.vae.config.latent_channels
        return _VAEDecoder(self.model.vae), (torch.zeros(1, channels, 8, 8),)


def _network_hash(network: Any) -> str:
    """A LoRA file's addnet hash (content), or a ParamError when it has no file to hash."""
    if network.path is None:
        raise ParamError(f"backend openvino: network {network.name!r} has no file, so its converted UNet "
                         "cannot be keyed; use backend torch for in-memory networks")
    from retouch.models.hashing import addnet_hash

    return addnet_hash(network.path)
