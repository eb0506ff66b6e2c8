"""Issue 11, cases 5 and 6: program files that used to crash or hang the command line, and a
failed export that used to leave half a file.

One documented bound, :data:`evodisc.program.MAX_DEPTH`, is enforced by the parser (and so for
JSON, which is printed then parsed): nothing downstream — printer, interpreter, hash, export —
recurses deeper. Program files are read only when they are regular files of bounded size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import evodisc
from evodisc.app.cli import main
from evodisc.program import MAX_DEPTH, MAX_FILE_BYTES, ProgramError, program_from_json

torch.set_num_threads(1)


def sum_program(terms: int) -> str:
    return "def train(g, lr):\n    u = " + " + ".join(["g"] * terms) + "\n    return u * lr\n"


def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("evodisc: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("terms", [600, 1400])
def test_a_too_deep_sum_is_one_line_in_every_command(tmp_path, capsys, terms):
    path = tmp_path / "deep.py"
    path.write_text(sum_program(terms))
    commands = [
        ["show", str(path)],
        ["hash", str(path)],
        ["export", str(path)],
        ["replay", str(path), "--task", "ill_conditioned", "--lrs", "0.01"],
    ]
    for argv in commands:
        err = one_line_error(argv, capsys)
        assert f"{path}:2: expression nested too deeply (" in err, argv
        assert f"; the limit is {MAX_DEPTH})" in err
    assert f"({terms} levels;" in str(pytest.raises(ProgramError, evodisc.load_program, path).value)


def test_the_deepest_allowed_program_runs_everywhere(tmp_path, capsys):
    path = tmp_path / "deepest.py"
    path.write_text(sum_program(MAX_DEPTH))  # 199 additions: a tree of height 200
    program = evodisc.load_program(path)
    assert main(["show", str(path)]) == 0 and main(["hash", str(path)]) == 0
    capsys.readouterr()
    assert main(["export", str(path)]) == 0
    namespace: dict = {}
    exec(compile(capsys.readouterr().out, "exported", "exec"), namespace)
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.ones(3)
    namespace["Deepest"]([w], lr=1e-3).step()
    assert torch.allclose(w.detach(), torch.full((3,), 1 - 0.2))
    (row,) = evodisc.replay(program, "ill_conditioned", [], lrs=(1e-4,)).rows
    assert row.best_lr == 1e-4
    doc = json.loads(evodisc.program_to_json(program))
    assert program_from_json(json.dumps(doc)) == program
    with pytest.raises(ProgramError, match=f"the limit is {MAX_DEPTH}"):
        evodisc.parse_program(sum_program(MAX_DEPTH + 1))


def test_too_deep_json_is_refused_with_the_same_limit():
    expr: dict = {"var": "g"}
    for _ in range(300):
        expr = {"op": "neg", "args": [expr]}
    text = json.dumps({"params": ["g"], "body": [], "returns": [expr]})
    with pytest.raises(ProgramError, match=rf"nested too deeply \(.*the limit is {MAX_DEPTH}\)"):
        program_from_json(text, filename="deep.json")


def _cli(argv: list[str], timeout: float = 300, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evodisc.app.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_show_refuses_a_fifo_instead_of_hanging(tmp_path):
    fifo = tmp_path / "rule.py"
    os.mkfifo(fifo)
    result = _cli(["show", str(fifo)], timeout=300)  # a hang detector: it answers at once
    assert result.returncode == 2
    assert result.stderr == f"evodisc: error: {fifo}: cannot read file (not a regular file)\n"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_show_refuses_a_device_instead_of_exhausting_memory():
    import resource

    def limit_memory():  # were the device read, this process would fail fast, not the machine
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    result = _cli(["show", "/dev/zero"], preexec=limit_memory)
    assert result.returncode == 2
    assert result.stderr == "evodisc: error: /dev/zero: cannot read file (not a regular file)\n"


def test_a_program_file_larger_than_the_cap_is_refused(tmp_path, capsys):
    path = tmp_path / "huge.py"
    path.write_text(sum_program(2) + "#" * MAX_FILE_BYTES)
    err = one_line_error(["show", str(path)], capsys)
    assert f"{path}: cannot read file (larger than {MAX_FILE_BYTES:,} bytes)" in err


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_failed_export_leaves_the_old_file_untouched(tmp_path):
    """The disk fills up (here: a file-size limit) half-way through the write."""
    import resource
    import signal

    target = tmp_path / "lion_opt.py"
    target.write_text("OLD\n")

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    result = _cli(["export", "lion", "-o", str(target)], preexec=limit_file_size)
    assert result.returncode == 2
    assert result.stderr.startswith(f"evodisc: error: cannot write {target} (")
    assert target.read_text() == "OLD\n"  # not a truncated export
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lion_opt.py"]  # no temporary left
    assert _cli(["export", "lion", "-o", str(target)]).returncode == 0
    assert "class Lion(ProgramOptimizer)" in target.read_text()
