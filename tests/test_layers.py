"""Layers (DESIGN.md): lower layers never import upper ones, and the light core (parse,
analyse, validate, hash) imports no heavy library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "sympy", "pyarrow")


def test_hashing_a_program_imports_neither_torch_nor_sympy_nor_pyarrow():
    """In a fresh process (here torch is already loaded): the core leaves the heavy libraries
    out, and a primitive's SymPy form imports SymPy on first use, and nothing else (the torch
    form is bound the same way; importing torch here would cost a second)."""
    code = f"""
import json, sys
import evodisc
program = evodisc.parse_program(
    "def train(w, g, lr, t, m):\\n"
    "    m = interp(g, m, 0.9)\\n"
    "    u = sign(m) / (rms(g) + norm(w) + abs(mean(m))) + clip(arcsin(tanh(g)), 0.5)\\n"
    "    return lr * u ** 2, m\\n"
)
evodisc.functional_hash(program)
evodisc.analyse(program)
evodisc.check_candidate(program)
core = [m for m in {HEAVY!r} if m in sys.modules]
evodisc.PRIMITIVES["sqrt"].sympy
print(json.dumps([core, [m for m in {HEAVY!r} if m in sys.modules]]))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    core, after_first_use = json.loads(result.stdout)
    assert core == []
    assert after_first_use == ["sympy"]


# ------------------------------------------------------------------------- import direction

ROOT = Path(__file__).resolve().parents[1]
#: What each layer must not import. "core" is every module of evodisc/ but the application
#: subpackage evodisc/app/, which may import anything.
FORBIDDEN = {
    "core": ("fitness", "search_spaces", "evodisc.app", "ray"),
    "search_spaces": ("fitness", "evodisc.app", "ray", "torch"),
    "fitness": ("evodisc.app", "ray"),
}


def _layer(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    if parts[0] == "evodisc":
        return None if parts[1] == "app" else "core"
    return parts[0] if parts[0] in ("search_spaces", "fitness") else None


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _violations() -> list[str]:
    found = []
    for package in ("evodisc", "search_spaces", "fitness"):
        for path in sorted((ROOT / package).rglob("*.py")):
            layer = _layer(path)
            if layer is None or path.parent.name == "zoo" and path.name != "__init__.py":
                continue  # the application layer may import anything; zoo files are programs
            for name in _imports(path):
                for banned in FORBIDDEN[layer]:
                    if name == banned or name.startswith(banned + "."):
                        found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_lower_layers_never_import_upper_layers():
    assert _violations() == []


def test_the_import_check_sees_function_level_imports(tmp_path, monkeypatch):
    """The check itself: an upper-layer import hidden in a function is caught."""
    fake = tmp_path / "evodisc"
    fake.mkdir()
    (fake / "program.py").write_text("def f():\n    from fitness.trainer import train_batch\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert sorted(_violations()) == [
        "evodisc/program.py imports fitness.trainer",
        "evodisc/program.py imports fitness.trainer.train_batch",
    ]
