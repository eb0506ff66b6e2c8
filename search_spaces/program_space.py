"""The program space: random programs, mutations (as in the Lion paper's search) and rewrites.

Everything here is a pure function over the IR (:mod:`evodisc.program`) that takes its randomness
from a :class:`random.Random` (or a NumPy ``Generator``, which seeds one) and returns a new,
well-formed :class:`~evodisc.program.Program`: every name is defined before use, every call has its
primitive's arity, and there is one return value per state slot. The program *may* still be a poor
optimizer (ignore ``g``, overflow); the search filters those by analysis and hashing.

Mutations: :func:`insert_statement`, :func:`delete_statement`, :func:`change_argument`,
:func:`change_operator`, :func:`perturb_constant`; :func:`mutate` picks one at random.
:func:`equivalent_rewrite` changes the spelling of a program but not what it computes (used to
test and measure functional hashing).
"""

from __future__ import annotations

import keyword
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from evodisc.primitives import PRIMITIVES
from evodisc.program import RESERVED_INPUTS, Assign, Call, Const, Expr, Program, Var, names_used

Rng = random.Random | np.random.Generator
Mutation = Callable[[Program, random.Random, "ProgramSpace"], Program]

#: Constants a random argument is drawn from (besides log-uniform random ones).
DEFAULT_CONSTANTS = (0.5, 0.9, 0.99, 0.999, 1.0, 2.0, 1e-8, 1e-3, 0.01, 0.1)


@dataclass(frozen=True)
class ProgramSpace:
    """What random programs and mutations may contain."""

    inputs: tuple[str, ...] = RESERVED_INPUTS
    state: tuple[str, ...] = ("m", "v")
    ops: tuple[str, ...] = field(default_factory=lambda: tuple(PRIMITIVES))
    min_statements: int = 5
    max_statements: int = 15
    constant_probability: float = 0.2  # chance that a random argument is a constant
    constants: tuple[float, ...] = DEFAULT_CONSTANTS
    update_name: str = "update"

    def __post_init__(self) -> None:
        unknown = [op for op in self.ops if op not in PRIMITIVES]
        if unknown:
            raise ValueError(f"unknown primitive(s) in the program space: {', '.join(unknown)}")
        if not self.ops or not self.constants:
            raise ValueError("the program space needs at least one primitive and one constant")
        not_reserved = [name for name in self.inputs if name not in RESERVED_INPUTS]
        if not_reserved:
            raise ValueError(f"inputs must be among {RESERVED_INPUTS}, not {not_reserved}")
        names = [*self.inputs, *self.state, self.update_name]
        for name in names:
            if not name.isidentifier() or keyword.iskeyword(name) or name in PRIMITIVES:
                raise ValueError(f"{name!r} cannot name a program variable")
        if len(set(names)) != len(names) or set(self.state) & set(RESERVED_INPUTS):
            raise ValueError("inputs, state slots and the update name must be distinct names")
        if not 0 <= self.min_statements <= self.max_statements:
            raise ValueError("need 0 <= min_statements <= max_statements")


DEFAULT_SPACE = ProgramSpace()


def as_random(rng: Rng) -> random.Random:
    """``rng`` itself, or a :class:`random.Random` seeded from a NumPy ``Generator``."""
    if isinstance(rng, random.Random):
        return rng
    return random.Random(int(rng.integers(2**63)))


# ------------------------------------------------------------------------------------ helpers


def visible_names(program: Program, position: int) -> list[str]:
    """Names defined before body statement ``position`` (``len(body)``: at the return)."""
    names = list(program.params)
    for statement in program.body[:position]:
        if statement.target not in names:
            names.append(statement.target)
    return names


def fresh_name(program: Program, prefix: str = "h") -> str:
    """A name not used anywhere in ``program`` and not a primitive."""
    used = set(program.params) | {s.target for s in program.body}
    k = len(used)
    while f"{prefix}{k}" in used or f"{prefix}{k}" in PRIMITIVES:
        k += 1
    return f"{prefix}{k}"


def random_constant(rng: random.Random, space: ProgramSpace) -> Const:
    """A constant from the space's list, or (one time in four) log-uniform in [1e-4, 10]."""
    if rng.random() < 0.75:
        return Const(rng.choice(space.constants))
    return Const(_round_significant(10.0 ** rng.uniform(-4.0, 1.0), 3))


def random_leaf(rng: random.Random, space: ProgramSpace, names: list[str]) -> Expr:
    """A variable from ``names`` or a constant."""
    if rng.random() < space.constant_probability:
        return random_constant(rng, space)
    return Var(rng.choice(names))


def random_call(rng: random.Random, space: ProgramSpace, names: list[str]) -> Call:
    """A random primitive over random leaves, at least one of them a variable."""
    op = rng.choice(space.ops)
    args = [random_leaf(rng, space, names) for _ in range(PRIMITIVES[op].arity)]
    if all(isinstance(a, Const) for a in args):
        args[rng.randrange(len(args))] = Var(rng.choice(names))
    return make_call(op, tuple(args))


def make_call(op: str, args: tuple[Expr, ...]) -> Expr:
    """``Call(op, args)``, except that ``-constant`` is the constant itself (as the parser reads
    it), so programs built here print and parse back to the same IR."""
    if op == "neg" and isinstance(args[0], Const):
        return Const(-args[0].value + 0.0)
    return Call(op, args)


def _round_significant(value: float, digits: int) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - math.floor(math.log10(abs(value))))


# Sites: an expression is addressed by (where, index, path): where is "body" or "return",
# index the statement / return value, path the argument indices from the root.
Site = tuple[str, int, tuple[int, ...]]


def _roots(program: Program) -> Iterator[tuple[str, int, Expr]]:
    for i, statement in enumerate(program.body):
        yield "body", i, statement.expr
    for j, expr in enumerate(program.returns):
        yield "return", j, expr


def _nodes(expr: Expr, path: tuple[int, ...] = ()) -> Iterator[tuple[tuple[int, ...], Expr]]:
    yield path, expr
    if isinstance(expr, Call):
        for k, arg in enumerate(expr.args):
            yield from _nodes(arg, (*path, k))


def sites(program: Program, accept: Callable[[tuple[int, ...], Expr], bool]) -> list[Site]:
    """Every node position whose (path, node) ``accept`` returns true for."""
    return [
        (where, index, path)
        for where, index, root in _roots(program)
        for path, node in _nodes(root)
        if accept(path, node)
    ]


def node_at(program: Program, site: Site) -> Expr:
    """The expression at ``site``."""
    where, index, path = site
    node = program.body[index].expr if where == "body" else program.returns[index]
    for k in path:
        node = node.args[k]
    return node


def _replace_in(expr: Expr, path: tuple[int, ...], new: Expr) -> Expr:
    if not path:
        return new
    args = list(expr.args)
    args[path[0]] = _replace_in(args[path[0]], path[1:], new)
    return make_call(expr.op, tuple(args))


def replace_at(program: Program, site: Site, new: Expr) -> Program:
    """``program`` with the expression at ``site`` replaced by ``new``."""
    where, index, path = site
    if where == "body":
        body = list(program.body)
        body[index] = Assign(body[index].target, _replace_in(body[index].expr, path, new))
        return Program(program.params, tuple(body), program.returns)
    returns = list(program.returns)
    returns[index] = _replace_in(returns[index], path, new)
    return Program(program.params, program.body, tuple(returns))


def _position(program: Program, site: Site) -> int:
    """Body index whose visible names apply to ``site``."""
    return site[1] if site[0] == "body" else len(program.body)


def _substitute(expr: Expr, fix: Callable[[str], str]) -> Expr:
    if isinstance(expr, Var):
        return Var(fix(expr.name))
    if isinstance(expr, Call):
        return Call(expr.op, tuple(_substitute(a, fix) for a in expr.args))
    return expr


def repair(program: Program, rng: random.Random) -> Program:
    """Replace every use of a name not yet defined by a random defined name."""
    defined = list(program.params)

    def fix(name: str) -> str:
        return name if name in defined else rng.choice(defined)

    body = []
    for statement in program.body:
        body.append(Assign(statement.target, _substitute(statement.expr, fix)))
        if statement.target not in defined:
            defined.append(statement.target)
    returns = tuple(_substitute(e, fix) for e in program.returns)
    return Program(program.params, tuple(body), returns)


# ------------------------------------------------------------------------------ random programs


def _random_target(
    rng: random.Random, space: ProgramSpace, program: Program, names: list[str]
) -> str:
    """A state slot, an already defined non-input name, or a fresh temporary."""
    choice = rng.random()
    state = [s for s in program.state]
    assigned = [n for n in names if n not in program.params]
    if choice < 1 / 3 and state:
        return rng.choice(state)
    if choice < 2 / 3 and assigned:
        return rng.choice(assigned)
    return fresh_name(program)


def random_program(rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """A random program of ``min_statements``…``max_statements`` statements; the last one assigns
    the update, and the state slots are returned as they stand at the end."""
    rng = as_random(rng)
    params = tuple(space.inputs) + tuple(space.state)
    returns = (Var(space.update_name), *(Var(s) for s in space.state))
    program = Program(params, (), returns)
    count = max(1, rng.randint(space.min_statements, space.max_statements))
    body: list[Assign] = []
    for i in range(count):
        program = Program(params, tuple(body), returns)
        names = visible_names(program, len(body))
        is_last = i == count - 1
        target = space.update_name if is_last else _random_target(rng, space, program, names)
        body.append(Assign(target, random_call(rng, space, names)))
    return Program(params, tuple(body), returns)


# ----------------------------------------------------------------------------------- mutations


def insert_statement(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Insert ``target = op(args…)`` with random operator and arguments at a random place."""
    rng = as_random(rng)
    position = rng.randint(0, len(program.body))
    names = visible_names(program, position)
    target = _random_target(rng, space, program, names)
    statement = Assign(target, random_call(rng, space, names))
    body = program.body[:position] + (statement,) + program.body[position:]
    return Program(program.params, body, program.returns)


def delete_statement(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Delete a random statement; later uses of a name it alone defined get another name."""
    rng = as_random(rng)
    if not program.body:
        return insert_statement(program, rng, space)
    position = rng.randrange(len(program.body))
    body = program.body[:position] + program.body[position + 1 :]
    return repair(Program(program.params, body, program.returns), rng)


def change_argument(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Replace an argument (or a bare returned variable) by a random variable or constant."""
    rng = as_random(rng)
    candidates = sites(program, lambda path, node: bool(path) or not isinstance(node, Call))
    if not candidates:
        return insert_statement(program, rng, space)
    site = rng.choice(candidates)
    names = visible_names(program, _position(program, site))
    old = node_at(program, site)
    for _ in range(10):
        new = random_leaf(rng, space, names)
        if new != old:
            break
    return replace_at(program, site, new)


def change_operator(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Replace a random call's primitive by another; arguments are kept, cut or added."""
    rng = as_random(rng)
    candidates = sites(program, lambda path, node: isinstance(node, Call))
    others_exist = len(set(space.ops)) > 1
    if not candidates or not others_exist:
        return change_argument(program, rng, space)
    site = rng.choice(candidates)
    old = node_at(program, site)
    op = rng.choice([o for o in space.ops if o != old.op])
    names = visible_names(program, _position(program, site))
    arity = PRIMITIVES[op].arity
    args = list(old.args[:arity])
    args += [random_leaf(rng, space, names) for _ in range(arity - len(args))]
    return replace_at(program, site, make_call(op, tuple(args)))


def perturb_constant(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Scale a random constant by a factor in [0.5, 2] (3 significant digits kept)."""
    rng = as_random(rng)
    candidates = sites(program, lambda path, node: isinstance(node, Const))
    if not candidates:
        return change_argument(program, rng, space)
    site = rng.choice(candidates)
    old = node_at(program, site).value
    new = old
    for _ in range(10):
        if old == 0:
            new = random_constant(rng, space).value
        else:
            new = _round_significant(old * 2.0 ** rng.uniform(-1.0, 1.0), 3)
        if new != old and math.isfinite(new):
            break
    return replace_at(program, site, Const(new + 0.0))


MUTATIONS: dict[str, Mutation] = {
    "insert_statement": insert_statement,
    "delete_statement": delete_statement,
    "change_argument": change_argument,
    "change_operator": change_operator,
    "perturb_constant": perturb_constant,
}


def mutate(program: Program, rng: Rng, space: ProgramSpace = DEFAULT_SPACE) -> Program:
    """Apply one mutation chosen uniformly from :data:`MUTATIONS`."""
    rng = as_random(rng)
    return rng.choice(list(MUTATIONS.values()))(program, rng, space)


# --------------------------------------------------------------------- equivalence rewrites


def _rename(program: Program, rng: random.Random) -> Program:
    """Rename a state slot or an assigned name (never a reserved input) consistently."""
    candidates = [p for p in program.state] + [
        s.target for s in program.body if s.target not in program.params
    ]
    if not candidates:
        return program
    old = rng.choice(sorted(set(candidates)))
    new = fresh_name(program, prefix="r")

    def fix(name: str) -> str:
        return new if name == old else name

    params = tuple(fix(p) for p in program.params)
    body = tuple(Assign(fix(s.target), _substitute(s.expr, fix)) for s in program.body)
    returns = tuple(_substitute(e, fix) for e in program.returns)
    return Program(params, body, returns)


def _swap_independent(program: Program, rng: random.Random) -> Program:
    """Swap two adjacent statements that neither read nor write each other's target."""
    body = list(program.body)
    pairs = [
        i
        for i in range(len(body) - 1)
        if body[i].target != body[i + 1].target
        and body[i].target not in names_used(body[i + 1].expr)
        and body[i + 1].target not in names_used(body[i].expr)
    ]
    if not pairs:
        return program
    i = rng.choice(pairs)
    body[i], body[i + 1] = body[i + 1], body[i]
    return Program(program.params, tuple(body), program.returns)


def _add_dead_code(program: Program, rng: random.Random) -> Program:
    """Insert a statement whose value nobody reads."""
    position = rng.randint(0, len(program.body))
    names = visible_names(program, position)
    statement = Assign(fresh_name(program, prefix="dead"), random_call(rng, DEFAULT_SPACE, names))
    body = program.body[:position] + (statement,) + program.body[position:]
    return Program(program.params, body, program.returns)


def _rewrite_node(
    program: Program,
    rng: random.Random,
    accept: Callable[[Expr], bool],
    rewrite: Callable[[Expr], Expr],
) -> Program:
    candidates = sites(program, lambda path, node: accept(node))
    if not candidates:
        return program
    site = rng.choice(candidates)
    return replace_at(program, site, rewrite(node_at(program, site)))


def _is_call(*ops: str) -> Callable[[Expr], bool]:
    return lambda node: isinstance(node, Call) and node.op in ops


def _not_const(node: Expr) -> bool:
    return not isinstance(node, Const)


def _c(value: float) -> Const:
    return Const(value)


def _call(op: str, *args: Expr) -> Expr:
    return make_call(op, args)


# Node rewrites that leave every float64 result bit-for-bit unchanged.
_EXACT_NODE_REWRITES: list[tuple[Callable[[Expr], bool], Callable[[Expr], Expr]]] = [
    # a ∘ b → b ∘ a for commutative primitives
    (
        lambda n: isinstance(n, Call) and PRIMITIVES[n.op].commutative,
        lambda n: Call(n.op, n.args[::-1]),
    ),
    # e → 0.5 * (e + e)   (x + x is exactly 2x)
    (_not_const, lambda n: _call("mul", _c(0.5), _call("add", n, n))),
    # a - b → a + (-b)
    (_is_call("sub"), lambda n: _call("add", n.args[0], _call("neg", n.args[1]))),
    # e → -(-e)
    (_not_const, lambda n: _call("neg", _call("neg", n))),
    # square(e) → e * e
    (_is_call("square"), lambda n: _call("mul", n.args[0], n.args[0])),
    # e → e * 1
    (_not_const, lambda n: _call("mul", n, _c(1.0))),
]

# Rewrites that are equal in exact arithmetic but may differ in the last bits.
_INEXACT_NODE_REWRITES: list[tuple[Callable[[Expr], bool], Callable[[Expr], Expr]]] = [
    # a / b → a * (1 / b)
    (_is_call("div"), lambda n: _call("mul", n.args[0], _call("div", _c(1.0), n.args[1]))),
    # interp(a, b, β) → a + β * (b - a)
    (
        _is_call("interp"),
        lambda n: _call("add", n.args[0], _call("mul", n.args[2], _call("sub", *n.args[1::-1]))),
    ),
    # interp(a, b, β) → (1 - β) * a + β * b
    (
        _is_call("interp"),
        lambda n: _call(
            "add",
            _call("mul", _call("sub", _c(1.0), n.args[2]), n.args[0]),
            _call("mul", n.args[2], n.args[1]),
        ),
    ),
    # (a + b) + c → a + (b + c)
    (
        lambda n: _is_call("add")(n) and _is_call("add")(n.args[0]),
        lambda n: _call("add", n.args[0].args[0], _call("add", n.args[0].args[1], n.args[1])),
    ),
    # a * (b + c) → a * b + a * c
    (
        lambda n: _is_call("mul")(n) and _is_call("add")(n.args[1]),
        lambda n: _call(
            "add",
            _call("mul", n.args[0], n.args[1].args[0]),
            _call("mul", n.args[0], n.args[1].args[1]),
        ),
    ),
    # sqrt(e) → e ** 0.5
    (_is_call("sqrt"), lambda n: _call("pow", n.args[0], _c(0.5))),
]


def equivalent_rewrite(program: Program, rng: Rng, exact: bool = True) -> Program:
    """One random rewrite that keeps what the program computes.

    ``exact=True`` rewrites (renaming, reordering independent statements, dead code,
    commutativity, ``x + x`` = ``2x``, ``a - b`` = ``a + (-b)``, …) keep every float64 result
    bit-for-bit; ``exact=False`` also allows rewrites that are equal in exact arithmetic only
    (``a / b`` = ``a * (1 / b)``, expanded ``interp``, associativity, distributivity).
    """
    rng = as_random(rng)
    node_rewrites = _EXACT_NODE_REWRITES + ([] if exact else _INEXACT_NODE_REWRITES)
    kinds: list[Callable[[], Program]] = [
        lambda: _rename(program, rng),
        lambda: _swap_independent(program, rng),
        lambda: _add_dead_code(program, rng),
    ]
    kinds += [lambda a=a, r=r: _rewrite_node(program, rng, a, r) for a, r in node_rewrites]
    return rng.choice(kinds)()
