"""Layers (DESIGN.md): lower layers never import upper ones, and the light core (parse,
analyse, validate, hash) imports no heavy library."""

from __future__ import annotations

import ast
import importlib
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
#: The packages from the bottom up, and which of the project's other packages each may import.
#: "evodisc" is the core (the modules directly in evodisc/); campaign and inspect are the two
#: rooms of the application, which never import each other; evodisc.app joins them.
ALLOWED = {
    "evodisc": (),
    "search_spaces": ("evodisc",),
    "fitness": ("evodisc", "search_spaces"),
    "evodisc.campaign": ("evodisc", "search_spaces", "fitness"),
    "evodisc.inspect": ("evodisc", "search_spaces", "fitness"),
    "evodisc.app": ("evodisc", "search_spaces", "fitness", "evodisc.campaign", "evodisc.inspect"),
}
#: Libraries a package must not import (Ray belongs to the campaign's evaluators; a search space
#: is pure program manipulation).
BANNED = {
    "evodisc": ("ray",),
    "search_spaces": ("ray", "torch"),
    "fitness": ("ray",),
    "evodisc.inspect": ("ray",),
}


def _package(module: str) -> str | None:
    """The package of ALLOWED that ``module`` (a dotted name) belongs to, if any."""
    owners = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    return max(owners, key=len) if owners else None


def _modules(root: Path) -> dict[str, Path]:
    """Every module of the project's packages by dotted name (a package by its own name); the
    zoo's program files are programs, not modules."""
    found = {}
    for top in ("evodisc", "search_spaces", "fitness"):
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if "zoo" in parts[:-1] and parts[-1] != "__init__":
                continue
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


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


def _violations(root: Path) -> list[str]:
    found = []
    for module, path in _modules(root).items():
        package = _package(module)
        for name in sorted(_imports(path)):
            target = _package(name)
            if target not in (None, package) and target not in ALLOWED[package]:
                found.append(f"{module} ({package}) imports {name} ({target})")
            for banned in BANNED.get(package, ()):
                if name == banned or name.startswith(banned + "."):
                    found.append(f"{module} ({package}) imports {name}")
    return found


def _circles(root: Path) -> list[list[str]]:
    """Import cycles among the modules of one package (function-level imports included)."""
    modules = _modules(root)

    def targets(module: str, path: Path) -> set[str]:
        found = {n for n in _imports(path) if n in modules and _package(n) == _package(module)}
        # ``from evodisc import primitives`` imports the module, not the package's facade
        parents = {n for n in found if any(o.startswith(n + ".") for o in found)}
        return found - parents - {module}

    edges = {m: targets(m, p) for m, p in modules.items()}
    cycles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(path[path.index(module) :] + [module])
            return
        if module in done:
            return
        for nxt in sorted(edges[module]):
            visit(nxt, [*path, module])
        done.add(module)

    for module in sorted(modules):
        visit(module, [])
    return cycles


def test_every_package_imports_only_the_packages_below_it():
    assert _violations(ROOT) == []


def test_no_two_modules_of_a_package_import_each_other_in_a_circle():
    assert _circles(ROOT) == []


def test_the_checks_see_function_level_imports_and_circles(tmp_path):
    """The checks themselves: an upward import hidden in a function, a room importing the other
    room, and a circle through a function-level import are each caught."""
    for package in ("evodisc", "evodisc/campaign", "fitness", "search_spaces"):
        (tmp_path / package).mkdir(parents=True)
    (tmp_path / "evodisc" / "program.py").write_text(
        "def f():\n    from fitness.trainer import train_batch\n"
    )
    (tmp_path / "evodisc" / "campaign" / "run.py").write_text("import evodisc.inspect.simplify\n")
    (tmp_path / "fitness" / "tasks.py").write_text("def f():\n    import fitness.builtin\n")
    (tmp_path / "fitness" / "builtin.py").write_text("from fitness.tasks import TaskData\n")
    assert _violations(tmp_path) == [
        "evodisc.campaign.run (evodisc.campaign) imports evodisc.inspect.simplify "
        "(evodisc.inspect)",
        "evodisc.program (evodisc) imports fitness.trainer (fitness)",
        "evodisc.program (evodisc) imports fitness.trainer.train_batch (fitness)",
    ]
    assert _circles(tmp_path) == [["fitness.builtin", "fitness.tasks", "fitness.builtin"]]


def _first_use_tables() -> dict[str, dict[str, str]]:
    """The lazy facades' tables (package → {public name: defining module}), read from source."""
    tables = {}
    for package in ("evodisc", "fitness"):
        tree = ast.parse((ROOT / package / "__init__.py").read_text())
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if [ast.unparse(t) for t in targets] == ["_ON_FIRST_USE"]:
                tables[package] = ast.literal_eval(node.value)
    return tables


def test_the_lazy_facades_name_real_targets_in_the_layers_they_document():
    """``evodisc.X`` and ``fitness.X`` resolve on first use through name strings: each target
    module defines the name; fitness's facade stays in fitness; evodisc's public API reaches
    the core, the inspect room and replay, never the campaign machinery."""
    tables = _first_use_tables()
    assert set(tables) == {"evodisc", "fitness"}
    for package, table in tables.items():
        for name, module in table.items():
            assert hasattr(importlib.import_module(module), name), f"{package}.{name}: {module}"
    assert {_package(m) for m in tables["fitness"].values()} == {"fitness"}
    reached = {_package(m) for m in tables["evodisc"].values()}
    assert reached == {"evodisc", "evodisc.inspect", "evodisc.app"}
    assert {m for m in tables["evodisc"].values() if _package(m) == "evodisc.app"} == {
        "evodisc.app.replay"
    }


def test_the_task_registry_names_real_factories():
    from fitness.tasks import HELDOUT, SUITE

    for name, target in {**SUITE, **HELDOUT}.items():
        module, _, factory = target.partition(":")
        assert _package(module) == "fitness" and callable(
            getattr(importlib.import_module(module), factory)
        ), name
