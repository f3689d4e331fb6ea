"""Shared test setup: no hub access, tiny models built in code."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

# Tiny models gain nothing from threads, and two threads fighting other processes for two cores
# spin-wait for seconds per call; one thread keeps the suite fast and its timings stable.
torch.set_num_threads(1)

from hypothesis import HealthCheck, settings  # noqa: E402

# Property tests check behaviour, not speed: on a loaded 2-core machine one draw can take a second,
# which Hypothesis' default deadline and too_slow health check would report as a failure.
settings.register_profile("retouch", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("retouch")
