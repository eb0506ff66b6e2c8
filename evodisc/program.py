"""The program IR, its text format (parsed with :mod:`ast`, never executed) and its JSON form.

A program is a straight-line list of assignments whose right-hand sides are expression trees over
primitives (binary operators are the primitives ``add``, ``sub``, ``mul``, ``div``, ``pow`` and
``neg``). Text → IR → text → IR is exact: :func:`format_program` prints with the fewest parentheses
that parse back to the same tree.
"""

from __future__ import annotations

import ast
import json
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from evodisc import primitives
from evodisc.files import FileReadError, read_text

#: Inputs with a fixed meaning; every other parameter of ``train`` is a state slot: the weight
#: ``w`` and the gradient ``g`` (tensors), the learning rate ``lr``, the 1-based step ``t`` and
#: the run's horizon ``T`` (its total number of optimizer steps, so ``1 <= t <= T``).
RESERVED_INPUTS = ("w", "g", "lr", "t", "T")
#: The reserved inputs that are numbers (one per run), not tensors shaped like ``w``.
SCALAR_INPUTS = ("lr", "t", "T")

#: How deeply an expression may nest (its tree's height: ``g`` is 1, ``sign(g)`` 2, a sum of
#: 600 terms 600). The parser (and so every path from text or JSON) rejects deeper expressions,
#: so that nothing downstream — printer, interpreter, hash, export — recurses past it.
MAX_DEPTH = 200

#: The largest program file :func:`load_program` reads.
MAX_FILE_BYTES = 1 << 20


class ProgramError(ValueError):
    """Malformed program text, reported as ``file:line: reason``."""

    def __init__(self, reason: str, line: int | None = None, filename: str = "<program>"):
        self.reason = reason
        self.line = line
        self.filename = filename
        where = f"{filename}:{line}" if line is not None else filename
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Var:
    """A reference to a named value."""

    name: str


@dataclass(frozen=True)
class Const:
    """A finite numeric constant."""

    value: float


@dataclass(frozen=True)
class Call:
    """A primitive applied to argument expressions."""

    op: str
    args: tuple[Expr, ...]


Expr = Var | Const | Call


@dataclass(frozen=True)
class Assign:
    """``target = expr``."""

    target: str
    expr: Expr


@dataclass(frozen=True)
class Program:
    """An update rule: ``def train(params…): body…; return update, new_state…``."""

    params: tuple[str, ...]
    body: tuple[Assign, ...]
    returns: tuple[Expr, ...]

    @property
    def state(self) -> tuple[str, ...]:
        """The state slots, in parameter order (also the order of ``returns[1:]``)."""
        return tuple(p for p in self.params if p not in RESERVED_INPUTS)

    @property
    def update(self) -> Expr:
        """The update expression ``u`` (applied as ``w ← w − u``)."""
        return self.returns[0]

    def __str__(self) -> str:
        return format_program(self)


# --------------------------------------------------------------------------- expression helpers


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of ``expr``, parents before children."""
    yield expr
    if isinstance(expr, Call):
        for arg in expr.args:
            yield from walk(arg)


def names_used(expr: Expr) -> set[str]:
    """The variable names ``expr`` reads."""
    return {node.name for node in walk(expr) if isinstance(node, Var)}


def _too_deep(depth: int | None) -> str:
    levels = f"{depth} levels" if depth is not None else f"more than {MAX_DEPTH} levels"
    return f"expression nested too deeply ({levels}; the limit is {MAX_DEPTH})"


# --------------------------------------------------------------------------------------- parser


def parse_program(text: str, filename: str = "<program>") -> Program:
    """Parse program text into a validated :class:`Program`; raise :class:`ProgramError`."""
    try:
        return _Parser(filename).parse(text)
    except RecursionError:  # Python's own parser gave up: find the line, iteratively
        raise ProgramError(_too_deep(None), _busiest_line(text), filename) from None
    except MemoryError:
        raise ProgramError("the program is too large to parse", filename=filename) from None


def _busiest_line(text: str) -> int | None:
    """The first line of the logical line with the most operators (where Python's parser ran out
    of recursion), found by tokenising (which does not recurse)."""
    import io
    import tokenize

    best, best_line, count, start = -1, None, 0, None
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if start is None:
                start = token.start[0]
            if token.type == tokenize.OP:
                count += 1
            if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                if count > best:
                    best, best_line = count, start
                count, start = 0, None
    except (tokenize.TokenError, SyntaxError):
        pass
    return best_line


def load_program(path: str | Path) -> Program:
    """Read and parse a program file (``.py`` text or canonical ``.json``): a regular file of at
    most :data:`MAX_FILE_BYTES` (a FIFO or a device is refused, not read)."""
    path = Path(path)
    try:
        text = read_text(path, MAX_FILE_BYTES)
    except FileReadError as exc:
        raise ProgramError(f"cannot read file ({exc.reason})", filename=str(path)) from None
    if path.suffix == ".json":
        return program_from_json(text, filename=str(path))
    return parse_program(text, filename=str(path))


_UNSUPPORTED_STATEMENTS = {
    ast.Import: "imports are not allowed",
    ast.ImportFrom: "imports are not allowed",
    ast.For: "loops are not allowed; a program is straight-line code",
    ast.While: "loops are not allowed; a program is straight-line code",
    ast.If: "if statements are not allowed; a program is straight-line code",
    ast.With: "with statements are not allowed",
    ast.Try: "try statements are not allowed",
    ast.FunctionDef: "nested functions are not allowed",
    ast.AsyncFunctionDef: "nested functions are not allowed",
    ast.AsyncFor: "loops are not allowed; a program is straight-line code",
    ast.AsyncWith: "with statements are not allowed",
    ast.Match: "match statements are not allowed; a program is straight-line code",
    ast.Raise: "raise is not allowed",
    ast.Assert: "assert is not allowed",
    ast.Pass: "pass is not allowed",
    ast.ClassDef: "classes are not allowed",
    ast.Delete: "del is not allowed",
    ast.Global: "global is not allowed",
    ast.Nonlocal: "nonlocal is not allowed",
}

_UNSUPPORTED_EXPRESSIONS = {
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "indexing is not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "boolean operators are not allowed",
    ast.IfExp: "conditional expressions are not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.List: "lists are not allowed",
    ast.Dict: "dicts are not allowed",
    ast.Tuple: "tuples are only allowed in the return statement",
    ast.JoinedStr: "strings are not allowed",
    ast.NamedExpr: "the walrus operator is not allowed",
    ast.Starred: "starred expressions are not allowed",
}

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}


class _Parser:
    def __init__(self, filename: str):
        self.filename = filename

    def error(self, reason: str, node: ast.AST | None = None, line: int | None = None):
        raise ProgramError(reason, line if node is None else node.lineno, self.filename)

    def parse(self, text: str) -> Program:
        try:
            with warnings.catch_warnings():  # e.g. "invalid escape sequence": errors come below
                warnings.simplefilter("ignore", SyntaxWarning)
                module = ast.parse(text, filename=self.filename)
        except SyntaxError as exc:
            self.error(f"syntax error: {exc.msg}", line=exc.lineno)
        functions = [n for n in module.body if isinstance(n, ast.FunctionDef)]
        for node in module.body:
            if isinstance(node, ast.FunctionDef) or _is_docstring(node):
                continue
            if isinstance(node, ast.AsyncFunctionDef):
                self.error("'async def' is not allowed; write 'def train(...)'", node)
            if isinstance(node, ast.Import | ast.ImportFrom):
                self.error("imports are not allowed", node)
            if not functions:
                break  # not a program at all: say that below
            self.error(
                "only 'def train(...)' may appear at the top level of a program, "
                f"not {_statement_kind(node)}",
                node,
            )
        if not functions:
            self.error("no 'def train(...)' found", line=1)
        if len(functions) > 1:
            self.error("only one function may be defined", functions[1])
        return self.function(functions[0])

    def function(self, fn: ast.FunctionDef) -> Program:
        if fn.name != "train":
            self.error(f"the function must be called 'train', not {fn.name!r}", fn)
        if fn.decorator_list:
            self.error("decorators are not allowed", fn.decorator_list[0])
        params = self.parameters(fn)
        defined = set(params)
        statements = list(fn.body)
        if statements and _is_docstring(statements[0]):
            statements = statements[1:]
        body: list[Assign] = []
        for node in statements:
            if isinstance(node, ast.Return):
                returns = self.returns(node, params, defined)
                if node is not statements[-1]:
                    self.error("the return statement must be the last statement", node)
                return Program(tuple(params), tuple(body), returns)
            body.append(self.assignment(node, defined))
        self.error("the function must end with a return statement", fn)

    def parameters(self, fn: ast.FunctionDef) -> list[str]:
        args = fn.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
            self.error("only plain positional parameters are allowed", fn)
        if args.defaults:
            self.error("parameters may not have default values", fn)
        params = []
        for arg in args.args:
            if arg.annotation is not None:
                self.error("type annotations are not allowed", arg)
            if arg.arg in primitives.PRIMITIVES:
                self.error(f"parameter {arg.arg!r} shadows the primitive of that name", arg)
            if arg.arg in params:
                self.error(f"duplicate parameter {arg.arg!r}", arg)
            params.append(arg.arg)
        return params

    def assignment(self, node: ast.stmt, defined: set[str]) -> Assign:
        if isinstance(node, ast.AugAssign):
            target = self.target(node.target)
            op = _BINOPS.get(type(node.op))
            if op is None:
                self.error(f"operator {_op_symbol(node.op)} is not allowed", node)
            if target not in defined:
                self.error(f"name {target!r} is used before it is assigned", node)
            self.check_depth(node.value, node, extra=1)  # u += x is u = u + x
            expr = Call(op, (Var(target), self.expr(node.value, defined)))
        elif isinstance(node, ast.Assign):
            if len(node.targets) != 1:
                self.error("chained assignment is not allowed", node)
            target = self.target(node.targets[0])
            self.check_depth(node.value, node)
            expr = self.expr(node.value, defined)
        elif isinstance(node, ast.AnnAssign):
            self.error("type annotations are not allowed", node)
        elif isinstance(node, ast.Expr):
            self.error("a statement must assign its value to a name", node)
        else:
            self.error(_UNSUPPORTED_STATEMENTS.get(type(node), "unsupported statement"), node)
        defined.add(target)
        return Assign(target, expr)

    def target(self, node: ast.expr) -> str:
        if not isinstance(node, ast.Name):
            self.error("only single names can be assigned to", node)
        if node.id in primitives.PRIMITIVES:
            self.error(f"cannot assign to {node.id!r}: it is a primitive", node)
        return node.id

    def returns(self, node: ast.Return, params: list[str], defined: set[str]) -> tuple[Expr, ...]:
        if node.value is None:
            self.error("the return statement must return the update", node)
        values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
        state = [p for p in params if p not in RESERVED_INPUTS]
        if len(values) != 1 + len(state):
            slots = ", ".join(state) if state else "none"
            self.error(
                f"return gives {len(values)} value(s); expected the update followed by one new "
                f"value per state slot ({len(state)}: {slots})",
                node,
            )
        for value in values:
            self.check_depth(value, value)
        return tuple(self.expr(v, defined) for v in values)

    def check_depth(self, value: ast.expr, node: ast.AST, extra: int = 0) -> None:
        """Reject an expression nested deeper than :data:`MAX_DEPTH` before recursing into it."""
        depth = _ast_depth(value) + extra
        if depth > MAX_DEPTH:
            self.error(_too_deep(depth), node)

    def expr(self, node: ast.expr, defined: set[str]) -> Expr:
        if isinstance(node, ast.Name):
            if node.id in primitives.PRIMITIVES:
                self.error(f"primitive {node.id!r} must be called, not used as a value", node)
            if node.id not in defined:
                self.error(f"undefined name {node.id!r}", node)
            return Var(node.id)
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.UAdd):
                return self.expr(node.operand, defined)
            if isinstance(node.op, ast.USub):
                if isinstance(node.operand, ast.Constant):
                    return Const(-self.constant(node.operand).value + 0.0)
                return Call("neg", (self.expr(node.operand, defined),))
            self.error(f"operator {_op_symbol(node.op)} is not allowed", node)
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                self.error(f"operator {_op_symbol(node.op)} is not allowed", node)
            return Call(op, (self.expr(node.left, defined), self.expr(node.right, defined)))
        if isinstance(node, ast.Call):
            return self.call(node, defined)
        reason = _UNSUPPORTED_EXPRESSIONS.get(type(node), f"unsupported {type(node).__name__}")
        self.error(reason, node)

    def constant(self, node: ast.Constant) -> Const:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(f"only numeric constants are allowed, not {value!r}", node)
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            self.error(f"constant {value!r} is not a finite number", node)
        return Const(number + 0.0)  # + 0.0 turns -0.0 into 0.0

    def call(self, node: ast.Call, defined: set[str]) -> Call:
        if not isinstance(node.func, ast.Name):
            self.error("only primitives can be called (e.g. sign(x), not x.sign())", node)
        name = node.func.id
        if name not in primitives.PRIMITIVES:
            self.error(f"unknown primitive {name!r} (see 'evodisc primitives')", node)
        if node.keywords:
            self.error(f"{name}() takes positional arguments only", node)
        prim = primitives.PRIMITIVES[name]
        if len(node.args) != prim.arity:
            self.error(f"{name}() takes {prim.arity} argument(s), got {len(node.args)}", node)
        return Call(name, tuple(self.expr(a, defined) for a in node.args))


def _ast_depth(node: ast.expr) -> int:
    """The height of an expression as the IR will hold it (a negative constant is one level),
    computed without recursion; every other expression node counts as a level."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if (
            isinstance(current, ast.UnaryOp)
            and isinstance(current.op, ast.USub)
            and isinstance(current.operand, ast.Constant)
        ):
            continue
        children = current.args if isinstance(current, ast.Call) else ast.iter_child_nodes(current)
        stack.extend((c, depth + 1) for c in children if isinstance(c, ast.expr))
    return deepest


_STATEMENT_KINDS = {
    ast.Assign: "an assignment",
    ast.AugAssign: "an assignment",
    ast.AnnAssign: "an assignment",
    ast.Expr: "an expression",
    ast.ClassDef: "a class",
    ast.Return: "a return statement",
}


def _statement_kind(node: ast.stmt) -> str:
    kind = _STATEMENT_KINDS.get(type(node))
    return kind or f"a{'n' if type(node).__name__[0] in 'AEIOU' else ''} {type(node).__name__}"


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _op_symbol(op: ast.AST) -> str:
    symbols = {
        ast.FloorDiv: "//",
        ast.Mod: "%",
        ast.MatMult: "@",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.BitOr: "|",
        ast.BitAnd: "&",
        ast.BitXor: "^",
        ast.Invert: "~",
        ast.Not: "not",
    }
    return repr(symbols.get(type(op), type(op).__name__))


# -------------------------------------------------------------------------------------- printer

# Precedence levels of Python's grammar: the printer parenthesises exactly where the parser
# would otherwise build a different tree.
_PREC_ADD, _PREC_MUL, _PREC_UNARY, _PREC_POW, _PREC_ATOM = 1, 2, 3, 4, 5
_INFIX_PREC = {"add": _PREC_ADD, "sub": _PREC_ADD, "mul": _PREC_MUL, "div": _PREC_MUL}


def format_constant(value: float) -> str:
    """Shortest text that parses back to exactly ``value``."""
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _precedence(expr: Expr) -> int:
    if isinstance(expr, Const):
        return _PREC_UNARY if expr.value < 0 else _PREC_ATOM
    if isinstance(expr, Call):
        if expr.op in _INFIX_PREC:
            return _INFIX_PREC[expr.op]
        if expr.op == "neg":
            return _PREC_UNARY
        if expr.op == "pow":
            return _PREC_POW
    return _PREC_ATOM


def format_expr(expr: Expr, call: Callable[[str, list[str]], str] | None = None) -> str:
    """Print an expression with minimal parentheses (round-trips through the parser).

    ``call(op, args)``, when given, writes the non-operator primitive calls (e.g. as torch code);
    what it returns must bind like a function call.
    """
    if isinstance(expr, Var):
        return expr.name
    if isinstance(expr, Const):
        return format_constant(expr.value)

    def sub(e: Expr, minimum: int) -> str:
        text = format_expr(e, call)
        return f"({text})" if _precedence(e) < minimum else text

    op, args = expr.op, expr.args
    if op in _INFIX_PREC:
        prec = _INFIX_PREC[op]
        symbol = primitives.PRIMITIVES[op].infix
        return f"{sub(args[0], prec)} {symbol} {sub(args[1], prec + 1)}"
    if op == "neg":
        return f"-{sub(args[0], _PREC_UNARY)}"
    if op == "pow":
        return f"{sub(args[0], _PREC_ATOM)} ** {sub(args[1], _PREC_UNARY)}"
    texts = [format_expr(a, call) for a in args]
    return call(op, texts) if call is not None else f"{op}({', '.join(texts)})"


def format_program(program: Program) -> str:
    """The program as text in the contract's format."""
    lines = [f"def train({', '.join(program.params)}):"]
    lines += [f"    {s.target} = {format_expr(s.expr)}" for s in program.body]
    lines.append(f"    return {', '.join(format_expr(e) for e in program.returns)}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- JSON


def expr_to_json(expr: Expr) -> dict:
    """Canonical JSON-able form of an expression."""
    if isinstance(expr, Var):
        return {"var": expr.name}
    if isinstance(expr, Const):
        return {"const": expr.value}
    return {"op": expr.op, "args": [expr_to_json(a) for a in expr.args]}


def program_to_json(program: Program) -> str:
    """Canonical JSON (sorted keys, no whitespace): the IR for logs and exchange."""
    doc = {
        "format": "evodisc-program/1",
        "params": list(program.params),
        "body": [{"target": s.target, "expr": expr_to_json(s.expr)} for s in program.body],
        "returns": [expr_to_json(e) for e in program.returns],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def program_from_json(text: str, filename: str = "<json>") -> Program:
    """Rebuild a program from :func:`program_to_json` output, validating it like program text."""
    try:
        doc = json.loads(text)
        params = tuple(doc["params"])
        body = tuple(Assign(s["target"], _expr_from_json(s["expr"])) for s in doc["body"])
        returns = tuple(_expr_from_json(e) for e in doc["returns"])
    except (RecursionError, _TooDeep):
        raise ProgramError(_too_deep(None), filename=filename) from None
    except (ValueError, KeyError, TypeError) as exc:
        reason = f"not a program in canonical JSON form ({exc})"
        raise ProgramError(reason, filename=filename) from None
    # Validate by the same rules as text: print, then parse.
    return parse_program(format_program(Program(params, body, returns)), filename)


class _TooDeep(Exception):
    pass


def _expr_from_json(doc: dict, depth: int = 1) -> Expr:
    if depth > MAX_DEPTH:  # checked before recursing: printing it would recurse as deep
        raise _TooDeep
    if "var" in doc:
        return Var(str(doc["var"]))
    if "const" in doc:
        return Const(float(doc["const"]))
    return Call(str(doc["op"]), tuple(_expr_from_json(a, depth + 1) for a in doc["args"]))
