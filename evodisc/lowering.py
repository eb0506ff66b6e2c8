"""A program lowered to a multi-tensor :class:`~evodisc.plan.Plan` (:func:`lower`).

* one ``torch._foreach_*`` call per operation for all the tensors, as the primitive's entry
  says (its ``foreach`` form, else its ``expansion`` in other primitives); an operation that has
  neither runs tensor by tensor, through its ``source``;
* numbers — whatever is computed from ``lr``, ``t``, ``T``, constants and the *named constants*
  (the numbers an exported optimizer takes as arguments, ``beta1``, ``eps``, …) — are Python
  floats, computed once per step (:mod:`evodisc.plan_numbers`); sub-expressions of unnamed
  constants are folded when the plan is made;
* a sum of scaled terms (``a + c*b``, ``interp``, ``x / n``, ``c*x*y``, ``c*x/y``) is accumulated
  (:mod:`evodisc.linear_terms`) in place in a buffer whose value is no longer needed (a state
  slot being replaced, a temporary);
* the update is applied in place: each term of ``w - update`` is one ``add_``/``addcmul_``/
  ``addcdiv_`` into the parameters, and a term ``c*w`` becomes ``w.mul_(1 - c)`` (decoupled
  weight decay, as torch.optim.AdamW applies it).

Exactness: in real arithmetic the plan computes the program. In floating point it differs from
the interpreter by rounding (a fused multiply-add, a factor applied at another point), as
torch.optim's single-tensor, foreach and fused AdamW differ from one another; where a value is
already non-finite the IEEE results may differ too (``inf`` where the interpreter has NaN).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import torch

from evodisc.analysis import live_statements
from evodisc.linear_terms import (
    Linear,
    Number,
    Term,
    Value,
    add,
    coefficient,
    register,
    scale,
    times,
)
from evodisc.plan import Plan, Step, reserved_names
from evodisc.plan_numbers import expansion, number, source_function, substitute
from evodisc.primitives import PRIMITIVES, Primitive
from evodisc.program import (
    RESERVED_INPUTS,
    SCALAR_INPUTS,
    Call,
    Const,
    Expr,
    Program,
    Var,
    names_used,
    walk,
)

#: Kinds of list values: one 0-dim tensor per parameter (a reduction), or full tensors.
SCALARS, TENSORS = 1, 2


def _use_counts(program: Program, body) -> Counter:
    """How often each definition (a parameter by name, statement ``i``'s target by ``i``) is
    read."""
    current: dict[str, object] = {p: p for p in program.params}
    counts: Counter = Counter()

    def count(expr: Expr) -> None:
        for node in walk(expr):
            if isinstance(node, Var):
                counts[current[node.name]] += 1

    for i, statement in enumerate(body):
        count(statement.expr)
        current[statement.target] = i
    for expr in program.returns:
        count(expr)
    return counts


def default_idents(program: Program, reserved: frozenset[str] = frozenset()) -> dict[str, str]:
    """Program name -> identifier: the name, with a trailing ``_`` where it is reserved (by the
    generated code, or in ``reserved``)."""
    reserved = reserved_names() | reserved
    names = set(program.params) | {s.target for s in program.body}
    taken = names | reserved
    idents = {}
    for name in sorted(names):
        ident = name
        if name in reserved:
            while ident in taken:
                ident += "_"
            taken.add(ident)
        idents[name] = ident
    return idents


def lower(program: Program, constants: dict[str, float] | None = None) -> Plan:
    """The multi-tensor plan of ``program``. ``constants`` names numbers of the program (name ->
    value): they become parameters of the plan (``beta1`` for each 0.9), not folded, and
    program names that clash with them get a ``_``."""
    constants = dict(constants or {})
    idents = default_idents(program, frozenset(constants))
    return _Lowering(program, idents, constants).plan()


class _Lowering:
    """Lowers one program. Values are numbers or sums of scaled list registers (``Linear``);
    ``refs`` counts the pending reads of each register, so that a register read for the last
    time by an operation can be overwritten by it (``owned``: not ``w``, ``g`` or a buffer
    already handed back as a state slot)."""

    def __init__(self, program: Program, idents: dict[str, str], constants: dict[str, float]):
        self.program, self.idents, self.constants = program, idents, constants
        self.named_constants = {value: Var(name) for name, value in constants.items()}
        self.body = live_statements(program.body, program.returns)
        self.uses = _use_counts(program, self.body)
        self.steps: list[Step] = []
        self.statement = 0
        self.taken = set(idents.values()) | reserved_names() | {*RESERVED_INPUTS, *constants}
        self.named = {idents[p] for p in program.params}  # program identifiers in use
        self.temps: set[str] = set()  # registers not named after a program variable (yet)
        self.names: dict[str, str] = {}  # temporary register -> the program variable it holds
        self.kind: dict[str, int] = {"w": TENSORS, "g": TENSORS}
        self.owned: dict[str, bool] = {"w": False, "g": False}
        self.refs: Counter = Counter()
        self.env: dict[str, Value] = {}
        for p in program.params:
            if p in SCALAR_INPUTS:
                self.env[p] = Number(Var(p))
                continue
            if p not in ("w", "g"):
                self.kind[idents[p]], self.owned[idents[p]] = TENSORS, True
            self.env[p] = register(p if p in ("w", "g") else idents[p])
            self.hold(self.env[p], self.uses[p])

    # ---------------------------------------------------------------------------- the result

    def plan(self) -> Plan:
        for i, statement in enumerate(self.body):
            self.statement = i
            self.bind(statement.target, self.lower(statement.expr), self.uses[i])
        self.statement = len(self.body)
        update = self.lower(self.program.update)
        slots = [self.lower(e) for e in self.program.returns[1:]]
        reads_w = update.registers().count("w") if isinstance(update, Linear) else 0
        update_first = self.refs["w"] == reads_w  # nothing else reads w: frees its inputs
        if update_first:
            self.apply_update(update)
        outputs = [self.hand_back(s, v) for s, v in zip(self.program.state, slots, strict=True)]
        if not update_first:
            self.apply_update(update)
        steps, names = tuple(self.steps), dict(self.names)
        horizon = self.uses["T"] > 0  # a live statement or the return reads the parameter T
        return Plan(
            self.program, dict(self.idents), steps, tuple(outputs), names, self.constants, horizon
        )

    def bind(self, target: str, value: Value, uses: int) -> None:
        """``target = value``, read ``uses`` times from now on."""
        name = self.name_for(target)
        if isinstance(value, Number):
            if uses > 1 and isinstance(value.expr, Call):  # computed once, by name
                self.emit(name, _identity, [value.expr], "{0}")
                value = Number(Var(name))
        else:
            if uses > 1 and not value.scaled_register():  # read twice: into a buffer
                value = Linear((self.single(value, name),))
            reg = value.terms[0].a
            if value.plain() and reg in self.temps:  # in the source, it goes by this name
                self.names[reg] = name
                self.temps.discard(reg)
            self.hold(value, uses - 1)
        self.env[target] = value

    def hand_back(self, slot: str, value: Value) -> str:
        """A register holding the slot's new value that no other slot, ``w`` or ``g`` shares;
        preferably the slot's own buffer."""
        own = self.idents[slot]
        if isinstance(value, Number):
            out = self.new(own, TENSORS)
            text = "[torch.full_like(_a, {1}) for _a in {0}]"
            self.emit(out, _full_like, ["w", value.expr], text)
        elif value.plain():
            reg = value.terms[0].a
            self.refs[reg] -= 1
            if self.kind[reg] == SCALARS:
                out = self.expand(own, reg)
            elif self.owned[reg] and self.refs[reg] == 0:
                out = reg
            elif self.owned[own] and self.refs[own] == 0:
                self.call("_foreach_copy_", [own, reg])
                out = own
            else:
                out = self.new(own, TENSORS)
                text = "[_a.clone(memory_format=torch.preserve_format) for _a in {0}]"
                self.emit(out, _clone, [reg], text)
        else:
            kind = self.kind_of(value.registers())
            out = self.materialise(value, own)
            self.refs[out] -= 1
            if kind == SCALARS:
                out = self.expand(own, out)
        self.owned[out] = False  # handed back: nothing may write it any more
        return out

    def expand(self, own: str, reg: str) -> str:
        """Scalars (one per tensor) as tensors shaped like the parameters."""
        out = self.new(own, TENSORS)
        text = "[torch.empty_like(_a).copy_(_b) for _a, _b in zip({0}, {1})]"
        self.emit(out, _expand, ["w", reg], text)
        return out

    def apply_update(self, value: Value) -> None:
        """``w ← w - value``, in place."""
        if isinstance(value, Number):
            self.call("_foreach_sub_", ["w", value.expr])
            return
        if any(t.op != "" and "w" in t.registers() for t in value.terms) or (
            self.kind_of(value.registers()) == SCALARS
        ):
            reg = self.materialise(value, "update")  # a product reads w: sum first
            self.refs[reg] -= 1
            self.call("_foreach_sub_", ["w", reg])
            return
        for reg in value.registers():
            self.refs[reg] -= 1
        rates = [coefficient(t.num, t.den) or Const(1.0) for t in value.terms if t.a == "w"]
        if rates:  # w - c·w - … = (1 - c)·w - …: weight decay as torch.optim.AdamW applies it
            rate = rates[0]
            for other in rates[1:]:
                rate = number("add", [rate, other])
            self.call("_foreach_mul_", ["w", number("sub", [Const(1.0), rate])])
        for term in value.terms:
            if term.a != "w":
                self.add_term("w", term, negate=True)
        if value.const is not None:
            self.call("_foreach_sub_", ["w", value.const])

    # ------------------------------------------------------------------ registers and calls

    def hold(self, value: Value, count: int) -> None:
        if isinstance(value, Linear):
            for reg in value.registers():
                self.refs[reg] += count

    def fresh(self, hint: str) -> str:
        name, n = hint, 1
        while name in self.taken:
            n += 1
            name = f"{hint}{n}"
        self.taken.add(name)
        return name

    def name_for(self, target: str) -> str:
        """A register name for a value of program variable ``target``: its own identifier the
        first time (temporaries never take program names), else a fresh one."""
        ident = self.idents[target]
        if ident in self.named:
            return self.fresh(ident)
        self.named.add(ident)
        return ident

    def new(self, hint: str, kind: int) -> str:
        reg = self.fresh(hint)
        self.kind[reg], self.owned[reg], self.refs[reg] = kind, True, 1
        if hint == "tmp":
            self.temps.add(reg)
        return reg

    def kind_of(self, regs: Sequence[str]) -> int:
        return TENSORS if any(self.kind[r] == TENSORS for r in regs) else SCALARS

    def dies(self, reg: str, reads: Sequence[str], kind: int) -> bool:
        """Whether an operation that reads ``reads`` (registers) may write its result, of
        ``kind``, into ``reg``: this is the last read of ``reg``, and it is ours."""
        return self.owned[reg] and self.refs[reg] == reads.count(reg) and self.kind[reg] == kind

    def emit(self, out: str | None, fn: Callable, args: Sequence, text: str) -> None:
        self.steps.append(Step(out, fn, tuple(args), text, self.statement))

    def call(self, name: str, args: Sequence, keywords: Sequence[str] = (), out=None) -> None:
        """Emit ``torch.<name>(*args)``, the last ``len(keywords)`` arguments by keyword."""
        fn = getattr(torch, name)
        if keywords:
            fn = _with_keywords(fn, tuple(keywords))
        slots = [f"{{{i}}}" for i in range(len(args))]
        split = len(args) - len(keywords)
        named = [f"{k}={s}" for k, s in zip(keywords, slots[split:], strict=True)]
        self.emit(out, fn, args, f"torch.{name}({', '.join(slots[:split] + named)})")

    def foreach(self, name: str, args: Sequence, keywords=()) -> str:
        """``torch._foreach_<name>(*args)`` (registers and numbers): in place in ``args[0]``
        when its value dies here, else into a new register."""
        regs = [a for a in args if isinstance(a, str)]
        kind = self.kind_of(regs)
        here = isinstance(args[0], str) and self.dies(args[0], regs, kind)
        for reg in regs:
            self.refs[reg] -= 1
        if here:
            self.call(f"_foreach_{name}_", args, keywords)
            self.refs[args[0]] = 1
            return args[0]
        out = self.new("tmp", kind)
        self.call(f"_foreach_{name}", args, keywords, out=out)
        return out

    def per_tensor(self, prim: Primitive, args: Sequence) -> str:
        """``prim`` tensor by tensor (it has no foreach form): a list comprehension over its
        ``source``. Numbers become float64 scalars on the tensor's device, as in the
        interpreter."""
        lists = [i for i, a in enumerate(args) if isinstance(a, str)]
        kind = SCALARS if prim.reduction else self.kind_of([args[i] for i in lists])
        for i in lists:
            self.refs[args[i]] -= 1
        out = self.new("tmp", kind)
        element_names = dict(zip(lists, ["_a", "_b"], strict=False))
        parts = [
            element_names.get(i, f"torch.full((), {{{i}}}, dtype=torch.float64, device=_a.device)")
            for i in range(len(args))
        ]
        sources = ", ".join(f"{{{i}}}" for i in lists)
        loop = f"_a in {sources}" if len(lists) == 1 else f"_a, _b in zip({sources})"
        text = f"[{prim.source.format(*parts)} for {loop}]"
        self.emit(out, _per_tensor(source_function(prim), lists), args, text)
        return out

    # ----------------------------------------------------------------------- sums of terms

    def materialise(self, value: Linear, hint: str = "tmp") -> str:
        """A register holding ``value`` (its pending read passes on to the register)."""
        if value.plain():
            return value.terms[0].a
        terms = list(value.terms)
        regs = value.registers()
        kind = self.kind_of(regs)
        place = self.in_place_term(terms, regs, kind)
        for reg in regs:
            self.refs[reg] -= 1
        const = value.const
        if place is not None:  # computed in a buffer whose value dies here
            i, out = place
            first = terms.pop(i)
            if first.op:
                other = first.b if out == first.a else first.a
                self.call(f"_foreach_{first.op}_", [out, other])
            self.scale(out, first.num, first.den)
        else:
            first = terms.pop(self.first_term(terms))
            out = self.new(hint, kind)
            coef = coefficient(first.num, first.den)
            if first.op == "" and coef is None and terms:  # a + (the next term): one call
                self.add_term(first.a, terms.pop(0), out=out)
            elif first.op == "" and coef is None:  # a + const: one call
                self.call("_foreach_add", [first.a, const], out=out)
                const = None
            elif first.op == "" and first.num is None:
                self.call("_foreach_div", [first.a, first.den], out=out)
            elif first.op == "":
                self.call("_foreach_mul", [first.a, coef], out=out)
            else:
                self.call(f"_foreach_{first.op}", [first.a, first.b], out=out)
                self.scale(out, first.num, first.den)
        for term in terms:
            self.add_term(out, term)
        if const is not None:
            self.call("_foreach_add_", [out, const])
        self.refs[out] = 1
        return out

    def in_place_term(self, terms: list[Term], regs: list[str], kind: int):
        """``(i, register)``: a term whose register dies here and is read by no other term, so
        that the sum can be computed in it; plain terms first (they may cost no call)."""
        for ops in (("",), ("mul", "div")):
            for i, t in enumerate(terms):
                candidates = (t.a, t.b) if t.op == "mul" else (t.a,)
                for reg in candidates if t.op in ops else ():
                    mine = t.registers().count(reg)
                    if regs.count(reg) == mine and self.dies(reg, regs, kind):
                        return i, reg
        return None

    def first_term(self, terms: list[Term]) -> int:
        """The term that starts a new buffer: a full-sized one, preferably a state slot or a
        temporary (``m * 0.9 + g * 0.1``: torch.optim's order); else the first."""

        def full(t: Term) -> bool:
            return any(self.kind[r] == TENSORS for r in t.registers())

        for test in (lambda t: full(t) and t.op == "" and self.owned[t.a], full):
            for i, t in enumerate(terms):
                if test(t):
                    return i
        return 0

    def scale(self, reg: str, num: Expr | None, den: Expr | None) -> None:
        """``reg *= num / den`` in place (a division when ``num`` is 1)."""
        if num is None and den is not None:
            self.call("_foreach_div_", [reg, den])
        elif num is not None:
            self.call("_foreach_mul_", [reg, coefficient(num, den)])

    def add_term(self, acc: str, term: Term, negate: bool = False, out: str | None = None):
        """``acc += term`` (``-=`` when ``negate``) in place, or ``out = acc + term``."""
        coef = coefficient(term.num, term.den)
        if negate:
            coef = Const(-1.0) if coef is None else number("neg", [coef])
        suffix = "" if out else "_"
        if term.op == "":
            if coef is None:
                self.call(f"_foreach_add{suffix}", [acc, term.a], out=out)
            elif coef == Const(-1.0):
                self.call(f"_foreach_sub{suffix}", [acc, term.a], out=out)
            else:
                self.call(f"_foreach_add{suffix}", [acc, term.a, coef], ["alpha"], out=out)
            return
        name = f"_foreach_addc{term.op}{suffix}"
        if coef is None:
            self.call(name, [acc, term.a, term.b], out=out)
        else:
            self.call(name, [acc, term.a, term.b, coef], ["value"], out=out)

    # ------------------------------------------------------------------------- operations

    def lower(self, expr: Expr) -> Value:
        if isinstance(expr, Var):
            return self.env[expr.name]
        if isinstance(expr, Const):
            return Number(self.named_constants.get(expr.value, expr))
        return self.apply(expr.op, [self.lower(a) for a in expr.args])

    def apply(self, op: str, args: Sequence[Value]) -> Value:
        """Primitive ``op`` of ``args``: on numbers, a number; Python's arithmetic operators on
        sums of terms; else its entry's ``foreach`` form, its ``expansion``, or tensor by
        tensor."""
        if all(isinstance(a, Number) for a in args):
            return Number(number(op, [a.expr for a in args]))
        prim = PRIMITIVES[op]
        if prim.infix in ("+", "-", "*", "/"):
            return self.arithmetic(prim.infix, args)
        if callable(prim.foreach):
            value = prim.foreach(self, *args)
            if value is not None:
                return value
        elif prim.foreach:
            return self.foreach_values(prim.foreach, args, prim.commutative)
        if prim.expansion and not prim.reduction:
            return self.by_expansion(op, args)
        return register(self.per_tensor(prim, [self.value(a) for a in args]))

    def is_number(self, value: Value) -> bool:
        """Whether ``value`` is a number, not a list of tensors."""
        return isinstance(value, Number)

    def value(self, x: Value) -> str | Expr:
        """A call argument: a number, or a register holding the list value."""
        return x.expr if isinstance(x, Number) else self.materialise(x)

    def foreach_values(self, name: str, args: Sequence[Value], commutative: bool = False) -> Linear:
        """``torch._foreach_<name>(*args)``; a commutative operation takes the list (or the
        buffer that can be overwritten) first."""
        values = [self.value(a) for a in args]
        regs = [x for x in values if isinstance(x, str)]
        kind = self.kind_of(regs)
        if commutative and (
            not isinstance(values[0], str)
            or (
                isinstance(values[1], str)
                and self.dies(values[1], regs, kind)
                and not self.dies(values[0], regs, kind)
            )
        ):
            values.reverse()
        return register(self.foreach(name, values))

    def by_expansion(self, op: str, args: Sequence[Value]) -> Value:
        """``op`` through its ``expansion``. An argument read more than once is held for its
        reads; one that a product multiplies by itself (``x * x``) is first computed into a
        buffer, once (a factor that is a sum would be computed for each side)."""
        params, expr = expansion(op)
        reads = Counter(node.name for node in walk(expr) if isinstance(node, Var))
        squared = {
            name
            for node in walk(expr)
            if isinstance(node, Call) and node.op == "mul"
            for name in names_used(node.args[0]) & names_used(node.args[1])
        }
        env = {}
        for param, value in zip(params, args, strict=True):
            if param in squared and isinstance(value, Linear):
                value = register(self.materialise(value))
            self.hold(value, reads[param] - 1)
            env[param] = value
        return substitute(expr, env, Number, self.apply)

    def arithmetic(self, symbol: str, args: Sequence[Value]) -> Value:
        """Python's ``+``, ``-`` (binary or unary), ``*`` or ``/`` on sums of terms."""
        if symbol == "+":
            return add(*args)
        if symbol == "-" and len(args) == 1:
            return scale(args[0], Const(-1.0))
        if symbol == "-":  # a + (-b): the same in IEEE arithmetic
            return add(args[0], self.apply("neg", [args[1]]))
        return self._mul(*args) if symbol == "*" else self._div(*args)

    def _mul(self, a: Value, b: Value) -> Value:
        if isinstance(a, Number):
            a, b = b, a
        if isinstance(b, Number):
            return scale(a, b.expr)
        x, y = self.single(a), self.single(b)
        return Linear((Term(times(x.num, y.num), times(x.den, y.den), x.a, "mul", y.a),))

    def _div(self, a: Value, b: Value) -> Value:
        if isinstance(b, Number):
            return scale(a, den=b.expr)
        if isinstance(a, Number):  # c / x = c * (1 / x)
            return self._mul(a, register(self.foreach("reciprocal", [self.materialise(b)])))
        x, y = self.single(a), self.single(b)
        return Linear((Term(times(x.num, y.den), times(x.den, y.num), x.a, "div", y.a),))

    def single(self, value: Linear, hint: str = "tmp") -> Term:
        """``value`` as one scaled register (``c * a``); a product or quotient is computed
        without its number, which stays a factor for the reader to fold."""
        if value.scaled_register():
            return value.terms[0]
        if value.const is None and len(value.terms) == 1:
            term = value.terms[0]
            bare = Linear((term._replace(num=None, den=None),))
            return Term(term.num, term.den, self.materialise(bare, hint))
        return Term(None, None, self.materialise(value, hint))


# ------------------------------------------------------------------- what the executor calls


def _identity(x):
    return x


def _with_keywords(fn: Callable, keywords: tuple[str, ...]) -> Callable:
    n = len(keywords)

    def call(*values):
        return fn(*values[:-n], **dict(zip(keywords, values[-n:], strict=True)))

    return call


def _full_like(w: list, value: float) -> list:
    return [torch.full_like(x, value) for x in w]


def _clone(xs: list) -> list:
    return [x.clone(memory_format=torch.preserve_format) for x in xs]


def _expand(w: list, scalars: list) -> list:
    return [torch.empty_like(x).copy_(s) for x, s in zip(w, scalars, strict=True)]


def _per_tensor(one: Callable, lists: list[int]) -> Callable:
    """``one`` applied tensor by tensor to the list arguments at positions ``lists``; numbers
    become float64 scalars on the first list's device (as the source writes)."""

    def call(*values):
        out = []
        for column in zip(*[values[i] for i in lists], strict=True):
            device = column[0].device
            args = [
                v if i in lists else torch.full((), v, dtype=torch.float64, device=device)
                for i, v in enumerate(values)
            ]
            for i, x in zip(lists, column, strict=True):
                args[i] = x
            out.append(one(*args))
        return out

    return call
