"""LoRA and LyCORIS weight deltas as pure torch functions (spec a1111-prompts.md §5.3, A1111 v1.10.1).

One network module of a file is a dict of *parts* (``lora_up.weight``, ``hada_w1_a``, ``alpha``, ...).
``module_delta(parts, weight, multiplier, dyn)`` returns ``(ΔW, Δb)`` with the merged weight
``W + ΔW`` (and bias ``b + Δb``), following A1111's ``calc_updown`` and ``finalize_updown``:

* the raw delta ``D`` of the type (``detect_type``; table of §5.3), computed against the weight as it is
  now (so W-dependent types, IA3, GLoRA and DoRA, see the networks merged before them);
* finalisation, in A1111's order: a ``bias`` part is added to ``D`` (a rare quirk); ``D`` is reshaped to
  the 4-D output shape for convolutions or to ``W``'s shape when the element counts agree; the bias delta
  is multiplied by the multiplier only; ``D <- D * s`` with ``s`` = the ``scale`` part, else
  ``alpha / dim`` for types with a rank, else 1; DoRA (``dora_scale``) renormalises ``W + D`` per input
  column; the result is ``m * D``;
* a 4-input-channel delta on a 9-channel (inpainting) convolution is zero-padded on channels 4..8.

Precision: every part is taken in float32 (float64 when ``W`` is float64) on ``W``'s device. A1111
keeps LoRA factors in its ``devices.dtype`` (fp16 on a GPU), so on a GPU its products round differently;
the formulas are the same. For a plain LoRA (no ``lora_mid``, ``bias`` or ``dora_scale``),
``lora_factors`` folds ``s * m`` into ``lora_up`` before the product instead of scaling the full-size
delta after it (the same value up to float rounding). Kohya OFT (``oft_blocks``) is supported; old
LyCORIS ``oft_diag`` and BOFT (4-D ``oft_blocks``) are refused with a clear error (not implemented).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from retouch.models.networks.errors import NetworkError

__all__ = ["NETWORK_TYPES", "detect_type", "network_rank", "network_scale", "module_delta", "lora_factors", "compute_dtype"]

Parts = Mapping[str, torch.Tensor]
Shape = list[int]

NETWORK_TYPES = ("lora", "loha", "ia3", "lokr", "full", "norm", "glora", "oft")
_GLORA_PARTS = ("a1.weight", "a2.weight", "alpha", "b1.weight", "b2.weight")


def _has(parts: Parts, *names: str) -> bool:
    return all(n in parts for n in names)


def detect_type(parts: Parts) -> str | None:
    """The network type of one module's parts, tested in A1111's order (spec §5.2); None if none fits.

    ``"oft"`` covers kohya's ``oft_blocks`` (supported) and old LyCORIS ``oft_diag`` (refused when merged).
    """
    if _has(parts, "lora_up.weight", "lora_down.weight") or _has(parts, "lora_A.weight", "lora_B.weight"):
        return "lora"
    if _has(parts, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"):
        return "loha"
    if "weight" in parts:
        return "ia3"
    w1 = "lokr_w1" in parts or _has(parts, "lokr_w1_a", "lokr_w1_b")
    w2 = "lokr_w2" in parts or _has(parts, "lokr_w2_a", "lokr_w2_b")
    if w1 and w2:
        return "lokr"
    if "diff" in parts:
        return "full"
    if _has(parts, "w_norm", "b_norm"):
        return "norm"
    if _has(parts, *_GLORA_PARTS):
        return "glora"
    if "oft_blocks" in parts or "oft_diag" in parts:
        return "oft"
    return None


def _lora_parts(parts: Parts) -> tuple[torch.Tensor, torch.Tensor]:
    """(up, down); diffusers/PEFT ``lora_B``/``lora_A`` are A1111's up/down."""
    if _has(parts, "lora_up.weight", "lora_down.weight"):
        return parts["lora_up.weight"], parts["lora_down.weight"]
    return parts["lora_B.weight"], parts["lora_A.weight"]


def network_rank(kind: str, parts: Parts) -> int | None:
    """A1111's ``dim`` of the module (the divisor of ``alpha``), None for types without one."""
    if kind == "lora":
        return int(_lora_parts(parts)[1].shape[0])
    if kind == "loha":
        return int(parts["hada_w1_b"].shape[0])
    if kind == "lokr":
        for name in ("lokr_w2_b", "lokr_w1_b"):
            if name in parts:
                return int(parts[name].shape[0])
    return None


def network_scale(kind: str, parts: Parts) -> float:
    """``s``: the ``scale`` part, else ``alpha / dim`` when both exist, else 1.0 (A1111 ``calc_scale``).

    OFT forces ``s = 1`` (its ``alpha`` is the rotation constraint instead).
    """
    if kind == "oft":
        return 1.0
    if "scale" in parts:
        return float(parts["scale"].item())
    dim = network_rank(kind, parts)
    if dim is not None and "alpha" in parts:
        return float(parts["alpha"].item()) / dim
    return 1.0


def compute_dtype(weight: torch.Tensor) -> torch.dtype:
    """float32, or float64 for a float64 weight: the dtype deltas are computed and added in."""
    return torch.promote_types(weight.dtype, torch.float32)


def _conventional(up: torch.Tensor, down: torch.Tensor, shape: Shape, dyn: int | None = None) -> torch.Tensor:
    up = up.reshape(up.shape[0], -1)
    down = down.reshape(down.shape[0], -1)
    if dyn is not None:
        up, down = up[:, :dyn], down[:dyn, :]
    return (up @ down).reshape(shape)


def _cp(t: torch.Tensor, wa: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """Tucker factor ``F[a,b,k,l] = sum_ij t[i,j,k,l] wa[i,a] wb[j,b]`` (LyCORIS ``make_weight_cp``)."""
    return torch.einsum("ijkl,ia,jb->abkl", t, wa, wb)


def _lora(parts: Parts, weight: torch.Tensor, dyn: int | None) -> tuple[torch.Tensor, Shape]:
    up, down = _lora_parts(parts)
    mid = parts.get("lora_mid.weight")
    if weight.ndim == 2:
        if mid is not None:
            raise NetworkError("a LoRA with lora_mid (CP decomposition) can only target a convolution")
        up, down = up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1)
    elif weight.ndim == 4:
        down = down.reshape(down.shape[0], -1, 1, 1) if down.ndim == 2 else down
    else:
        raise NetworkError(f"LoRA can only target Linear or Conv2d weights; this weight has shape {tuple(weight.shape)}")
    shape = [int(up.shape[0]), int(down.shape[1])]
    if mid is not None:
        shape += list(mid.shape[2:])
        flat_up, flat_down = up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1)
        return torch.einsum("nmkl,in,mj->ijkl", mid, flat_up, flat_down), shape
    if down.ndim == 4:
        shape += list(down.shape[2:])
    return _conventional(up, down, shape, dyn), shape


def _loha(parts: Parts) -> tuple[torch.Tensor, Shape]:
    w1a, w1b, w2a, w2b = (parts[k] for k in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"))
    t1, t2 = parts.get("hada_t1"), parts.get("hada_t2")
    if t1 is not None:
        shape = [int(w1a.shape[1]), int(w1b.shape[1]), *t1.shape[2:]]
        first = _cp(t1, w1a, w1b)
    else:
        shape = [int(w1a.shape[0]), int(w1b.shape[1]), *(w1b.shape[2:] if w1b.ndim == 4 else ())]
        first = _conventional(w1a, w1b, shape)
    second = _cp(t2, w2a, w2b) if t2 is not None else _conventional(w2a, w2b, shape)
    return first * second, shape


def _lokr(parts: Parts, weight: torch.Tensor) -> tuple[torch.Tensor, Shape]:
    w1 = parts["lokr_w1"] if "lokr_w1" in parts else parts["lokr_w1_a"] @ parts["lokr_w1_b"]
    if "lokr_w2" in parts:
        w2 = parts["lokr_w2"]
    elif "lokr_t2" in parts:
        w2 = _cp(parts["lokr_t2"], parts["lokr_w2_a"], parts["lokr_w2_b"])
    else:
        w2 = parts["lokr_w2_a"] @ parts["lokr_w2_b"]
    shape = list(weight.shape) if weight.ndim == 4 else [w1.shape[0] * w2.shape[0], w1.shape[1] * w2.shape[1]]
    if w2.ndim == 4:
        w1 = w1[:, :, None, None]
    return torch.kron(w1, w2.contiguous()).reshape(shape), shape


def _ia3(parts: Parts, weight: torch.Tensor) -> tuple[torch.Tensor, Shape]:
    if "on_input" not in parts:
        raise NetworkError("an IA3 module needs an 'on_input' part (which side its 'weight' scales)")
    w = parts["weight"]
    shape = [int(w.shape[0]), int(weight.shape[1])]
    if bool(parts["on_input"].item()):
        shape.reverse()
    else:
        w = w.reshape(-1, 1)
    return weight * w, shape


def _oft(parts: Parts, weight: torch.Tensor) -> tuple[torch.Tensor, Shape]:
    """Kohya OFT: Cayley rotations ``R_k = (I+Q)(I-Q)^-1``, ``Q = B - B^T`` (norm clamped to ``alpha * out``),
    applied to the ``k``-th block of output rows as ``R_k^T W_k``; ``D = rescale * W' - W``."""
    if "oft_blocks" not in parts or parts["oft_blocks"].ndim != 3:
        raise NetworkError("only kohya OFT (3-D oft_blocks) is supported; old LyCORIS oft_diag and BOFT are not")
    if "alpha" not in parts:
        raise NetworkError("a kohya OFT module needs an 'alpha' part (the constraint on its rotations)")
    blocks = parts["oft_blocks"]
    count, size = int(blocks.shape[0]), int(blocks.shape[1])
    if count * size != weight.shape[0] or blocks.shape[2] != size:
        raise RuntimeError(f"oft_blocks {tuple(blocks.shape)} do not tile {weight.shape[0]} output rows")
    q = blocks - blocks.transpose(1, 2)
    constraint = float(parts["alpha"].item()) * weight.shape[0]
    if constraint != 0:
        norm = q.norm()
        q = q * ((torch.clamp(norm, max=constraint) + 1e-8) / (norm + 1e-8))
    eye = torch.eye(size, dtype=q.dtype, device=q.device)
    rotation = (eye + q) @ torch.linalg.inv((eye - q).float()).to(q.dtype)
    rows = weight.reshape(count, size, *weight.shape[1:])
    merged = torch.einsum("knm,kn...->km...", rotation, rows).reshape(weight.shape)
    if "rescale" in parts:
        merged = parts["rescale"] * merged
    return merged - weight, list(weight.shape)


def _raw(kind: str, parts: Parts, weight: torch.Tensor, dyn: int | None) -> tuple[torch.Tensor, Shape, torch.Tensor | None]:
    """(D, A1111's output_shape, bias delta before the multiplier)."""
    if kind == "lora":
        return (*_lora(parts, weight, dyn), None)
    if kind == "loha":
        return (*_loha(parts), None)
    if kind == "lokr":
        return (*_lokr(parts, weight), None)
    if kind == "ia3":
        return (*_ia3(parts, weight), None)
    if kind == "full":
        return parts["diff"], list(parts["diff"].shape), parts.get("diff_b")
    if kind == "norm":
        return parts["w_norm"], list(parts["w_norm"].shape), parts.get("b_norm")
    if kind == "oft":
        return (*_oft(parts, weight), None)
    if kind == "glora":
        a1, b1, a2, b2 = (parts[k] for k in ("a1.weight", "b1.weight", "a2.weight", "b2.weight"))
        return b2 @ b1 + (weight @ a2) @ a1, [int(a1.shape[0]), int(b1.shape[1])], None
    raise NetworkError(f"network type {kind!r} is not supported; supported types: {', '.join(NETWORK_TYPES)}")


def _dora(delta: torch.Tensor, weight: torch.Tensor, dora_scale: torch.Tensor) -> torch.Tensor:
    """DoRA: ``dora_scale * M / ||M||_col - W`` with ``M = W + D``, one L2 norm per input column."""
    merged = weight + delta
    columns = merged.shape[1]
    norm = merged.transpose(0, 1).reshape(columns, -1).norm(dim=1, keepdim=True)
    norm = norm.reshape(columns, *[1] * (weight.ndim - 1)).transpose(0, 1)
    return merged * (dora_scale / norm) - weight


def lora_factors(
    parts: Parts, weight: torch.Tensor, multiplier: float, dyn: int | None = None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(U, V)`` with ``ΔW = (U @ V).reshape(weight.shape)`` for a plain LoRA that fits ``weight``, else None.

    Plain: LoRA without ``lora_mid``, ``bias`` or ``dora_scale``. ``s * m`` is folded into ``U`` (the
    same value as A1111's ``(up @ down) * s * m`` up to float rounding, without two full-size passes),
    so a caller can merge with one in-place ``addmm_``. Not for a 9-channel convolution (padded path).
    """
    if detect_type(parts) != "lora" or any(k in parts for k in ("bias", "dora_scale", "lora_mid.weight")):
        return None
    if weight.ndim not in (2, 4):
        return None
    up, down = _lora_parts(parts)
    dtype = compute_dtype(weight)
    up = up.to(device=weight.device, dtype=dtype).reshape(up.shape[0], -1)
    down = down.to(device=weight.device, dtype=dtype).reshape(down.shape[0], -1)
    if up.shape[0] != weight.shape[0] or down.shape[1] != weight[0].numel() or up.shape[1] != down.shape[0]:
        return None  # let module_delta build A1111's shapes (and the caller report the misfit)
    if dyn is not None:
        up, down = up[:, :dyn], down[:dyn, :]
    return up * (network_scale("lora", parts) * multiplier), down


def module_delta(
    parts: Parts, weight: torch.Tensor, multiplier: float, dyn: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ΔW, Δb) of one network module for the current ``weight`` (A1111 ``calc_updown``, §5.3-§5.4).

    ``parts``: the module's tensors from the file; ``multiplier``: the te or unet multiplier;
    ``dyn``: ``dyn_dim`` (LoRA only: the first ``dyn`` ranks are used, ``s`` keeps the full rank).
    Both results are in ``compute_dtype(weight)`` on ``weight``'s device; ΔW has ``weight``'s shape
    when the network fits (the caller checks). Raises NetworkError for unknown or unsupported types.
    """
    kind = detect_type(parts)
    if kind is None:
        raise NetworkError(f"no network type accepts the parts {', '.join(sorted(parts))}")
    factors = lora_factors(parts, weight, multiplier, dyn)
    if factors is not None:
        return (factors[0] @ factors[1]).reshape(weight.shape), None
    dtype = compute_dtype(weight)
    p = {k: v.to(device=weight.device, dtype=dtype) for k, v in parts.items()}
    w = weight.detach().to(dtype)
    delta, shape, bias_delta = _raw(kind, p, w, dyn)
    if "bias" in p:
        delta = (delta.reshape(p["bias"].shape) + p["bias"]).reshape(shape)
    if len(shape) == 4:
        delta = delta.reshape(shape)
    if delta.numel() == w.numel():
        delta = delta.reshape(w.shape)
    if bias_delta is not None:
        bias_delta = bias_delta * multiplier
    delta = delta * network_scale(kind, parts)  # from the file's own tensors: alpha keeps its precision
    if "dora_scale" in p:
        delta = _dora(delta, w, p["dora_scale"])
    return _fit(delta * multiplier, w), bias_delta


def _fit(delta: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A 4-input-channel delta on a 9-channel (inpainting) convolution, zero-padded on channels 4..8."""
    if weight.ndim == 4 and weight.shape[1] == 9 and delta.ndim == 4 and delta.shape[1] == 4:
        return torch.nn.functional.pad(delta, (0, 0, 0, 0, 0, 5))
    return delta
