"""The program text format: parsing, printing, JSON, and the errors malformed text gets."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evodisc.program import (
    Call,
    Const,
    ProgramError,
    Var,
    format_program,
    load_program,
    parse_program,
    program_from_json,
    program_to_json,
)
from search_spaces.space import random_program

ADAMW = """\
def train(w, g, lr, t, m, v):
    m = interp(g, m, 0.9)          # 0.9*m + 0.1*g
    v = interp(square(g), v, 0.999)
    mhat = m / (1 - 0.9 ** t)
    vhat = v / (1 - 0.999 ** t)
    update = mhat / (sqrt(vhat) + 1e-8) + 0.01 * w
    return update * lr, m, v
"""

# Program 4 of the Lion paper (the raw search output), written as it is listed there.
LION_RAW = """\
def train(w, g, m, v, lr):
    g = clip(g, lr)
    g = arcsin(g)
    m = interp(g, v, 0.899)
    m2 = m * m
    v = interp(g, m, 1.109)
    abs_m = sqrt(m2)
    update = m / abs_m
    update = update + w * 0.4602
    lr = lr * 0.0002
    update = update * lr
    return update, m, v
"""

# Warm-up over the first 10 % of the run, then cosine decay to 0 at t = T: reads the horizon T.
SCHEDULED = """\
def train(w, g, lr, t, T, m):
    m = interp(g, m, 0.9)
    warm = minimum(t / (0.1 * T), 1)
    cosine = 0.5 * (1 + cos(3.141592653589793 * t / T))
    return lr * warm * cosine * m, m
"""


def test_adamw_parses_into_state_slots_and_update():
    program = parse_program(ADAMW)
    assert program.params == ("w", "g", "lr", "t", "m", "v")
    assert program.state == ("m", "v")
    assert program.body[0].target == "m"
    assert program.body[0].expr == Call("interp", (Var("g"), Var("m"), Const(0.9)))
    assert program.update == Call("mul", (Var("update"), Var("lr")))
    assert len(program.returns) == 3


def test_paper_listing_with_reassigned_inputs_parses():
    program = parse_program(LION_RAW)
    assert program.state == ("m", "v")
    targets = [s.target for s in program.body]
    assert targets.count("update") == 3
    assert targets.count("g") == 2 and "lr" in targets


def test_the_horizon_T_is_a_reserved_input_not_a_state_slot():
    program = parse_program(SCHEDULED)
    assert program.params == ("w", "g", "lr", "t", "T", "m")
    assert program.state == ("m",) and len(program.returns) == 2
    assert format_program(program) == SCHEDULED
    assert program_from_json(program_to_json(program)) == program
    assert '"params":["w","g","lr","t","T","m"]' in program_to_json(program)
    # T named a state slot before it was reserved: a new value returned for it is now an error
    with pytest.raises(ProgramError, match=r"expected the update followed by .* \(1: m\)"):
        parse_program("def train(g, lr, T, m):\n    return lr * g, T, m\n")
    assert parse_program("def train(g, T):\n    T = T * 2\n    return g / T\n").state == ()


@pytest.mark.parametrize("text", [ADAMW, LION_RAW, SCHEDULED])
def test_text_ir_text_ir_round_trip_is_exact(text):
    program = parse_program(text)
    printed = format_program(program)
    again = parse_program(printed)
    assert again == program
    assert format_program(again) == printed


@pytest.mark.parametrize(
    "expr",
    [
        "a - (b - c)",
        "a * b * c",
        "a * (b * c)",
        "a / (b * c)",
        "a ** b ** c",
        "(a ** b) ** c",
        "-a ** 2",
        "(-a) ** 2",
        "(-0.5) ** a",
        "-0.5 ** a",
        "2 ** -a",
        "--a",
        "-(a + b) * c",
        "a - -1",
        "1e-08 * a + 2.5e+20",
        "interp(a, b * c, 0.9) / (sqrt(abs(c)) + 1e-08)",
    ],
)
def test_printer_keeps_the_tree_with_minimal_parentheses(expr):
    program = parse_program(f"def train(a, b, c):\n    x = {expr}\n    return x, a, b, c\n")
    printed = format_program(program)
    assert printed.splitlines()[1] == f"    x = {expr}"
    assert parse_program(printed) == program


def test_augmented_assignment_and_function_form_of_operators():
    program = parse_program("def train(g, m):\n    m += g\n    return mul(m, 2), m\n")
    assert program.body[0].expr == Call("add", (Var("m"), Var("g")))
    assert format_program(program).splitlines()[1:] == ["    m = m + g", "    return m * 2, m"]


def test_json_round_trip_and_canonical_form():
    program = parse_program(ADAMW)
    text = program_to_json(program)
    assert program_from_json(text) == program
    assert program_to_json(program_from_json(text)) == text
    assert " " not in text


def test_json_is_validated_like_text():
    bad = program_to_json(parse_program(ADAMW)).replace('"op":"square"', '"op":"cbrt"')
    with pytest.raises(ProgramError, match="unknown primitive 'cbrt'"):
        program_from_json(bad)
    with pytest.raises(ProgramError, match="canonical JSON"):
        program_from_json('{"params": []}')


def test_deeply_nested_json_is_a_program_error():
    deep = '{"op": "neg", "args": [' * 2000 + '{"var": "g"}' + "]}" * 2000
    text = f'{{"params": ["g"], "body": [], "returns": [{deep}]}}'
    with pytest.raises(ProgramError, match="nested too deeply"):
        program_from_json(text)


def test_load_program_reports_file_name(tmp_path):
    path = tmp_path / "rule.py"
    path.write_text("def train(g):\n    u = sign(g)\n    return u\n")
    assert load_program(path).body[0].expr == Call("sign", (Var("g"),))
    path.write_text("def train(g):\n    u = sign(g)\n    u = h\n    return u\n")
    with pytest.raises(ProgramError) as info:
        load_program(path)
    assert str(info.value) == f"{path}:3: undefined name 'h'"
    with pytest.raises(ProgramError, match="cannot read file"):
        load_program(tmp_path / "missing.py")
    (tmp_path / "binary.py").write_bytes(b"\xff\xfe\x00def")
    with pytest.raises(ProgramError, match="not a UTF-8 text file"):
        load_program(tmp_path / "binary.py")


def _lines(*body: str, params: str = "w, g, lr, m") -> str:
    return "\n".join([f"def train({params}):", *(f"    {line}" for line in body)]) + "\n"


MALFORMED = [
    # (program text, line, reason fragment)
    (_lines("u = (g", "return u, m"), 2, "syntax error"),
    (_lines("u = foo(g)", "return u, m"), 2, "unknown primitive 'foo'"),
    (_lines("u = g", "u = sign(g, u)", "return u, m"), 3, "sign() takes 1 argument(s), got 2"),
    (_lines("u = interp(g, m)", "return u, m"), 2, "interp() takes 3 argument(s), got 2"),
    (_lines("u = g", "v = u * h", "return v, m"), 3, "undefined name 'h'"),
    (_lines("u = g.sign()", "return u, m"), 2, "only primitives can be called"),
    (_lines("u = torch.sign(g)", "return u, m"), 2, "only primitives can be called"),
    (_lines("u = g", "x = w.data", "return u, m"), 3, "attribute access is not allowed"),
    (_lines("import os", "return g, m"), 2, "imports are not allowed"),
    (_lines("from math import sqrt", "return g, m"), 2, "imports are not allowed"),
    (_lines("u = g", "for i in g:", "    u = u + i", "return u, m"), 3, "loops are not allowed"),
    (_lines("u = g", "while u:", "    u = u", "return u, m"), 3, "loops are not allowed"),
    (_lines("if g:", "    g = -g", "return g, m"), 2, "if statements are not allowed"),
    (_lines("u = g", "return u"), 3, "return gives 1 value(s)"),
    (_lines("u = g", "return u, m, m"), 3, "return gives 3 value(s)"),
    (_lines("u = g if w else w", "return u, m"), 2, "conditional expressions"),
    (_lines("u = g[0]", "return u, m"), 2, "indexing is not allowed"),
    (_lines("u = g // 2", "return u, m"), 2, "operator '//' is not allowed"),
    (_lines("u = g > 0", "return u, m"), 2, "comparisons are not allowed"),
    (_lines("u = 'g'", "return u, m"), 2, "only numeric constants"),
    (_lines("u = sign", "return u, m"), 2, "must be called"),
    (_lines("sign = g", "return sign, m"), 2, "it is a primitive"),
    (_lines("u, v = g, g", "return u, m"), 2, "only single names"),
    (_lines("g", "return g, m"), 2, "must assign"),
    (_lines("u = sign(g, *w)", "return u, m"), 2, "sign() takes 1 argument(s)"),
    (_lines("u = clip(g, c=1)", "return u, m"), 2, "positional arguments only"),
    (_lines("u = 1e999 * g", "return u, m"), 2, "not a finite number"),
    (_lines("return g, m", "u = g"), 2, "must be the last statement"),
    (_lines("u = g"), 1, "must end with a return"),
    ("x = 1\ndef train(g):\n    return g\n", 1, "may appear at the top level"),
    ("def step(g):\n    return g\n", 1, "must be called 'train'"),
    ("def train(g, g):\n    return g\n", 1, "duplicate parameter"),
    ("def train(g, lr=1):\n    return g\n", 1, "default values"),
    ("", 1, "no 'def train"),
]


@pytest.mark.parametrize(("text", "line", "reason"), MALFORMED)
def test_malformed_programs_are_rejected_with_line_and_reason(text, line, reason):
    with pytest.raises(ProgramError) as info:
        parse_program(text, filename="rule.py")
    assert info.value.line == line
    assert reason in info.value.reason
    assert str(info.value).startswith(f"rule.py:{line}: ")


@pytest.mark.parametrize("body", ["u = " + "-" * 5000 + "g", "u = " + " + ".join(["g"] * 20000)])
def test_absurdly_deep_expressions_are_a_program_error(body):
    with pytest.raises(ProgramError, match="nested too deeply"):
        parse_program(_lines(body, "return u, m"), filename="deep.py")


def test_parsing_never_executes_the_text(tmp_path):
    marker = tmp_path / "executed"
    text = _lines(f"u = open({str(marker)!r}, 'w')", "return u, m")
    with pytest.raises(ProgramError, match="unknown primitive 'open'"):
        parse_program(text)
    assert not marker.exists()


FUZZ = settings(max_examples=300, deadline=None, derandomize=True)
# Fragments of program text, valid and not: the parser must answer each mix with a ProgramError
# (or a program), never another exception.
FRAGMENTS = st.sampled_from(
    [
        "def train(w, g, lr, m):\n",
        "    ",
        "\n",
        "u = ",
        "return ",
        "g",
        "m",
        "w",
        "lr",
        "t",
        "sign(",
        "interp(",
        "clip(",
        "norm(",
        ")",
        "(",
        ", ",
        " + ",
        " - ",
        " * ",
        " / ",
        " ** ",
        "-",
        "0.9",
        "1e-8",
        "1e999",
        "x.y",
        "[0]",
        "import os",
        "lambda: 1",
        "if g:",
        "for i in g:",
        " = ",
        ":",
        "'s'",
        "@",
        "#",
        "\\",
        "\t",
        "def ",
        "class A:",
        "yield g",
        "await g",
        "∑",
    ]
)


@FUZZ
@given(st.lists(FRAGMENTS, max_size=30).map("".join))
def test_any_text_gives_a_program_or_a_program_error(text):
    try:
        program = parse_program(text, filename="fuzz.py")
    except ProgramError as exc:
        assert str(exc).startswith("fuzz.py")
        assert "\n" not in str(exc)
    else:
        assert parse_program(format_program(program)) == program


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_random_programs_round_trip_through_text_and_json(seed):
    program = random_program(random.Random(seed))
    assert parse_program(format_program(program)) == program
    assert program_from_json(program_to_json(program)) == program
