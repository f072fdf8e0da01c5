"""A small arithmetic interpreter for the expressions of study files (quantities and checks).

Study files are data: an expression such as ``post / pre >= 2.5 and slope_pre < -0.15`` is parsed
with `ast` and evaluated by walking the tree, allowing only numbers, names of quantities,
``+ - * / ** %``, comparisons (chained too), ``and``/``or``/``not``, parentheses and the
functions in `FUNCTIONS`. Anything else (attributes, subscripts, lambdas, strings, other calls)
is refused with a ConfigError before anything is evaluated; nothing is ever passed to `eval`.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from resnorm.errors import ConfigError

#: Bounds on what a study file may write: characters of an expression, nesting levels of its tree
#: (the evaluator recurses; Python's stack allows about 1000 frames).
MAX_LENGTH = 2000
MAX_DEPTH = 100

FUNCTIONS: dict[str, Callable[..., float]] = {
    "abs": abs,
    "min": min,
    "max": max,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sqrt": math.sqrt,
}
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ALLOWED = (
    *(ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Name, ast.Load),
    *(ast.Constant, ast.Call, ast.USub, ast.UAdd, ast.Not, ast.And, ast.Or),
    *_BINARY,
    *_COMPARE,
)


def parse(text: str, field: str) -> ast.Expression:
    """Parse and vet ``text``; a ConfigError naming ``field`` says what is not allowed."""
    if not isinstance(text, str):
        raise ConfigError(field, f"got {text!r}, expected an expression string")
    if len(text) > MAX_LENGTH:
        raise ConfigError(field, f"an expression of {len(text)} characters; at most {MAX_LENGTH}")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as e:
        reason = e.msg if isinstance(e, SyntaxError) else "nested too deeply"
        raise ConfigError(field, f"cannot parse {text[:80]!r}: {reason}") from None
    if _depth(tree) > MAX_DEPTH:
        raise ConfigError(field, f"nested deeper than {MAX_DEPTH} levels: {text[:80]!r}")
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ConfigError(field, f"{type(node).__name__} is not allowed in {text!r}")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ConfigError(
                    field, f"only the functions {', '.join(FUNCTIONS)} may be called in {text!r}"
                )
            if node.keywords:
                raise ConfigError(field, f"no keyword arguments in {text!r}")
        elif isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or not isinstance(node.value, (int, float))
        ):
            raise ConfigError(field, f"only numbers may appear in {text!r}")
        elif isinstance(node, ast.Constant) and not math.isfinite(_as_float(node.value)):  # type: ignore[arg-type]
            raise ConfigError(field, f"the number {str(node.value)[:20]}... is not a finite float")
    return tree


def _as_float(value: float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _depth(tree: ast.AST) -> int:
    """The nesting depth of ``tree``, without recursion (a deep tree is what it guards)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in ast.iter_child_nodes(node))
    return deepest


def names(text: str, field: str = "expr") -> set[str]:
    """The quantity names an expression reads (function names excluded)."""
    tree = parse(text, field)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def evaluate(text: str, values: Mapping[str, float], field: str = "expr") -> float | bool:
    """The value of ``text`` with ``values`` for its names.

    NaN stands for missing data and propagates: through arithmetic and functions, through
    comparisons (``nan < 1`` is NaN, not False), and through ``and``/``or`` unless the other
    operands settle the result (``False and nan`` is False). A check whose value is NaN is
    undecided, not failed.
    """
    tree = parse(text, field)

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)  # type: ignore[arg-type]
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise ConfigError(field, f"unknown quantity {node.id!r} in {text!r}")
            return float(values[node.id])
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            try:
                return _BINARY[type(node.op)](a, b)
            except (ZeroDivisionError, OverflowError, ValueError):
                return math.nan
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            if isinstance(node.op, ast.Not):
                return v if _nan(v) else not v
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BoolOp):
            results = [ev(v) for v in node.values]
            decisive = isinstance(node.op, ast.Or)  # the value that settles it: True for or
            if any(not _nan(r) and bool(r) == decisive for r in results):
                return decisive
            return math.nan if any(_nan(r) for r in results) else not decisive
        if isinstance(node, ast.Compare):
            operands = [ev(node.left)] + [ev(c) for c in node.comparators]
            if any(_nan(v) for v in operands):
                return math.nan
            pairs = zip(node.ops, operands, operands[1:], strict=False)
            return all(_COMPARE[type(op)](a, b) for op, a, b in pairs)
        if isinstance(node, ast.Call):
            args = [ev(a) for a in node.args]
            if any(_nan(a) for a in args):
                return math.nan
            try:
                return float(FUNCTIONS[node.func.id](*args))  # type: ignore[attr-defined]
            except (ValueError, OverflowError, TypeError):
                return math.nan
        raise AssertionError(f"unvetted node {type(node).__name__}")

    return ev(tree)  # type: ignore[no-any-return]
