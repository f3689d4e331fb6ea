"""Peak memory and time of loading an SD1.5-sized checkpoint (slow: writes a 2-4 GB file).

Run with ``pytest -m slow tests/models/test_load_memory.py -s``. A separate process imports Retouch,
loads the file with ``load_model`` and reports (from ``/proc/self/status`` and ``ru_maxrss``):
resident memory after the imports, peak during ``load_model``, and peak after every weight has been
read once (what the first generation does, since safetensors weights are memory-mapped and only read
when used). Peaks are ``VmHWM``: ``ru_maxrss`` survives ``exec`` on Linux and would report the forking
test process's peak. The target is peak RSS <= 1.3x the file's size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from retouch.models.ldm_layout import to_ldm_state_dict

from .helpers import meta_bundle

MEASURE = textwrap.dedent(
    """
    import json, sys, time
    def rss():  # peak resident set of this process image (VmHWM; ru_maxrss would carry the forking parent's)
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) * 1024
    import torch
    from retouch.models.loading import load_model
    imported = rss()
    start = time.perf_counter()
    bundle = load_model(sys.argv[1])
    seconds = time.perf_counter() - start
    loaded = rss()
    start = time.perf_counter()
    again = load_model(sys.argv[1])  # hash now cached
    seconds_cached = time.perf_counter() - start
    del again
    total = 0.0
    for module in (bundle.unet, bundle.vae, *bundle.text_encoders):
        for p in module.parameters():
            total += float(p.float().sum())
    print(json.dumps({"imported": imported, "loaded": loaded, "touched": rss(), "seconds": seconds,
                      "seconds_cached": seconds_cached, "family": bundle.family.name}))
    """
)


def write_random_sd15(path, dtype: torch.dtype) -> int:
    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for key, meta in to_ldm_state_dict(meta_bundle("sd1")).items():
        tensors[key] = (torch.randn(meta.shape, generator=gen) * 0.02).to(dtype)
    from safetensors.torch import save_file

    save_file(tensors, str(path))
    return path.stat().st_size


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
def test_sd15_sized_load_peak_rss_and_time(tmp_path, dtype):
    path = tmp_path / "sd15-random.safetensors"
    size = write_random_sd15(path, dtype)
    env = {"RETOUCH_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, env=env, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    gib = 1024**3
    print(
        f"\nSD1.5-sized {dtype}: file {size / gib:.2f} GiB; RSS after imports {figures['imported'] / gib:.2f} GiB, "
        f"peak after load_model {figures['loaded'] / gib:.2f} GiB, after reading every weight "
        f"{figures['touched'] / gib:.2f} GiB ({figures['touched'] / size:.2f}x file); load {figures['seconds']:.1f} s "
        f"(first, incl. sha256), {figures['seconds_cached']:.1f} s (hash cached)"
    )
    assert figures["family"] == "sd1"
    assert figures["touched"] <= 1.3 * size
