"""A real server process on 127.0.0.1, called over HTTP; and a model path that fails to load."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from retouch.server import create_app

from .conftest import payload

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_server_process_over_http() -> None:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "uvicorn", "_factory:app", "--factory", "--app-dir", str(HERE),
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    auth = ("user", "pass")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "server exited"
            try:
                if httpx.get(f"{base}/sdapi/v1/progress", auth=auth, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.25)
        assert httpx.get(f"{base}/sdapi/v1/options", timeout=10).status_code == 401
        r = httpx.post(f"{base}/sdapi/v1/img2img", json=payload(), auth=auth, timeout=120)
        assert r.status_code == 200, r.text
        assert json.loads(r.json()["info"])["all_seeds"] == [1234]
        assert base64.b64decode(r.json()["images"][0])[:8] == b"\x89PNG\r\n\x1a\n"
        spec = httpx.get(f"{base}/openapi.json", auth=auth, timeout=10).json()
        assert {"/sdapi/v1/img2img", "/api/v1/jobs", "/api/v1/jobs/{job_id}/events"} <= set(spec["paths"])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)  # the lifespan stops the worker and the process exits
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("server did not shut down within 30 s")
    assert proc.returncode == 0


def test_model_path_that_does_not_exist_fails_at_startup() -> None:
    from fastapi.testclient import TestClient

    app = create_app("/nonexistent/model.safetensors")  # nothing is loaded at creation
    with pytest.raises((FileNotFoundError, ValueError)), TestClient(app):
        pass
