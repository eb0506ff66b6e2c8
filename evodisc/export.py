"""Export a program as a ``torch.optim.Optimizer``: a class that runs it through the interpreter
(:func:`to_torch_optimizer`), or standalone source that needs only torch (:func:`torch_source`).

Both keep the layout of ``torch/optim/adamw.py``: ``__init__(params, lr=1e-3)``, param groups,
lazy per-parameter state ``self.state[p]`` holding ``step`` and one tensor per state slot (named
after the slot), and ``@torch.no_grad() step(closure=None)``. Their state dicts are
interchangeable.
"""

from __future__ import annotations

import keyword
import re
import string
from pathlib import Path
from typing import ClassVar

import torch

from evodisc.analysis import live_statements
from evodisc.interpreter import CompiledProgram, compile_program, step
from evodisc.primitives import PRIMITIVES
from evodisc.program import (
    Call,
    Const,
    Expr,
    Program,
    Var,
    format_expr,
    format_program,
)

DEFAULT_CLASS_NAME = "EvolvedOptimizer"


def state_keys(program: Program) -> tuple[str, ...]:
    """The keys of the state slots in ``optimizer.state[p]`` (``step`` is the step counter)."""
    return tuple(f"{slot}_" if slot == "step" else slot for slot in program.state)


def class_name_from_path(path: str | Path) -> str:
    """A class name from a program file or zoo name: ``lion.py`` → ``Lion``,
    ``cautious_adamw`` → ``CautiousAdamw``."""
    words = re.split(r"[^0-9A-Za-z]+", Path(path).stem)
    name = "".join(word[:1].upper() + word[1:] for word in words)
    if not name:
        return DEFAULT_CLASS_NAME
    if not name[0].isalpha():
        return f"Optimizer{name}"
    if keyword.iskeyword(name) or name in _MODULE_NAMES:  # none.py → None, true.py → True
        return f"{name}Optimizer"
    return name


def _check_class_name(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name) or name in _MODULE_NAMES:
        raise ValueError(f"{name!r} cannot be a class name; use a Python identifier")
    return name


def _class_doc(program: Program, name: str) -> str:
    listing = "".join(f"        {line}\n" for line in format_program(program).splitlines())
    slots = ", ".join(program.state) or "none"
    return (
        f"{name}: an optimizer exported by evodisc from this update rule::\n\n{listing}\n"
        f"    Each parameter moves by ``w ← w - update``; the state slots ({slots}) start at\n"
        "    zero.\n"
        "    "
    )


# ------------------------------------------------------------------------ running the interpreter


class ProgramOptimizer(torch.optim.Optimizer):
    """Base of the classes :func:`to_torch_optimizer` makes: runs ``program`` in the interpreter."""

    program: ClassVar[Program]
    compiled: ClassVar[CompiledProgram]
    slot_keys: ClassVar[tuple[str, ...]]

    def __init__(self, params, lr: float = 1e-3):
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the model, returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    for key in self.slot_keys:
                        state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                slots = [state[key] for key in self.slot_keys]
                update, new_slots = step(self.compiled, p, grad, group["lr"], state["step"], slots)
                for key, value in zip(self.slot_keys, new_slots, strict=True):
                    # A slot that is w or g itself must not change when they do.
                    state[key] = value.clone() if value is p or value is grad else value
                p.sub_(update)
        return loss


def to_torch_optimizer(program: Program, name: str | None = None) -> type[torch.optim.Optimizer]:
    """A ``torch.optim.Optimizer`` subclass that applies ``program`` (through the interpreter)."""
    if not isinstance(program, Program):
        raise TypeError(f"expected a Program, got {type(program).__name__}")
    name = _check_class_name(name or DEFAULT_CLASS_NAME)
    namespace = {
        "__doc__": _class_doc(program, name),
        "__module__": __name__,
        "__qualname__": name,
        "program": program,
        "compiled": compile_program(program, backend="torch"),
        "slot_keys": state_keys(program),
    }
    return type(name, (ProgramOptimizer,), namespace)


# --------------------------------------------------------------------------- standalone source

# How an expression evaluates in the generated code: a Python number (from lr, t and constants),
# a small tensor that broadcasts (a reduction, or a number made a tensor), or a tensor shaped and
# typed like the parameter.
_NUMBER, _SCALAR, _FULL = 0, 1, 2
_TENSOR = "_tensor"  # pseudo-primitive: a Python number made a float64 tensor
_PYTHON_ARITHMETIC = {"add", "sub", "mul", "neg", "interp"}  # IEEE-safe on Python numbers

_HELPERS = {
    # Helpers of primitives (their ``helper`` source in the registry), keyed by function name.
    **{
        re.match(r"def (\w+)", p.helper).group(1): "\n" + p.helper
        for p in PRIMITIVES.values()
        if p.helper
    },
    "_expand": '''
def _expand(x, w):
    """x (a number or a scalar tensor) as a tensor shaped like w."""
    return torch.as_tensor(x, dtype=w.dtype, device=w.device).expand_as(w).clone()
''',
}

_MODULE_NAMES = {"torch", "_update", *_HELPERS}

_MODULE = string.Template('''"""$name: a torch.optim.Optimizer exported by evodisc.

It needs only PyTorch. The update rule it applies is in the class docstring.
"""

import torch
$helpers

def _update($signature):
    """One step for one parameter: the update (applied as ``w - update``), the new state."""
$body


class $name(torch.optim.Optimizer):
    """$doc"""

    def __init__(self, params, lr=1e-3):
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; ``closure`` re-evaluates the model, returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("$name does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0$init_slots
                state["step"] += 1
$call
                p.sub_(update)
        return loss
''')


def torch_source(program: Program, class_name: str | None = None) -> str:
    """Standalone source of an optimizer class equivalent to ``to_torch_optimizer(program)``.

    The module imports only torch; its ``_update`` function is the program as straight-line
    torch code, with the program's own variable names.
    """
    name = _check_class_name(class_name or DEFAULT_CLASS_NAME)
    writer = _UpdateWriter(program)
    lines = writer.lines()
    keys = state_keys(program)
    slot_idents = [writer.idents[s] for s in program.state]
    state_refs = [f'state["{key}"]' for key in keys]
    init = [
        f"{' ' * 20}{ref} = torch.zeros_like(p, memory_format=torch.preserve_format)"
        for ref in state_refs
    ]
    call = _wrap_call(
        ", ".join(["update", *state_refs]),
        "_update",
        ["p", "p.grad", 'group["lr"]', 'state["step"]', *state_refs],
        indent=16,
    )
    helpers = "".join("\n" + _HELPERS[h] for h in _HELPERS if h in writer.helpers)
    return _MODULE.substitute(
        name=name,
        helpers=helpers,
        signature=", ".join(["w", "g", "lr", "t", *slot_idents]),
        body="\n".join(f"    {line}" for line in lines),
        doc=_class_doc(program, name),
        init_slots="".join(f"\n{line}" for line in init),
        call=call,
    )


def _wrap_call(target: str, fn: str, args: list[str], indent: int, width: int = 100) -> str:
    """``target = fn(args)``, wrapped the way ``ruff format`` would."""
    pad = " " * indent
    one_line = f"{pad}{target} = {fn}({', '.join(args)})"
    if len(one_line) <= width:
        return one_line
    inner = f"{pad}    {', '.join(args)}"
    if len(inner) <= width:
        return f"{pad}{target} = {fn}(\n{inner}\n{pad})"
    return f"{pad}{target} = {fn}(\n" + "".join(f"{pad}    {a},\n" for a in args) + f"{pad})"


class _UpdateWriter:
    """Writes the body of ``_update``: one line per live statement, then the return."""

    def __init__(self, program: Program):
        self.program = program
        self.helpers: set[str] = set()
        taken = set(program.params) | {s.target for s in program.body} | _MODULE_NAMES
        self.idents = {n: _fresh(n, taken) if n in _MODULE_NAMES else n for n in taken}
        # A reassigned w gets a new name: _expand still needs the parameter itself.
        self.new_w = _fresh("w", taken | set(self.idents.values()))
        # name -> (identifier, kind, the input it is, unchanged, if any)
        self.env: dict[str, tuple[str, int, str | None]] = {
            p: (self.idents[p], _NUMBER if p in ("lr", "t") else _FULL, p) for p in program.params
        }

    def lines(self) -> list[str]:
        out = []
        for statement in live_statements(self.program.body, self.program.returns):
            expr, kind = self.lower(statement.expr)
            origin = self.env[statement.expr.name][2] if isinstance(statement.expr, Var) else None
            ident = self.new_w if statement.target == "w" else self.idents[statement.target]
            out.append(f"{ident} = {self.write(expr)}")
            self.env[statement.target] = (ident, kind, origin)
        values = []
        for i, ret in enumerate(self.program.returns):
            expr, kind = self.lower(ret)
            text = self.write(expr)
            if kind != _FULL:
                self.helpers.add("_expand")
                text = f"_expand({text}, w)"
            elif i > 0 and isinstance(ret, Var) and self.env[ret.name][2] in ("w", "g"):
                text = f"{text}.clone()"  # a new slot must not alias the parameter or gradient
            values.append(text)
        out.append(f"return {', '.join(values)}")
        return out

    def lower(self, expr: Expr) -> tuple[Expr, int]:
        """``expr`` with program names replaced by identifiers and Python numbers made tensors
        wherever Python would not follow IEEE rules (or torch needs a tensor); and its kind."""
        if isinstance(expr, Var):
            ident, kind, _ = self.env[expr.name]
            return Var(ident), kind
        if isinstance(expr, Const):
            return expr, _NUMBER
        lowered = [self.lower(a) for a in expr.args]
        args = [a for a, _ in lowered]
        kinds = [k for _, k in lowered]
        for i in self.tensor_args(expr, kinds):
            if kinds[i] == _NUMBER:
                args[i] = Call(_TENSOR, (args[i],))
                kinds[i] = _SCALAR
        kind = _SCALAR if PRIMITIVES[expr.op].reduction else max(kinds)
        return Call(expr.op, tuple(args)), kind

    def tensor_args(self, expr: Call, kinds: list[int]) -> tuple[int, ...]:
        """Which arguments of ``expr`` must be tensors in the generated code."""
        op, args = expr.op, expr.args
        if op in _PYTHON_ARITHMETIC:
            return ()
        if op in ("div", "pow"):
            if any(k != _NUMBER for k in kinds) or self.python_safe(expr):
                return ()
            return (1,) if op == "div" else (0,)  # the divisor; the base
        return (0,) if op == "clip" else tuple(range(len(args)))

    def python_safe(self, expr: Call) -> bool:
        """True where Python numbers give IEEE results, never an exception: ``x / d`` with ``d``
        surely non-zero, and ``b ** e`` with 0 < b ≤ 1 and e ≥ 0 (e.g. ``0.9 ** t``)."""
        a, b = expr.args
        if expr.op == "div":
            return self.nonzero(b)
        return isinstance(a, Const) and 0 < a.value <= 1 and self.nonnegative(b)

    def is_step(self, expr: Expr) -> bool:
        """True for the step number ``t`` (≥ 1), unchanged."""
        return isinstance(expr, Var) and self.env[expr.name][2] == "t"

    def nonzero(self, expr: Expr) -> bool:
        """True for a non-zero constant, ``t``, and bias corrections ``c - b ** t`` (c ≥ 1,
        0 < b < 1)."""
        if isinstance(expr, Const):
            return expr.value != 0
        if self.is_step(expr):
            return True
        if not (isinstance(expr, Call) and expr.op == "sub"):
            return False
        c, power = expr.args
        return (
            isinstance(c, Const)
            and c.value >= 1
            and isinstance(power, Call)
            and power.op == "pow"
            and isinstance(power.args[0], Const)
            and 0 < power.args[0].value < 1
            and (self.is_step(power.args[1]) or power.args[1] == Const(1.0))
        )

    def nonnegative(self, expr: Expr) -> bool:
        """True if ``expr`` is ≥ 0 for sure: built from ``t``, constants ≥ 0, ``+`` and ``*``."""
        if isinstance(expr, Const):
            return expr.value >= 0
        if isinstance(expr, Var):
            return self.is_step(expr)
        return expr.op in ("add", "mul") and all(self.nonnegative(a) for a in expr.args)

    def write(self, expr: Expr) -> str:
        return format_expr(expr, call=self.write_call)

    def write_call(self, op: str, args: list[str]) -> str:
        if op == _TENSOR:
            return f"torch.tensor({args[0]}, dtype=torch.float64)"
        source = PRIMITIVES[op].source
        helper = source.split("(", 1)[0]
        if helper in _HELPERS:
            self.helpers.add(helper)
        if re.fullmatch(r"[\w.]+\([^()]*\)", source):  # a plain call: binds as an atom
            return source.format(*args)
        for i, arg in enumerate(args):  # e.g. "({0}) ** 3": no parentheses around a name
            if re.fullmatch(r"[\w.]+", arg):
                source = source.replace(f"({{{i}}})", f"{{{i}}}")
        return f"({source.format(*args)})"


def _fresh(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    return name
