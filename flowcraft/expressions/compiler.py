"""Syntax tree to a tree of plain closures, and the public `Expression` that holds one.

Compiling once when a blueprint loads makes evaluation on every edge cheap: constant parts are
folded, the common condition shapes (`x == "ok"`, `x > 0`, `a.b.c`) get fast paths, and long
`+` chains join in linear time. Nothing here uses `eval`, `exec` or the `ast` module.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any

from flowcraft.errors import ExpressionError
from flowcraft.expressions.lexer import snippet
from flowcraft.expressions.parser import (
    Access,
    Call,
    Chain,
    Const,
    Name,
    Node,
    Parser,
    Unary,
)
from flowcraft.expressions.values import (
    BINARY_FUNCTIONS,
    NUMBER_TYPES,
    UNARY_FUNCTIONS,
    add,
    concatenate,
    equals,
    is_number,
    length,
    member,
    truthy,
)

MAX_EXPRESSION_LENGTH = 10_000

_CACHE_SIZE = 4096

_Scope = Mapping[str, Any]
_Fn = Callable[[_Scope], Any]


def _constant(value: Any) -> _Fn:
    def const(scope: _Scope) -> Any:
        return value

    return const


def _compile(node: Node) -> tuple[_Fn, bool]:
    """Compile a node to a closure over the scope; the flag says it is a constant (folded)."""
    if isinstance(node, Const):
        return _constant(node.value), True
    if isinstance(node, Name):
        return operator.methodcaller("get", node.name), False
    if isinstance(node, Access):
        fn, const = _compile_access(node)
    elif isinstance(node, Unary):
        operand, const = _compile(node.operand)
        fn = _compile_unary(UNARY_FUNCTIONS[node.op], operand)
    elif isinstance(node, Call):
        arg, const = _compile(node.arg)
        fn = _compile_unary(length, arg)
    else:
        assert isinstance(node, Chain)
        compiled = [_compile(operand) for operand in node.operands]
        fns = [fn for fn, _ in compiled]
        const = all(c for _, c in compiled)
        op = node.ops[0]
        if op == "and" or op == "or":
            fn = _compile_logic(op == "and", fns)
        elif len(fns) == 2:
            fn = _compile_binary(op, fns[0], fns[1], compiled[1][1])
        else:
            fn = _compile_arithmetic([BINARY_FUNCTIONS[o] for o in node.ops], fns)
    if const:
        return _constant(fn({})), True
    return fn, False


def _compile_unary(function: Callable[[Any], Any], operand: _Fn) -> _Fn:
    def unary(scope: _Scope) -> Any:
        return function(operand(scope))

    return unary


def _compile_logic(is_and: bool, fns: list[_Fn]) -> _Fn:
    """`and`/`or` short-circuit and return the deciding operand, like Python and JavaScript."""
    if len(fns) == 2:
        first, second = fns
        if is_and:

            def and2(scope: _Scope) -> Any:
                value = first(scope)
                try:
                    if not value:
                        return value
                except Exception:
                    pass
                return second(scope)

            return and2

        def or2(scope: _Scope) -> Any:
            value = first(scope)
            try:
                if not value:
                    return second(scope)
            except Exception:
                pass
            return value

        return or2

    head, last = fns[:-1], fns[-1]

    def logic(scope: _Scope) -> Any:
        for fn in head:
            value = fn(scope)
            if truthy(value) is not is_and:
                return value
        return last(scope)

    return logic


def _compile_binary(op: str, left: _Fn, right: _Fn, right_const: bool) -> _Fn:
    function = BINARY_FUNCTIONS[op]
    if right_const:
        value = right({})
        special = _compile_against_constant(op, left, value)
        if special is not None:
            return special

    def binary(scope: _Scope) -> Any:
        return function(left(scope), right(scope))

    return binary


def _compile_against_constant(op: str, left: _Fn, value: Any) -> _Fn | None:
    """Fast paths for the most common condition shapes: `x == "ok"`, `x > 0`, `x == null`."""
    if op in ("==", "!=") and (value is None or type(value) in (str, bool)):
        negate = op == "!="
        if value is None or type(value) is bool:

            def identity(scope: _Scope) -> bool:
                return (left(scope) is value) is not negate

            return identity

        def equals_string(scope: _Scope) -> bool:
            got = left(scope)
            if type(got) is str:
                return (got == value) is not negate
            return equals(got, value) is not negate

        return equals_string
    if op in ("<", "<=", ">", ">=") and type(value) in NUMBER_TYPES:
        compare = BINARY_FUNCTIONS[op]
        raw = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[op]

        def order_number(scope: _Scope) -> Any:
            got = left(scope)
            if type(got) in NUMBER_TYPES:
                return raw(got, value)
            return compare(got, value)

        return order_number
    return None


def _compile_arithmetic(functions: list[Callable[[Any, Any], Any]], fns: list[_Fn]) -> _Fn:
    """A chain of three or more `+ - * / %` operands, evaluated without quadratic copying.

    Left to right, a chain only stays non-None if all its operands are numbers, or (for a
    chain of `+` alone) all strings or all lists, which are joined in one go.
    """
    only_plus = all(function is add for function in functions)

    def arithmetic(scope: _Scope) -> Any:
        values = [fn(scope) for fn in fns]
        if only_plus:
            joined = concatenate(values)
            if joined is not NotImplemented:
                return joined
        if not all(is_number(v) for v in values):
            return None
        value = values[0]
        for function, other in zip(functions, values[1:], strict=True):
            value = function(value, other)
            if value is None:  # division by zero or overflow: stays None
                return None
        return value

    return arithmetic


def _compile_access(node: Access) -> tuple[_Fn, bool]:
    base, const = _compile(node.base)
    steps: list[tuple[bool, Any]] = []
    for step in node.steps:
        fn, step_const = _compile(step)
        if step_const:
            steps.append((False, fn({})))
        else:
            steps.append((True, fn))
            const = False
    if isinstance(node.base, Name) and not any(dynamic for dynamic, _ in steps):
        return _compile_path(node.base.name, tuple(key for _, key in steps)), False
    get_member = member

    def access(scope: _Scope) -> Any:
        value = base(scope)
        for dynamic, key in steps:
            if value is None:
                return None
            value = get_member(value, key(scope) if dynamic else key)
        return value

    return access, const


def _compile_path(root: str, keys: tuple[Any, ...]) -> _Fn:
    """`name.a.b` with constant keys: unrolled for short paths, with a plain-dict fast path."""
    get_member = member
    if len(keys) == 1:
        (k1,) = keys

        def path1(scope: _Scope) -> Any:
            value = scope.get(root)
            return value.get(k1) if type(value) is dict else get_member(value, k1)

        return path1
    if len(keys) == 2:
        k1, k2 = keys

        def path2(scope: _Scope) -> Any:
            value = scope.get(root)
            value = value.get(k1) if type(value) is dict else get_member(value, k1)
            return value.get(k2) if type(value) is dict else get_member(value, k2)

        return path2
    if len(keys) == 3:
        k1, k2, k3 = keys

        def path3(scope: _Scope) -> Any:
            value = scope.get(root)
            value = value.get(k1) if type(value) is dict else get_member(value, k1)
            value = value.get(k2) if type(value) is dict else get_member(value, k2)
            return value.get(k3) if type(value) is dict else get_member(value, k3)

        return path3

    def path(scope: _Scope) -> Any:
        value = scope.get(root)
        for key in keys:
            if value is None:
                return None
            value = value.get(key) if type(value) is dict else get_member(value, key)
        return value

    return path


# --------------------------------------------------------------------------------------------
# The compiled form
# --------------------------------------------------------------------------------------------


class Expression:
    """A compiled expression: parse once when the blueprint loads, evaluate on every edge."""

    __slots__ = ("_fn", "names", "source")

    source: str
    names: frozenset[str]
    _fn: _Fn

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise ExpressionError(f"an expression must be a string, not {type(source).__name__}")
        if len(source) > MAX_EXPRESSION_LENGTH:
            raise ExpressionError(
                f"expression is {len(source)} characters long, more than the limit of "
                f"{MAX_EXPRESSION_LENGTH}: {snippet(source, 0)!r}"
            )
        parser = Parser(source)
        fn, _ = _compile(parser.parse())
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "names", frozenset(parser.names))
        object.__setattr__(self, "_fn", fn)

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """The expression's value in `scope`.

        Operators turn failures into None/False instead of raising, so this only raises if
        `scope.get` itself does.
        """
        return self._fn(scope)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Expression is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Expression is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def __repr__(self) -> str:
        return f"Expression({getattr(self, 'source', '<not compiled>')!r})"


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile_cached(source: str) -> Expression:
    return Expression(source)


def compile_expression(source: str) -> Expression:
    """Parse and compile `source` (cached: blueprints repeat the same conditions).

    Raises ExpressionError for a syntax error or when the size/depth bounds are exceeded.
    """
    if not isinstance(source, str):
        raise ExpressionError(f"an expression must be a string, not {type(source).__name__}")
    return _compile_cached(source)


__all__ = ["MAX_EXPRESSION_LENGTH", "Expression", "compile_expression"]
