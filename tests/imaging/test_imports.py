"""retouch.imaging stays pure: no torch, no models/engine/server/cli (ARCHITECTURE.md import rules)."""

from __future__ import annotations

import ast
from pathlib import Path

import retouch.imaging

FORBIDDEN = ("torch", "retouch.models", "retouch.engine", "retouch.server", "retouch.cli", "retouch.sampling")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_imaging_imports_no_forbidden_module() -> None:
    folder = Path(retouch.imaging.__file__).parent
    files = sorted(folder.glob("*.py"))
    assert {f.name for f in files} >= {"resize.py", "mask.py", "fill.py", "composite.py", "color.py"}
    for path in files:
        bad = {n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_public_names_are_exported() -> None:
    for name in retouch.imaging.__all__:
        assert callable(getattr(retouch.imaging, name)), name
