"""Regenerate tests/goldens/engine_slices.json: 3x3 pixel slices of fixed tiny-model jobs.

Run only when a behaviour change is intended, and say why in the commit:

    HF_HUB_OFFLINE=1 .venv/bin/python tools/regen_goldens.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from golden_jobs import SCENARIOS, run_scenario  # noqa: E402


def main() -> None:
    out = {name: run_scenario(name) for name in SCENARIOS}
    path = ROOT / "tests" / "goldens" / "engine_slices.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(out)} slices to {path}")


if __name__ == "__main__":
    main()
