"""SymPy forms of program expressions, both ways, and the math lines of a program.

* :func:`to_sympy` — an IR expression as a SymPy expression, through each primitive's ``.sympy``
  form (the registry is the single source of truth): ``interp`` becomes ``(1-β)·a + β·b``,
  ``clip`` becomes ``Max(-|c|, Min(x, |c|))``. Tensors are *elementwise*: every name is a real
  scalar symbol (``lr``, ``t`` and ``T`` positive), reductions stay opaque functions
  (``mean(x)``).
* :func:`from_sympy` — back to primitives: a primitive whose SymPy form is one SymPy function
  or one power is read off its entry (``Min`` → ``minimum``, ``x**2`` → ``square``); rules
  recognise what SymPy spells as sums, products and nests of ``Max``/``Min``: ``x/|x|`` and
  ``x/sqrt(x²)`` → ``sign(x)``, ``sqrt(x²)`` → ``abs(x)``, ``(1-β)·a + β·b`` →
  ``interp(a, b, β)``, ``Max(-c, Min(x, c))`` → ``clip(x, c)``, ``Max(x, 0)`` → ``relu(x)``,
  ``1/(1 + e⁻ˣ)`` → ``sigmoid(x)``; constants lose their float noise (``0.09999999999999998`` →
  ``0.1``, a change far below the functional hash's resolution). It notes which rules fired.
* :func:`math_lines` — one line per state update and the update (``m_t = 0.9 m_{t-1} + 0.1 g_t``,
  ``u_t = lr · sign(m_t)``), and the same in LaTeX.

Nothing here decides whether a rewrite is *correct*: SymPy's rules hold for real numbers, not
always for floats at 0, ±inf or NaN (``x/|x|`` is NaN at 0, ``sign(0)`` is 0). The caller
(:mod:`evodisc.inspect.simplify`) accepts a rewrite only if the functional hash is unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from functools import cache

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from evodisc.edit import make_call
from evodisc.primitives import PRIMITIVES, Primitive
from evodisc.program import SCALAR_INPUTS, Call, Const, Expr, Program, Var, format_constant

#: Inputs that are positive scalars (the learning rate, the 1-based step, the run's horizon).
POSITIVE = SCALAR_INPUTS
#: Relative distance within which a constant is replaced by a shorter decimal (float noise only:
#: the functional hash resolves 1e-6).
TIDY_RELATIVE = 1e-13


class Unsupported(ValueError):
    """A SymPy expression with no primitive form (``Piecewise``, a complex number, …)."""


def tidy(value: float) -> float:
    """The shortest decimal within :data:`TIDY_RELATIVE` of ``value`` (``1 - 0.9`` → ``0.1``)."""
    if value == 0 or not math.isfinite(value):
        return value + 0.0
    for digits in range(1, 18):
        short = float(f"{value:.{digits}g}")
        if abs(short - value) <= TIDY_RELATIVE * abs(value):
            return short + 0.0
    return value + 0.0


def symbols(params: Sequence[str], display: Callable[[str], str] | None = None) -> dict:
    """One SymPy symbol per parameter: real, and positive for ``lr``, ``t`` and ``T``; ``display``
    names them (the math lines use ``m_{t-1}`` for ``m``)."""
    made = {}
    for name in params:
        label = display(name) if display else name
        if name in POSITIVE:
            made[name] = sympy.Symbol(label, positive=True)
        else:
            made[name] = sympy.Symbol(label, real=True)
    return made


def _sympy_number(value: float) -> sympy.Expr:
    if value.is_integer() and abs(value) < 2**53:
        return sympy.Integer(int(value))
    if (2 * value).is_integer() and abs(value) < 2**52:
        return sympy.Rational(int(2 * value), 2)  # x ** 0.5 is sqrt(x)
    return sympy.Float(value)


def to_sympy(expr: Expr, env: dict, memo: dict | None = None) -> sympy.Expr:
    """``expr`` as a SymPy expression; ``env`` maps names to SymPy expressions. Shared
    sub-expressions (as :func:`evodisc.edit.inline` makes them) are converted once."""
    memo = {} if memo is None else memo
    key = id(expr)
    if key in memo:
        return memo[key][1]
    if isinstance(expr, Var):
        result = env[expr.name]
    elif isinstance(expr, Const):
        result = _sympy_number(expr.value)
    else:
        args = [to_sympy(a, env, memo) for a in expr.args]
        result = PRIMITIVES[expr.op].sympy(*args)
    memo[key] = (expr, result)  # keep expr alive: its id must not be reused
    return result


# ------------------------------------------------------------------------ SymPy → primitives


def _spellings() -> tuple[dict[type, str], dict[sympy.Expr, str]]:
    """How SymPy writes the primitives it writes as one function or one power, read off their
    SymPy forms: function class → primitive (``Min`` → ``minimum``; the reductions' undefined
    functions) and exponent → primitive (``2`` → ``square``)."""
    return _spellings_of(tuple(PRIMITIVES.values()))


@cache
def _spellings_of(entries: tuple[Primitive, ...]) -> tuple[dict[type, str], dict[sympy.Expr, str]]:
    functions, powers = {}, {}
    for prim in entries:
        if prim.infix:
            continue  # the operators: SymPy's sums, products and powers themselves
        args = sympy.symbols(f"x:{prim.arity}", real=True)
        form = prim.sympy(*args)
        if len(form.args) == len(args) and set(form.args) == set(args):  # f(x0, x1, …)
            functions.setdefault(form.func, prim.name)
        elif form.is_Pow and form.base == args[0] and form.exp.is_Number:
            powers.setdefault(form.exp, prim.name)
    return functions, powers


class _Converter:
    """SymPy → IR, memoised by expression (a DAG stays a DAG)."""

    def __init__(self, names: dict):
        self.names = names  # symbol -> parameter name
        self.functions, self.powers = _spellings()
        self.memo: dict = {}
        self.rules: list[str] = []

    def note(self, rule: str) -> None:
        if rule not in self.rules:
            self.rules.append(rule)

    def __call__(self, expr: sympy.Expr) -> Expr:
        if expr not in self.memo:
            self.memo[expr] = self.convert(expr)
        return self.memo[expr]

    def constant(self, expr: sympy.Expr) -> Const:
        try:
            value = complex(expr)
        except (TypeError, ValueError) as exc:
            raise Unsupported(f"constant {expr}") from exc
        if value.imag != 0 or not math.isfinite(value.real):
            raise Unsupported(f"constant {expr} is not a finite real number")
        return Const(tidy(value.real))

    def convert(self, expr: sympy.Expr) -> Expr:
        if expr in self.names:
            return Var(self.names[expr])
        if expr.is_number:
            return self.constant(expr)
        if expr.is_Add:
            return self.add(expr)
        if expr.is_Mul:
            return self.mul(expr)
        if expr.is_Pow:
            return self.power(expr)
        if isinstance(expr, sympy.Max | sympy.Min):
            return self.extremum(expr)
        op = self.functions.get(expr.func)
        if op is not None and len(expr.args) == PRIMITIVES[op].arity:
            return Call(op, tuple(self(a) for a in expr.args))
        raise Unsupported(f"no primitive for {expr.func.__name__}")

    # -- sums
    def add(self, expr: sympy.Expr) -> Expr:
        terms = [t.as_coeff_Mul() for t in expr.args]  # (number, rest)
        pieces: list[tuple[bool, Expr]] = []  # (subtract?, expression)
        used = set()
        for i, (ci, ri) in enumerate(terms):
            for j in range(i + 1, len(terms)):
                cj, rj = terms[j]
                if i in used or j in used or ri.is_number or rj.is_number:
                    continue
                piece = self.interp(float(ci), ri, float(cj), rj)
                if piece is not None:
                    used |= {i, j}
                    pieces.append((False, piece))
        rest = [t for k, t in enumerate(expr.args) if k not in used]
        numbers = [t for t in rest if t.is_number]
        for term in [t for t in rest if not t.is_number] + numbers:
            negative = term.could_extract_minus_sign()
            pieces.append((negative, self(-term if negative else term)))
        pieces.sort(key=lambda p: p[0])  # added terms first, then subtracted ones
        negative, result = pieces[0]
        if negative:
            result = make_call("neg", (result,))
        for negative, piece in pieces[1:]:
            result = Call("sub" if negative else "add", (result, piece))
        return result

    def interp(self, ca: float, a: sympy.Expr, cb: float, b: sympy.Expr) -> Expr | None:
        """``ca·a + cb·b`` as ``interp(a, b, β)`` (times their sum when it is not 1, if that
        saves an operation and β is a short decimal). β is the larger weight."""
        if abs(ca) > abs(cb):
            ca, a, cb, b = cb, b, ca, a
        total = ca + cb
        if total == 0 or not (math.isfinite(total)):
            return None
        if 1 in (abs(ca), abs(cb)):
            return None  # 2·a - b stays as it is
        if abs(total - 1) <= TIDY_RELATIVE:
            self.note("(1-β)·a + β·b → interp(a, b, β)")
            return Call("interp", (self(a), self(b), Const(tidy(cb))))
        beta = tidy(cb / total)
        if len(f"{beta:.15g}".lstrip("-0.")) > 6:
            return None
        self.note("(1-β)·a + β·b → interp(a, b, β)")
        return Call("mul", (Const(tidy(total)), Call("interp", (self(a), self(b), Const(beta)))))

    # -- products
    def mul(self, expr: sympy.Expr) -> Expr:
        coeff, factors = expr.as_coeff_mul()
        num, den = [], []
        for factor in factors:
            base, exponent = factor.as_base_exp()
            if exponent.is_Number and exponent < 0:
                den.append(base ** (-exponent))
            else:
                num.append(factor)
        num, den = self.signs(num, den)
        top = [self(f) for f in num]
        for factor in [d for d in den if _sigmoid_argument(d) is not None]:
            den.remove(factor)
            self.note("1/(1+e⁻ˣ) → sigmoid(x)")
            top.append(Call("sigmoid", (self(_sigmoid_argument(factor)),)))
        result: Expr | None = None
        for item in top:
            result = item if result is None else Call("mul", (result, item))
        if coeff != 1 and coeff != -1:
            c = self.constant(coeff)
            result = c if result is None else Call("mul", (c, result))
        if result is None:
            result = Const(1.0)
        if den:
            bottom = self(den[0])
            for item in den[1:]:
                bottom = Call("mul", (bottom, self(item)))
            result = Call("div", (result, bottom))
        if coeff == -1:
            result = make_call("neg", (result,))
        return result

    def signs(self, num: list, den: list) -> tuple[list, list]:
        """``x / |x|`` (and ``|x| / x``) → ``sign(x)``; ``sqrt(x²)`` counts as ``|x|``."""
        num, den = list(num), list(den)
        for x in list(num):
            for d in den:
                if _absolute_value_of(d) == x:
                    num.remove(x)
                    den.remove(d)
                    num.append(sympy.sign(x, evaluate=False))
                    self.note("x/|x| → sign(x)")
                    break
        for a in list(num):
            x = _absolute_value_of(a)
            if x is not None and x in den:
                num.remove(a)
                den.remove(x)
                num.append(sympy.sign(x, evaluate=False))
                self.note("|x|/x → sign(x)")
        return num, den

    def power(self, expr: sympy.Expr) -> Expr:
        base, exponent = expr.args
        inner = _absolute_value_of(expr)
        if inner is not None and not isinstance(expr, sympy.Abs):
            self.note("sqrt(x²) → abs(x)")
            return self(sympy.Abs(inner, evaluate=False))
        if exponent.is_Number and exponent < 0:
            argument = _sigmoid_argument(base) if exponent == -1 else None
            if argument is not None:
                self.note("1/(1+e⁻ˣ) → sigmoid(x)")
                return Call("sigmoid", (self(argument),))
            return Call("div", (Const(1.0), self(base ** (-exponent))))
        for power, op in self.powers.items():
            if exponent == power:
                return Call(op, (self(base),))
        return Call("pow", (self(base), self(exponent)))

    # -- Max / Min
    def extremum(self, expr: sympy.Expr) -> Expr:
        clipped = self.clip(expr)
        if clipped is not None:
            return clipped
        args = list(expr.args)
        if isinstance(expr, sympy.Max) and len(args) == 2 and 0 in args:
            args.remove(0)
            self.note("Max(x, 0) → relu(x)")
            return Call("relu", (self(args[0]),))
        op = self.functions[expr.func]
        numbers = [a for a in args if a.is_number]
        ordered = [a for a in args if not a.is_number] + numbers
        result = self(ordered[0])
        for arg in ordered[1:]:
            result = Call(op, (result, self(arg)))
        return result

    def clip(self, expr: sympy.Expr) -> Expr | None:
        parts = clip_parts(expr)
        if parts is None:
            return None
        self.note("Max(-c, Min(x, c)) → clip(x, c)")
        return Call("clip", (self(parts[0]), self(parts[1])))


def clip_parts(expr: sympy.Expr) -> tuple[sympy.Expr, sympy.Expr] | None:
    """``(x, c)`` when ``expr`` is ``Max(-c, Min(x, c))`` or ``Min(c, Max(x, -c))`` with
    ``c ≥ 0`` (``c`` unwrapped from ``|c|``): SymPy's spelling of ``clip(x, c)``."""
    if not isinstance(expr, sympy.Max | sympy.Min) or len(expr.args) != 2:
        return None
    outer_max = isinstance(expr, sympy.Max)
    inner_type = sympy.Min if outer_max else sympy.Max
    for bound, other in (expr.args, expr.args[::-1]):
        if not isinstance(other, inner_type) or len(other.args) != 2:
            continue
        for x, c in (other.args, other.args[::-1]):
            limit = c if outer_max else bound
            if (bound + c) == 0 and limit.is_nonnegative:
                inner = _absolute_value_of(limit)
                return x, inner if inner is not None else limit
    return None


def _sigmoid_argument(expr: sympy.Expr) -> sympy.Expr | None:
    """``x`` when ``expr`` is ``1 + exp(-x)``."""
    if expr.is_Add and len(expr.args) == 2 and 1 in expr.args:
        other = expr.args[0] if expr.args[1] == 1 else expr.args[1]
        if isinstance(other, sympy.exp):
            return -other.args[0]
    return None


def _absolute_value_of(expr: sympy.Expr) -> sympy.Expr | None:
    """``x`` when ``expr`` is ``|x|`` or ``sqrt(x²)``."""
    if isinstance(expr, sympy.Abs):
        return expr.args[0]
    if expr.is_Pow and expr.exp == sympy.Rational(1, 2):
        base = expr.base
        if base.is_Pow and base.exp == 2:
            return base.base
    return None


def from_sympy(expr: sympy.Expr, env: dict) -> tuple[Expr, list[str]]:
    """``expr`` written with primitives, and the recognition rules that fired; ``env`` maps
    parameter names to the symbols :func:`to_sympy` used. Raises :class:`Unsupported`."""
    converter = _Converter({symbol: name for name, symbol in env.items()})
    try:
        result = converter(expr)
    except RecursionError:
        raise Unsupported("expression nested too deeply") from None
    return result, converter.rules


def factored(expr: sympy.Expr) -> sympy.Expr:
    """Common factors pulled out of sums (``0.9·g - 0.9·m`` → ``0.9·(g - m)``)."""
    return sympy.factor_terms(expr)


# ------------------------------------------------------------------------------- math lines


class _Text(StrPrinter):
    def _print_Float(self, expr):
        return format_constant(tidy(float(expr)))

    def _print_Function(self, expr):  # named as the primitive, not as SymPy names it
        name = _spellings()[0].get(expr.func, expr.func.__name__)
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_Max(self, expr):
        parts = clip_parts(expr)
        if parts is not None:
            return f"clip({self._print(parts[0])}, {self._print(parts[1])})"
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_Min(self, expr):
        parts = clip_parts(expr)
        if parts is not None:
            return f"clip({self._print(parts[0])}, {self._print(parts[1])})"
        return f"min({', '.join(self._print(a) for a in expr.args)})"


class _Latex(LatexPrinter):
    def _print_Float(self, expr):
        text = format_constant(tidy(float(expr)))
        if "e" not in text:
            return text
        mantissa, exponent = text.split("e")
        power = f"10^{{{int(exponent)}}}"
        return power if mantissa == "1" else rf"{mantissa} \cdot {power}"

    def _print_Max(self, expr, exp=None):
        parts = clip_parts(expr)
        if parts is None:
            return super()._print_Max(expr, exp)
        x, c = (self._print(p) for p in parts)
        return rf"\operatorname{{clip}}\left({x}, {c}\right)"

    def _print_Min(self, expr, exp=None):
        parts = clip_parts(expr)
        if parts is None:
            return super()._print_Min(expr, exp)
        x, c = (self._print(p) for p in parts)
        return rf"\operatorname{{clip}}\left({x}, {c}\right)"


def text(expr: sympy.Expr) -> str:
    """A one-line, readable form: ``0.9 m_{t-1} + 0.1 g_t``, ``lr · sign(m_t)``, ``0.9^t``."""
    written = _Text().doprint(expr).replace("**", "^")
    written = re.sub(r"(?<=[0-9])\*(?=[A-Za-z(])", " ", written)
    return written.replace("*", " · ")


def latex(expr: sympy.Expr, names: dict) -> str:
    """LaTeX of ``expr``; ``names`` maps symbols to their LaTeX names."""
    return _Latex({"symbol_names": names, "inv_trig_style": "full"}).doprint(expr)


#: LaTeX names of the reserved inputs.
_LATEX = {"lr": r"\eta"}
#: Expressions larger than this (as trees) are not inlined into one line: temporaries keep
#: their own line, so printing stays linear in the program's size.
MAX_INLINE_NODES = 400


def _tree_size(expr: sympy.Expr, memo: dict) -> int:
    if expr not in memo:
        memo[expr] = 1 + sum(_tree_size(a, memo) for a in expr.args)
    return memo[expr]


def math_lines(program: Program) -> tuple[tuple[str, ...], str]:
    """``(lines, latex)``: one line per state update then the update, e.g.
    ``m_t = 0.99 m_{t-1} + 0.01 g_t`` and ``u_t = lr · sign(0.9 m_{t-1} + 0.1 g_t)``.

    State slots read before their update are ``m_{t-1}``, after it ``m_t``; ``g_t`` is the
    gradient, ``w_{t-1}`` the weight before the step. Temporaries are substituted, unless the
    result would be huge; then they keep a line of their own.
    """

    def display(name: str) -> str:
        if name in program.state or name == "w":
            return f"{name}_{{t-1}}"
        return "g_t" if name == "g" else name

    env = symbols(program.params, display)
    latex_names = {s: _LATEX.get(name, s.name) for name, s in env.items()}
    state_return = dict(zip(program.state, program.returns[1:], strict=True))
    last = {s.target: i for i, s in enumerate(program.body)}
    lines: list[tuple[str, sympy.Expr]] = []
    sizes: dict = {}
    for i, statement in enumerate(program.body):
        value = to_sympy(statement.expr, env)
        name = statement.target
        if name in program.state and last[name] == i and state_return[name] == Var(name):
            new = sympy.Symbol(f"{name}_t", real=True)
            latex_names[new] = f"{name}_t"
            lines.append((f"{name}_t", value))
            env[name] = new
        elif _tree_size(value, sizes) > MAX_INLINE_NODES:
            temporary = sympy.Symbol(name, real=True)
            latex_names[temporary] = name
            lines.append((name, value))
            env[name] = temporary
        else:
            env[name] = value
    for name, expr in state_return.items():
        if not (name in last and expr == Var(name)):
            lines.append((f"{name}_t", to_sympy(expr, env)))
    lines.append(("u_t", to_sympy(program.update, env)))
    plain = tuple(f"{name} = {text(value)}" for name, value in lines)
    body = " \\\\\n".join(
        f"{_latex_name(name)} &= {latex(value, latex_names)}" for name, value in lines
    )
    return plain, "\\begin{aligned}\n" + body + "\n\\end{aligned}"


def _latex_name(name: str) -> str:
    return name if "_" in name else rf"\mathit{{{name}}}"
