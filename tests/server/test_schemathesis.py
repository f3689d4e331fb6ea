"""Fuzz the served OpenAPI spec with schemathesis (>= 1000 requests) and require no 5xx. Slow: run with
``pytest -m slow tests/server/test_schemathesis.py`` or call ``scripts/schemathesis_run.sh`` directly."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "schemathesis_run.sh"), "100"], cwd=ROOT, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OUT": str(tmp_path), "PY": str(ROOT / ".venv" / "bin" / "python")},
        timeout=1800,
    )
    summary = re.search(r"schemathesis: (\d+) requests .* 5xx: (\d+)", proc.stdout)
    assert summary is not None, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert int(summary.group(1)) >= 1000 and int(summary.group(2)) == 0, summary.group(0)
    assert proc.returncode == 0, proc.stdout[-3000:]
