"""Imports flow one way (ARCHITECTURE.md): a test walks the package's imports and fails on a forbidden arrow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "retouch"

# package -> packages it must never import
FORBIDDEN = {
    "params": {"imaging", "sampling", "models", "engine", "runtime", "server", "cli", "formats", "webui"},
    "imaging": {"sampling", "models", "engine", "runtime", "server", "cli", "formats", "webui", "plan"},
    "sampling": {"imaging", "models", "engine", "runtime", "server", "cli", "formats", "webui", "plan"},
    "models": {"engine", "runtime", "server", "cli", "formats", "webui", "plan"},
    "engine": {"server", "cli", "formats", "webui"},
    "recipes": {"server", "cli", "formats", "webui"},
    "styles": {"imaging", "sampling", "models", "engine", "runtime", "server", "cli", "formats", "webui"},
    "runtime": {"server", "cli", "formats", "webui", "engine"},
    "plan": {"server", "cli", "formats", "webui", "engine", "models"},
    "feature_cache": {"engine", "runtime", "server", "cli", "formats", "webui", "sampling", "imaging", "plan"},
    "token_merge": {"params", "engine", "runtime", "server", "cli", "formats", "webui", "sampling", "imaging", "plan",
                    "models"},
    "formats": {"engine", "runtime", "server", "cli", "webui", "models", "sampling"},
    "prompts": {"imaging", "sampling", "models", "engine", "runtime", "server", "cli", "formats", "webui", "plan"},
    "server": {"cli", "scale"},  # the cluster wraps the server, never the reverse
}


def _module_key(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "retouch" and len(parts) > 1:
                found.add(parts[1])
    return found


FILES = sorted(p for p in SRC.rglob("*.py") if _module_key(p) in FORBIDDEN)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_forbidden_import(path: Path) -> None:
    bad = _imports(path) & FORBIDDEN[_module_key(path)]
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("import retouch.engine\nfrom retouch.server import app\nfrom . import y\n")
    assert _imports(f) == {"engine", "server"}


def test_package_import_does_not_load_torch() -> None:
    import subprocess
    import sys

    code = "import sys, retouch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_prompts_import_loads_neither_torch_nor_the_parser_libraries() -> None:
    import subprocess
    import sys

    code = "import sys, retouch.prompts; print(sorted({'torch', 'lark', 'ftfy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _imports_ray(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ray" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ray":
            return True
    return False


def test_only_scale_imports_ray() -> None:
    """Ray is the optional ``ray`` extra: nothing outside ``retouch.scale`` may import it."""
    outside = [p for p in SRC.rglob("*.py") if _module_key(p) != "scale" and _imports_ray(p)]
    assert not outside, f"imports Ray outside retouch/scale: {[str(p.relative_to(SRC)) for p in outside]}"
    assert any(_imports_ray(p) for p in (SRC / "scale").rglob("*.py"))  # the checker sees Ray imports


def test_the_ray_checker_sees_every_form(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    for code, expected in (("import ray\n", True), ("def f():\n    from ray import serve\n", True),
                           ("import ray.data as rd\n", True), ("import rayon\nfrom . import ray\n", False)):
        f.write_text(code)
        assert _imports_ray(f) is expected, code
