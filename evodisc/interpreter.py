"""Run a program on tensors: compile the IR once to a flat register machine, then step it.

:func:`compile_program` turns the expression trees into a list of instructions over registers
(constant sub-expressions folded at compile time), so a step costs one Python call per primitive.
The same compiled program runs on torch tensors (any shape, any device) or on NumPy arrays.

Shapes: ``w``, ``g`` and the state slots share one shape. Many models can be stacked along
``batch_dims`` leading dimensions; the scalar inputs ``lr``, ``t`` and ``T`` may then be numbers
or tensors of the batch shape (one learning rate per model), and reductions (``norm``, ``rms``,
``mean``) reduce each model's slice on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from evodisc import primitives
from evodisc.program import Const, Expr, Program, Var

Backend = str  # "torch" or "numpy"


class Instruction(NamedTuple):
    """``registers[out] = fn(*registers[args])``; reductions also get the reduced dimensions.

    (A named tuple: programs are compiled by the thousand per second for hashing.)
    """

    out: int
    fn: Callable
    args: tuple[int, ...]
    reduction: bool


@dataclass(frozen=True)
class CompiledProgram:
    """A program lowered to registers for one backend."""

    program: Program
    backend: Backend
    num_registers: int
    param_registers: tuple[int, ...]
    constants: tuple[tuple[int, float], ...]
    code: tuple[Instruction, ...]
    outputs: tuple[int, ...]

    def __call__(self, inputs: Sequence, batch_dims: int = 0) -> list:
        """Run one step on ``inputs`` (one per parameter, in ``program.params`` order).

        Returns ``[update, new_state...]``. Scalar inputs must already broadcast against the
        tensors (see :func:`step`, which arranges that).
        """
        regs: list = [None] * self.num_registers
        for reg, value in zip(self.param_registers, inputs, strict=True):
            regs[reg] = value
        for reg, value in self.constants:
            regs[reg] = value
        if self.backend == "numpy":
            with np.errstate(all="ignore"):  # IEEE results are wanted, not warnings
                self._run(regs, batch_dims)
        else:
            self._run(regs, batch_dims)
        return [regs[r] for r in self.outputs]

    def _run(self, regs: list, batch_dims: int) -> None:
        for ins in self.code:
            args = [regs[a] for a in ins.args]
            if ins.reduction:
                x = args[0]
                ndim = getattr(x, "ndim", 0)
                regs[ins.out] = ins.fn(x, tuple(range(min(batch_dims, ndim), ndim)))
            else:
                regs[ins.out] = ins.fn(*args)


def compile_program(program: Program, backend: Backend = "torch") -> CompiledProgram:
    """Lower ``program`` to a :class:`CompiledProgram` for ``backend`` (``torch`` or ``numpy``)."""
    env: dict[str, int | float] = {}
    constants: dict[float, int] = {}
    code: list[Instruction] = []
    counter = [0]
    torch_backend = backend == "torch"

    def new_register() -> int:
        counter[0] += 1
        return counter[0] - 1

    params = tuple(new_register() for _ in program.params)
    env.update(zip(program.params, params, strict=True))

    def const_register(value: float) -> int:
        if value not in constants:
            constants[value] = new_register()
        return constants[value]

    def lower(expr: Expr) -> int | float:
        """Emit code for ``expr``; a Python float when it is constant."""
        if type(expr) is Var:
            return env[expr.name]
        if type(expr) is Const:
            return float(expr.value)
        args = [lower(a) for a in expr.args]
        if float not in map(type, args):  # every argument lives in a register
            regs = tuple(args)
        elif int not in map(type, args):  # every argument is a constant: fold
            return primitives.fold_constant(expr.op, args)
        else:
            regs = tuple(const_register(a) if type(a) is float else a for a in args)
        prim = primitives.PRIMITIVES[expr.op]
        out = new_register()
        code.append(
            Instruction(out, prim.torch if torch_backend else prim.numpy, regs, prim.reduction)
        )
        return out

    def materialise(expr: Expr) -> int:
        value = lower(expr)
        return const_register(value) if isinstance(value, float) else value

    for statement in program.body:
        env[statement.target] = lower(statement.expr)  # constants stay constants (folded)
    outputs = tuple(materialise(e) for e in program.returns)
    return CompiledProgram(
        program=program,
        backend=backend,
        num_registers=counter[0],
        param_registers=params,
        constants=tuple((reg, value) for value, reg in constants.items()),
        code=tuple(code),
        outputs=outputs,
    )


def _is_numpy(x) -> bool:
    """True for NumPy arrays and scalars; anything else here is a torch tensor (this module
    imports torch only when it is handed tensors, so hashing never loads it)."""
    return isinstance(x, np.ndarray | np.generic)


def init_state(program: Program, w) -> list:
    """Zero-initialised state slots shaped like ``w`` (a torch tensor or a NumPy array)."""
    if _is_numpy(w):
        return [np.zeros_like(w) for _ in program.state]
    import torch

    return [torch.zeros_like(w) for _ in program.state]


def _scalar(value, like, batch_dims: int):
    """Make ``lr``/``t``/``T`` broadcast against ``like``: numbers stay numbers on NumPy, become
    float64 scalars on torch; batch-shaped tensors get trailing singleton dimensions."""
    if not _is_numpy(like):
        import torch

        if not isinstance(value, torch.Tensor):
            return torch.tensor(float(value), dtype=torch.float64)
        if value.ndim == 0:
            return value
        return value.reshape(value.shape + (1,) * (like.ndim - batch_dims))
    value = np.asarray(value, dtype=np.float64)
    if value.ndim == 0:
        return value[()]
    return value.reshape(value.shape + (1,) * (like.ndim - batch_dims))


def step(
    compiled: CompiledProgram,
    w,
    g,
    lr,
    t,
    state: Sequence,
    batch_dims: int = 0,
    T=None,
) -> tuple[object, list]:
    """One optimizer step: returns ``(update, new_state)``; the caller applies ``w ← w − update``.

    ``t`` is the 1-based step number and ``T`` the run's horizon (its total number of steps,
    ``1 <= t <= T``), needed only by a program that takes ``T``. ``state`` holds one tensor per
    state slot (see :func:`init_state`).
    """
    values = {"w": w, "g": g, "lr": _scalar(lr, w, batch_dims), "t": _scalar(t, w, batch_dims)}
    if "T" in compiled.program.params:
        if T is None:
            raise ValueError("the program reads T, the run's total number of steps: pass T")
        values["T"] = _scalar(T, w, batch_dims)
    if len(state) != len(compiled.program.state):
        raise ValueError(
            f"the program has {len(compiled.program.state)} state slot(s), got {len(state)}"
        )
    slots = iter(state)
    inputs = [values[p] if p in values else next(slots) for p in compiled.program.params]
    outputs = compiled(inputs, batch_dims)
    update, *new_state = (_shaped_like(value, w) for value in outputs)
    return update, new_state


def _shaped_like(value, w):
    """``value`` with ``w``'s shape and dtype (an output may be a scalar or a float64 scalar)."""
    if not _is_numpy(w):
        import torch

        value = torch.as_tensor(value, dtype=w.dtype, device=w.device)
        return value if value.shape == w.shape else value.expand(w.shape).clone()
    value = np.asarray(value, dtype=w.dtype)
    return value if value.shape == w.shape else np.broadcast_to(value, w.shape).copy()
