"""Turns the benchmark's raw measurements into ratios, limit fractions, the issue #7 checks and markdown."""

from __future__ import annotations

import math
import statistics
from typing import Any

#: (key in a run's record, column title) for the per-run and ratio tables.
METRICS = (
    ("unet_step_median_s", "UNet step s"),
    ("vae_encode_s", "VAE encode s"),
    ("vae_decode_s", "VAE decode s"),
    ("e2e_s", "end to end s"),
    ("cpu_s", "CPU s"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("run_extra_mib", "run extra MiB"),
)


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from repeated runs of the same (implementation, scenario): medians of each metric."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[-1].get("error", "no run"), "repeats": len(runs)}
    for r in ok:
        # ru_maxrss before the first VmHWM reset covers the build; the tracked phases cover the rest (a reset
        # also lowers what ru_maxrss reports later, so the end-of-process value alone would miss the build).
        peaks = [
            r["rss_built"]["ru_maxrss_mib"],
            r["rss_end"]["ru_maxrss_mib"],
            r.get("run_peak_mib", math.nan),
        ]
        r["peak_rss_mib"] = max(p for p in peaks if not math.isnan(p))
        built = r["rss_built"].get("vmrss_mib", math.nan)
        r["run_extra_mib"] = r.get("run_peak_mib", math.nan) - built
        r["phase_extra_mib"] = {k: v - built for k, v in r.get("peak_mib", {}).items()}
    rec = dict(ok[-1])
    for key, _ in METRICS:
        rec[key] = statistics.median(r[key] for r in ok)
    rec["repeats"] = len(ok)
    return rec


def ratio(a: float, b: float) -> float:
    """a / b, NaN when either is missing or b is zero."""
    if (
        not (isinstance(a, int | float) and isinstance(b, int | float))
        or b == 0
        or math.isnan(a)
        or math.isnan(b)
    ):
        return math.nan
    return float(a) / float(b)


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios Retouch/reference per scenario, UNet limit fractions and the issue #7 "done when" checks."""
    peaks = results["peaks"]
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    limits: dict[str, dict[str, float]] = {}
    for name, by_impl in results["runs"].items():
        r = by_impl.get("retouch")
        if r is None or "error" in r:
            continue
        for ref in ("diffusers", "diffusers-bf16"):
            if ref in by_impl and "error" not in by_impl[ref]:
                ratios.setdefault(name, {})[ref] = {k: ratio(r[k], by_impl[ref][k]) for k, _ in METRICS}
        if r.get("unet_flops_per_call") and peaks:  # no CPU peaks on a GPU run (bench/devices.py)
            flops, step = r["unet_flops_per_call"], r["unet_step_median_s"]
            own = "fp32" if r["dtype"] == "float32" else "bf16"
            limits[name] = {"gflop_per_call": flops / 1e9, "measured_s": step, "dtype": r["dtype"]}
            for which in ("bf16", "fp32"):
                limit = flops / (peaks[f"{which}_matmul_gflops"] * 1e9)
                limits[name][f"{which}_limit_s"] = limit
                limits[name][f"x_{which}_limit"] = step / limit
            limits[name]["x_limit"] = limits[name][f"x_{own}_limit"]
    results["ratios"], results["limits"] = ratios, limits
    results["checks"] = checks(results)
    return results


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return math.nan
        d = d[k]
    return d


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #7's acceptance figures, each with its measured value and whether it passes."""
    runs = results["runs"]
    speedup = 1.0 / _get(results["ratios"], "img2img", "diffusers", "e2e_s")
    x_limit = _get(results["limits"], "img2img", "x_limit")
    masked = ratio(
        _get(runs, "inpaint-only-masked", "retouch", "e2e_s"),
        _get(runs, "inpaint-whole-big", "retouch", "e2e_s"),
    )
    rss_ratio = max(
        (_get(results["ratios"], n, "diffusers", "peak_rss_mib") for n in results["ratios"]), default=math.nan
    )
    psnr = _get(results, "quality", "psnr_db")
    rows = [
        ("img2img end to end, diffusers fp32 / Retouch", speedup, ">= 2.5", speedup >= 2.5),
        ("img2img UNet step / matmul limit (of the dtype run)", x_limit, "<= 1.3", x_limit <= 1.3),
        ("only-masked / whole-picture time (Retouch, big image)", masked, "<= 0.333", masked <= 1 / 3),
        ("peak RSS Retouch / diffusers fp32 (worst scenario)", rss_ratio, "<= 1.0", rss_ratio <= 1.0),
        (f"Retouch {_get(results, 'quality', 'low_dtype')} vs fp32 output PSNR dB", psnr, ">= 30", psnr >= 30),
    ]
    return [
        {"check": c, "value": v, "target": t, "pass": None if math.isnan(v) else bool(p)}
        for c, v, t, p in rows
    ]


_PASS = {True: "yes", False: "no", None: "not measured"}


def _f(x: Any, digits: int = 2) -> str:
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def markdown(results: dict[str, Any]) -> str:
    """The report: machine, peaks, settings, per-run table, ratios, limits, quality, checks."""
    m, p = results["machine"], results["peaks"]
    out = [
        f"# Retouch vs diffusers, {results['mode']} benchmark, {results['date']}",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores ({', '.join(m.get('flags', []))}); "
        f"torch {m['torch']} ({m['torch_threads']} threads), diffusers {m['diffusers']}, "
        f"transformers {m['transformers']}, Python {m['python']}.",
        f"Models: {results['models']}. Weights fingerprint per family: "
        + ", ".join(f"{k} {v}" for k, v in results["fingerprints"].items())
        + ".",
        _peaks_line(p, m),
        f"Fork-server baseline child RSS: {_f(_get(results, 'baseline', 'rss', 'ru_maxrss_mib'), 0)} MiB "
        "(included in every peak RSS below).",
        "",
        "## Settings (equal UNet work)",
        "",
        "| scenario | image | runs at | batch | strength | Retouch steps (A1111: int(d·S)+1) | "
        "diffusers steps (int(S·d)) | UNet evals | implementations |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for sc in results["scenarios"]:
        out.append(
            f"| {sc['title']} | {sc['image']}² | {sc['processing']}² | {sc['batch']} | {sc['strength']} | "
            f"{sc['retouch_steps']} | {sc['diffusers_steps']} | {sc['evals']} | {', '.join(sc['impls'])} |"
        )
    out += _run_table(results) + _ratio_table(results) + _memory_table(results) + _limit_table(results)
    out += _tail(results)
    return "\n".join(out) + "\n"


def _run_table(results: dict[str, Any]) -> list[str]:
    head = " | ".join(t for _, t in METRICS)
    out = [
        "",
        "## Measurements (median over repeats)",
        "",
        f"| scenario | implementation | dtype | UNet calls | {head} | notes |",
        "|---|---|---|---|" + "---|" * len(METRICS) + "---|",
    ]
    for name, by_impl in results["runs"].items():
        for impl, r in by_impl.items():
            if "error" in r:
                out.append(
                    f"| {name} | {impl} | | | "
                    + " | ".join("-" for _ in METRICS)
                    + f" | error: {r['error']} |"
                )
                continue
            notes, dtype = list(r.get("notes", [])), r.get("dtype", "")
            if r.get("load_avg"):
                notes.append("load {:.1f}→{:.1f}".format(*r["load_avg"]))
            vals = " | ".join(_f(r[k], 0 if "mib" in k else 3) for k, _ in METRICS)
            calls = f"{r['unet_calls']} (enc {r['vae_encode_calls']}, dec {r['vae_decode_calls']})"
            out.append(f"| {name} | {impl} | {dtype} | {calls} | {vals} | {'; '.join(notes)} |")
    return out


def _ratio_table(results: dict[str, Any]) -> list[str]:
    head = " | ".join(t.removesuffix(" s").removesuffix(" MiB") for _, t in METRICS)
    out = [
        "",
        "## Ratio Retouch / reference (below 1 means Retouch is faster or smaller)",
        "",
        f"| scenario | reference | {head} |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for name, by_ref in results["ratios"].items():
        for ref, vals in by_ref.items():
            out.append(f"| {name} | {ref} | " + " | ".join(_f(vals[k], 3) for k, _ in METRICS) + " |")
    return out


def _memory_table(results: dict[str, Any]) -> list[str]:
    out = [
        "",
        "## Memory beyond the built fp32 modules, MiB (peak RSS during each phase minus RSS after the build)",
        "",
        "| scenario | implementation | built | setup + run | during UNet | during VAE encode | "
        "during VAE decode |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_impl in results["runs"].items():
        for impl, r in by_impl.items():
            if "error" in r:
                continue
            ph = r.get("phase_extra_mib", {})
            out.append(
                f"| {name} | {impl} | {_f(r['rss_built'].get('vmrss_mib', math.nan), 0)} | "
                f"{_f(r['run_extra_mib'], 0)} | {_f(ph.get('unet', math.nan), 0)} | "
                f"{_f(ph.get('vae_encode', math.nan), 0)} | {_f(ph.get('vae_decode', math.nan), 0)} |"
            )
    return out


def _peaks_line(p: dict[str, Any], m: dict[str, Any]) -> str:
    if not p:
        return "Peaks: not measured (a GPU run: the CPU matmul/conv peaks and the limit table do not apply)."
    return (
        f"Peaks (matmul n = {p['matmul_n']}, {p['conv_c']}-channel 3x3 conv on {p['conv_hw']}², batch 2): "
        f"bf16 matmul {p['bf16_matmul_gflops']:.1f} GFLOP/s, fp32 matmul {p['fp32_matmul_gflops']:.1f}, "
        f"bf16 conv {p['bf16_conv_gflops']:.1f}, fp32 conv {p['fp32_conv_gflops']:.1f}; "
        f"native bf16 (oneDNN): {m.get('mkldnn_bf16')}."
    )


def _limit_table(results: dict[str, Any]) -> list[str]:
    p = results["peaks"]
    if not p:
        return []
    out = [
        "",
        "## Retouch UNet step against the matmul limit (UNet FLOPs / matmul peak)",
        "",
        f"bf16 peak {p['bf16_matmul_gflops']:.1f} GFLOP/s, fp32 peak {p['fp32_matmul_gflops']:.1f} GFLOP/s. "
        "× limit = measured step / limit; the issue's target is ≤ 1.3 against the peak of the dtype run.",
        "",
        "| scenario | Retouch dtype | GFLOP per UNet call | measured s | bf16 limit s | × bf16 limit | "
        "fp32 limit s | × fp32 limit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in results["limits"].items():
        out.append(
            f"| {name} | {v['dtype']} | {v['gflop_per_call']:.1f} | {v['measured_s']:.3f} | "
            f"{v['bf16_limit_s']:.3f} | {v['x_bf16_limit']:.2f} | {v['fp32_limit_s']:.3f} | "
            f"{v['x_fp32_limit']:.2f} |"
        )
    return out


def _tail(results: dict[str, Any]) -> list[str]:
    q = results.get("quality", {})
    out = ["", "## Quality", ""]
    if not q:
        out.append("Skipped (--no-quality).")
    elif "error" in q:
        out.append(f"Retouch low precision vs fp32: error: {q['error']}")
    elif q:
        out.append(
            f"Retouch {q['low_dtype']} vs fp32 output, img2img {q['size']}², {q['steps']} steps at strength "
            f"{q['strength']}, model {q['model']}: PSNR {_f(q['psnr_db'])} dB. {q.get('note', '')}"
        )
    out += ["", "## Issue #7 checks", "", "| check | value | target | pass |", "|---|---|---|---|"]
    for c in results["checks"]:
        out.append(f"| {c['check']} | {_f(c['value'], 3)} | {c['target']} | {_PASS[c['pass']]} |")
    out += ["", *(f"- {n}" for n in results.get("notes", []))]
    return out
