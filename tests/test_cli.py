"""The command line: listings, and one-line errors with a non-zero exit code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evodisc.app.cli import main
from evodisc.hashing import functional_hash
from evodisc.primitives import PRIMITIVES
from search_spaces.zoo import ZOO_DIR, load_known


def test_show_prints_listing_slots_memory_and_statements(capsys):
    assert main(["show", str(ZOO_DIR / "adamw.py")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("def train(w, g, lr, t, m, v):\n    m = interp(g, m, 0.9)\n")
    assert f"functional hash: {functional_hash(load_known('adamw'))}\n" in out
    assert "state slots: m, v" in out
    assert "memory: 2 tensor(s) per parameter" in out
    assert "statements: 5 (5 live)" in out
    assert "validity: valid" in out


def test_show_flags_a_program_that_ignores_the_gradient(tmp_path, capsys):
    path = tmp_path / "decay.py"
    path.write_text("def train(w, g, lr):\n    junk = g * 2\n    return lr * w\n")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "statements: 1 (0 live)" in out
    assert "validity: invalid: the update never depends on the gradient g\n" in out


def test_show_flags_a_program_whose_update_is_not_finite(tmp_path, capsys):
    path = tmp_path / "blowup.py"
    path.write_text("def train(w, g, lr):\n    return lr * log(g)\n")
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "validity: invalid: its update is not finite (NaN or inf) on the probe inputs\n" in out


def test_primitives_lists_every_primitive(capsys):
    assert main(["primitives"]) == 0
    out = capsys.readouterr().out
    for name in PRIMITIVES:
        assert f"\n {name} " in out or out.startswith(f" {name} ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no/such/file.py"], "no/such/file.py: no such file, and not a known optimizer"),
        (["export", "nonexistent_rule"], "nonexistent_rule: no such file"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("evodisc: error: ") and message in err
    assert err.count("\n") == 1


def test_malformed_program_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def train(w, g):\n    u = g\n    u = frobnicate(u)\n    return u\n")
    result = subprocess.run(
        [sys.executable, "-m", "evodisc.app.cli", "show", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert (
        result.stderr == f"evodisc: error: {path}:3: unknown primitive 'frobnicate' "
        "(see 'evodisc primitives')\n"
    )
    assert "Traceback" not in result.stderr and result.stdout == ""
