"""Write a program's outputs back as statements: common sub-expressions, names, order.

:func:`emit` takes the update and the new state values as expression trees over the parameters
(after :func:`evodisc.edit.inline`, or converted back from SymPy) and returns a program that
computes each shared sub-expression once, in the style of the zoo::

    def train(g, lr, m):
        update = sign(interp(g, m, 0.9))
        m = interp(g, m, 0.99)
        return lr * update, m

* a state slot's new value is assigned to the slot's own name, a shared sub-expression to a
  temporary (the name the original program gave it when there was one, else ``x1``, ``x2``, …);
* the learning rate and constant factors of the update move to the return (``lr * update``);
* statements are ordered so that every reader of a slot's (or input's) old value runs before
  the statement that overwrites it; when no order allows that, the value gets a fresh name.

The result computes the same values with the same operations (up to float reassociation of the
``lr`` factor); callers still verify it by its functional hash.
"""

from __future__ import annotations

from collections.abc import Sequence

from evodisc.edit import substitute
from evodisc.primitives import PRIMITIVES
from evodisc.program import RESERVED_INPUTS, Assign, Call, Const, Expr, Program, Var

_PLACEHOLDER = "\0"  # prefix of a statement's name before names are final


class _Dag:
    """Structural interning: equal sub-trees get one node id (children before parents)."""

    def __init__(self) -> None:
        self.ids: dict[tuple, int] = {}
        self.keys: list[tuple] = []
        self.memo: dict[int, tuple[Expr, int]] = {}

    def add(self, expr: Expr) -> int:
        seen = self.memo.get(id(expr))
        if seen is not None:
            return seen[1]
        if isinstance(expr, Call):
            key: tuple = (expr.op, tuple(self.add(a) for a in expr.args))
        elif isinstance(expr, Var):
            key = ("", expr.name)
        else:
            key = ("", expr.value)
        node = self.ids.get(key)
        if node is None:
            node = self.ids[key] = len(self.keys)
            self.keys.append(key)
        self.memo[id(expr)] = (expr, node)  # keep expr alive: its id must not be reused
        return node

    def is_call(self, node: int) -> bool:
        return self.keys[node][0] != ""


def operations(program: Program) -> int:
    """Primitive calls in the program as written (statements and return)."""
    exprs = [s.expr for s in program.body] + list(program.returns)
    return sum(_count(e) for e in exprs)


def _count(expr: Expr) -> int:
    return 1 + sum(_count(a) for a in expr.args) if isinstance(expr, Call) else 0


def named_values(program: Program) -> list[tuple[Expr, str]]:
    """Each statement's value as a tree over the parameters, with the name it was given."""
    env: dict[str, Expr] = {p: Var(p) for p in program.params}
    named = []
    for statement in program.body:
        env[statement.target] = substitute(statement.expr, env.__getitem__)
        named.append((env[statement.target], statement.target))
    return named


def split_scale(update: Expr, params: Sequence[str]) -> tuple[Expr | None, Expr | None]:
    """``(scale, rest)`` with ``update = scale · rest``, where ``scale`` is ``lr`` times the
    constant factors of the top-level product (``None`` when ``lr`` is not such a factor)."""
    if "lr" not in params:
        return None, update
    if isinstance(update, Call) and update.op == "div":
        scale, rest = split_scale(update.args[0], params)
        if scale is None:
            return None, update
        return scale, Call("div", (rest if rest is not None else Const(1.0), update.args[1]))
    factors = _factors(update)
    if Var("lr") not in factors:
        return None, update
    constants = [f for f in factors if isinstance(f, Const)]
    others = [f for f in factors if not isinstance(f, Const) and f != Var("lr")]
    lrs = [f for f in factors if f == Var("lr")]
    return _product([*constants, *lrs]), _product(others)


def _factors(expr: Expr) -> list[Expr]:
    if isinstance(expr, Call) and expr.op == "mul":
        return _factors(expr.args[0]) + _factors(expr.args[1])
    return [expr]


def _product(factors: list[Expr]) -> Expr | None:
    result = None
    for factor in factors:
        result = factor if result is None else Call("mul", (result, factor))
    return result


def emit(
    params: Sequence[str],
    outputs: Sequence[Expr],
    names: Sequence[tuple[Expr, str]] = (),
) -> Program:
    """A program computing ``outputs`` (the update, then one new value per state slot, as
    trees over ``params``); ``names`` proposes names for sub-expressions (first claim wins)."""
    params = tuple(params)
    state = [p for p in params if p not in RESERVED_INPUTS]
    scale, rest = split_scale(outputs[0], params)
    dag = _Dag()
    rest_node = dag.add(rest) if rest is not None else None
    state_nodes = [dag.add(e) for e in outputs[1:]]
    reachable = len(dag.keys)
    proposed: dict[int, str] = {}
    for expr, name in names:
        node = dag.add(expr)
        if node < reachable and dag.is_call(node):
            proposed.setdefault(node, name)

    refs = [0] * reachable
    for key in dag.keys[:reachable]:
        if key[0] != "":
            for child in key[1]:
                refs[child] += 1
    for root in [rest_node, *state_nodes]:
        if root is not None:
            refs[root] += 1

    # Which nodes get a statement, and the names each asks for (the first free one wins).
    wanted: dict[int, list[str]] = {}
    for slot, node in zip(state, state_nodes, strict=True):
        if dag.is_call(node) and node not in wanted:
            wanted[node] = [slot]
    if rest_node is not None and dag.is_call(rest_node) and rest_node not in wanted:
        deep = any(dag.is_call(c) for c in dag.keys[rest_node][1])
        if deep or refs[rest_node] > 1:
            wanted[rest_node] = [proposed.get(rest_node, ""), "update"]
    for node in range(reachable):
        if dag.is_call(node) and refs[node] > 1 and node not in wanted:
            wanted[node] = [proposed.get(node, "")]
    statements: dict[int, str] = {}
    for node, choices in wanted.items():
        free = [
            name
            for name in choices
            if name
            and name not in statements.values()
            and name not in PRIMITIVES
            and (name not in state or state_nodes[state.index(name)] == node)
        ]
        statements[node] = free[0] if free else ""

    def group(node: int) -> int:
        if node in state_nodes:
            return 2
        return 1 if node == rest_node else 0

    exprs = {node: _rebuild(dag, node, statements) for node in statements}
    state_returns = [
        Var(_PLACEHOLDER + str(n)) if n in statements else _rebuild(dag, n, statements)
        for n in state_nodes
    ]
    if rest is None:
        update = scale
    elif rest_node in statements:
        update = Var(_PLACEHOLDER + str(rest_node))
    else:
        update = _rebuild(dag, rest_node, statements)
    if scale is not None and rest is not None:
        update = Call("mul", (scale, update))
    returns = [update, *state_returns]

    order = _schedule(exprs, statements, returns, params, group)
    fresh = _fresh_names(params, statements)
    final = {n: statements[n] or next(fresh) for n in order}

    def resolve(name: str) -> Expr | str:
        return final[int(name[1:])] if name.startswith(_PLACEHOLDER) else name

    body = tuple(Assign(final[n], substitute(exprs[n], resolve)) for n in order)
    return Program(params, body, tuple(substitute(e, resolve) for e in returns))


def _rebuild(dag: _Dag, node: int, statements: dict[int, str], top: bool = True) -> Expr:
    key = dag.keys[node]
    if key[0] == "":
        return Var(key[1]) if isinstance(key[1], str) else Const(key[1])
    if not top and node in statements:
        return Var(_PLACEHOLDER + str(node))
    return Call(key[0], tuple(_rebuild(dag, c, statements, top=False) for c in key[1]))


def _reads(expr: Expr) -> tuple[set[str], set[int]]:
    """``(parameters read, statements read)`` by ``expr``."""
    params, nodes = set(), set()
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, Var):
            if e.name.startswith(_PLACEHOLDER):
                nodes.add(int(e.name[1:]))
            else:
                params.add(e.name)
        elif isinstance(e, Call):
            stack.extend(e.args)
    return params, nodes


def _schedule(exprs, statements, returns, params, group) -> list[int]:
    """An order of the statements in which every reader of a parameter's old value runs
    before the statement that overwrites it; a statement that cannot be placed so loses its
    name (its ``statements`` entry becomes ``""``: a fresh temporary)."""
    reads = {n: _reads(e) for n, e in exprs.items()}
    returned = set().union(*(_reads(e)[0] for e in returns))
    while True:
        writers = {name: n for n, name in statements.items() if name in params}
        clash = [n for name, n in writers.items() if name in returned]
        if clash:
            statements[clash[0]] = ""
            continue
        after: dict[int, set[int]] = {n: set(reads[n][1]) for n in exprs}
        for name, writer in writers.items():
            for n in exprs:
                if n != writer and name in reads[n][0]:
                    after[writer].add(n)
        order = _topological(after, key=lambda n: (group(n), n))
        if order is not None:
            return order
        victim = max(writers.values(), key=lambda n: (group(n), n))
        statements[victim] = ""


def _topological(after: dict[int, set[int]], key) -> list[int] | None:
    """Kahn's algorithm, smallest ``key`` first among the ready; ``None`` on a cycle."""
    pending = {n: set(deps) for n, deps in after.items()}
    order: list[int] = []
    while pending:
        ready = [n for n, deps in pending.items() if not deps]
        if not ready:
            return None
        chosen = min(ready, key=key)
        order.append(chosen)
        del pending[chosen]
        for deps in pending.values():
            deps.discard(chosen)
    return order


def _fresh_names(params, statements):
    used = set(params) | set(statements.values())
    k = 0
    while True:
        k += 1
        name = f"x{k}"
        if name not in used and name not in PRIMITIVES:
            yield name
