"""The expression language: syntax (both spellings), semantics, safety and bounds."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import re
import string
import sys
import time
import types
from collections import namedtuple
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flowcraft.errors import BlueprintError, ExpressionError
from flowcraft.expressions import (
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    Expression,
    ExpressionEvaluator,
    compile_expression,
)
from flowcraft.runtime import routing


class Order(msgspec.Struct):
    total: int
    lines: list[dict[str, Any]]
    meta: dict[str, Any] | None = None


@dataclasses.dataclass
class Customer:
    name: str
    tier: int
    _secret: str = "hidden"

    @property
    def shout(self) -> str:
        return self.name.upper()

    def method(self) -> str:
        return "called"


Point = namedtuple("Point", "x y")


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Color(enum.StrEnum):
    RED = "red"

SCOPE: dict[str, Any] = {
    "result": {"output": {"total": 5, "items": [1, 2, 3], "name": "ok"}, "action": "ok"},
    "order": Order(total=42, lines=[{"sku": "a"}, {"sku": "b"}], meta={"k": "v"}),
    "customer": Customer(name="ada", tier=2),
    "point": Point(3, 4),
    "nums": [10, 20, 30],
    "tup": (1, 2),
    "flags": [True, False],
    "empty": [],
    "text": "hello",
    "zero": 0,
    "one": 1,
    "half": 0.5,
    "yes": True,
    "no": False,
    "nothing": None,
    "mapping": {"_outputs": {"n1": 7}, "a b": 1, 0: "int key", "length": 99},
    "key": "action",
    "level": Level.HIGH,
    "proxy": types.MappingProxyType({"a": 1, "_x": 2, "nested": {"b": [5]}}),
    "color": Color.RED,
}


def ev(source: str, scope: Mapping[str, Any] | None = None) -> Any:
    return compile_expression(source).evaluate(SCOPE if scope is None else scope)


# --------------------------------------------------------------------------------------------
# The table: both spellings, literals, access rules, None propagation
# --------------------------------------------------------------------------------------------

TABLE: list[tuple[str, Any]] = [
    # literals
    ("1", 1),
    ("0", 0),
    ("1.5", 1.5),
    (".5", 0.5),
    ("1e3", 1000.0),
    ("2.5E-1", 0.25),
    ('"double"', "double"),
    ("'single'", "single"),
    (r'"a\"b\\c\nd\te"', 'a"b\\c\nd\te'),
    (r"'it\'s'", "it's"),
    (r'"\u00e9\x41\u{1F600}"', "\u00e9A\U0001f600"),
    (r'"\ud83d\ude00"', "\U0001f600"),
    ("''", ""),
    ("true", True),
    ("false", False),
    ("null", None),
    ("True", True),
    ("False", False),
    ("None", None),
    ("undefined", None),
    # equality, both spellings; booleans never equal numbers
    ("1 == 1", True),
    ("1 === 1", True),
    ("1 == 1.0", True),
    ("1 != 2", True),
    ("1 !== 1", False),
    ("'a' == 'a'", True),
    ("'a' === \"a\"", True),
    ("1 == true", False),
    ("0 == false", False),
    ("one == yes", False),
    ("1 != true", True),
    ("true == True", True),
    ("null == None", True),
    ("nothing == null", True),
    ("missing == null", True),
    ("zero == null", False),
    ("nums == nums", True),
    # ordering
    ("1 < 2", True),
    ("2 <= 2", True),
    ("3 > 2", True),
    ("2 >= 3", False),
    ("'a' < 'b'", True),
    ("half < one", True),
    # logic, both spellings, returning operand values
    ("true and false", False),
    ("true && true", True),
    ("false or true", True),
    ("false || false", False),
    ("not true", False),
    ("!false", True),
    ("!!text", True),
    ("not nothing", True),
    ("missing || 'default'", "default"),
    ("text || 'default'", "hello"),
    ("zero or 7", 7),
    ("text && 5", 5),
    ("empty && 5", []),
    ("nothing and 1", None),
    # arithmetic
    ("1 + 2", 3),
    ("5 - 7", -2),
    ("6 * 7", 42),
    ("7 / 2", 3.5),
    ("7 % 3", 1),
    ("-7 % 3", 2),
    ("-one", -1),
    ("- -1", 1),
    ("--1", 1),
    ("'ab' + 'cd'", "abcd"),
    ("nums + tup", [10, 20, 30, 1, 2]),
    ("text + text + '!'", "hellohello!"),
    ("half * 4", 2.0),
    # membership
    ("2 in tup", True),
    ("5 in tup", False),
    ("true in tup", False),
    ("1 in flags", False),
    ("true in flags", True),
    ("'ell' in text", True),
    ("'action' in result", True),
    ("'nope' in result", False),
    ("'nope' not in result", True),
    ("20 not in nums", False),
    ("1 in nothing", False),
    ("1 in 5", False),
    # member access on dicts, lists, a msgspec Struct, a dataclass, a named tuple
    ("result.output.total", 5),
    ("result['output']['total']", 5),
    ('result["action"]', "ok"),
    ("result[key]", "ok"),
    ("result.output.items[0]", 1),
    ("result.output.items[-1]", 3),
    ("result.output.items[-3]", 1),
    ("result.output.items[-4]", None),
    ("result.output.items[3]", None),
    ("result.output.items[1 + 1]", 3),
    ("result.output.items['0']", None),
    ("result.output.items[true]", None),
    ("result.output.items[0.0]", None),
    ("result.output.items.length", 3),
    ("text.length", 5),
    ("mapping.length", 99),
    ("mapping._outputs.n1", 7),
    ("mapping['a b']", 1),
    ("mapping[0]", "int key"),
    # any Mapping, not only dict
    ("proxy.a", 1),
    ("proxy._x", 2),
    ("proxy['a']", 1),
    ("proxy.nested.b[0]", 5),
    ("proxy.nope", None),
    ("'a' in proxy", True),
    ("len(proxy)", 3),
    ("order.total", 42),
    ("order.lines[1].sku", "b"),
    ("order['total']", 42),
    ("order.meta.k", "v"),
    ("order.nope", None),
    ("customer.name", "ada"),
    ("customer.tier * 2", 4),
    ("customer.shout", "ADA"),
    ("customer._secret", None),
    ("customer['_secret']", None),
    ("customer.method", None),
    ("point.x + point.y", 7),
    ("point[1]", 4),
    ("point.count", None),
    ("one.real", None),
    ("text.upper", None),
    # keywords are fine as member names
    ("mapping.in", None),
    ("result.output.true", None),
    # optional chaining is the same as plain access (None propagates anyway)
    ("result?.output?.total", 5),
    ("result?.['output']?.['total']", 5),
    ("missing?.a?.b", None),
    ("nums?.[0]", 10),
    # missing names and None propagation
    ("missing", None),
    ("missing.a.b.c", None),
    ("missing[0]['x']", None),
    ("nothing.a", None),
    ("result.nope.deeper", None),
    ("result.output.total.more", None),
    ("missing > 0", False),
    ("missing + 1", None),
    ("len(missing)", None),
    # len
    ("len(nums)", 3),
    ("len(text)", 5),
    ("len(result)", 2),
    ("len('')", 0),
    ("len(order)", None),
    ("len(5)", None),
    ("len (nums) == 3", True),
    # int and str subclasses (enums) behave as their values
    ("level > 1", True),
    ("level == 2", True),
    ("level + 1", 3),
    ("-level", -2),
    ("level == true", False),
    ("color == 'red'", True),
    ("color != 'red'", False),
    ("color + '!'", "red!"),
    ("'e' in color", True),
    ("len(color)", 3),
]


@pytest.mark.parametrize(("source", "expected"), TABLE)
def test_table(source: str, expected: Any) -> None:
    value = ev(source)
    assert value == expected
    assert type(value) is type(expected)  # 1 vs True vs 1.0 matter here


# --------------------------------------------------------------------------------------------
# Failure semantics: never an exception at evaluation time
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("nothing > 0", False),
        ("nothing <= 0", False),
        ("'a' < 1", False),
        ("text >= nums", False),
        ("true < 2", False),
        ("true < false", False),
        ("false < true", True),
        ("order < order", False),
        ("nothing + 1", None),
        ("'a' + 1", None),
        ("1 + 'a'", None),
        ("nums + 'a'", None),
        ("true + 1", None),
        ("'a' - 'b'", None),
        ("1 / 0", None),
        ("1 / zero", None),
        ("1.5 / 0.0", None),
        ("5 % 0", None),
        ("-'a'", None),
        ("-nothing", None),
        ("-yes", None),
        ("'a' * 3", None),
        ("nums * 2", None),
        ("3 * text", None),
        ("'a' * 1000000000", None),
        ("nums / 2", None),
        ("len(one)", None),
        ("1 in order", False),
        ("order in nums", False),
    ],
)
def test_incompatible_operands_give_false_or_none(source: str, expected: Any) -> None:
    assert ev(source) is expected


def test_huge_integer_products_are_refused() -> None:
    # 2**1024 is about the range of a JavaScript/JSON number; beyond that `*` yields None
    assert ev("x * x", {"x": 2**500}) == 2**1000
    assert ev("x * x", {"x": 2**600}) is None
    chain = "*".join(["x"] * 4000)
    started = time.perf_counter()
    assert ev(chain, {"x": 10**9}) is None
    assert time.perf_counter() - started < 1.0


def test_long_concatenation_chains_are_linear_and_capped() -> None:
    chain = "+".join(["s"] * 4990)
    started = time.perf_counter()
    assert ev(chain, {"s": "ab"}) == "ab" * 4990
    assert ev(chain, {"s": "x" * 5000}) is None  # 25M characters: over the cap
    assert ev(chain + " + 1", {"s": "ab"}) is None
    assert ev(chain + " - 1", {"s": "x" * 2000}) is None
    assert ev("s + s - 1 + s", {"s": "ab"}) is None
    assert ev("1 + 2 - 3 + 4.5", {}) == 4.5
    assert ev("x * y / z % 4", {"x": 6, "y": 5, "z": 2}) == 3.0
    assert ev("x / z * y", {"x": 6, "y": 5, "z": 0}) is None
    assert ev("+".join(["n"] * 4999), {"n": 2}) == 2 * 4999
    assert time.perf_counter() - started < 1.0


def test_values_whose_dunders_raise_never_escape() -> None:
    class Hostile:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(name)

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("eq")

        def __hash__(self) -> int:
            raise RuntimeError("hash")

        def __lt__(self, other: object) -> bool:
            raise RuntimeError("lt")

        def __bool__(self) -> bool:
            raise RuntimeError("bool")

        def __len__(self) -> int:
            raise RuntimeError("len")

    scope = {"h": Hostile(), "d": {"k": 1}, "l": [1, 2]}
    assert ev("h.x", scope) is None
    assert ev("h == 1", scope) is False
    assert ev("h != 1", scope) is True
    assert ev("h < 1", scope) is False
    assert ev("len(h)", scope) is None
    assert ev("!h", scope) is False  # truthiness that raises counts as true
    assert ev("h && 2", scope) == 2
    assert ev("h in l", scope) is False
    assert ev("d[h]", scope) is None
    assert ev("h + 1", scope) is None


# --------------------------------------------------------------------------------------------
# Precedence and short-circuit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("10 - (4 - 3)", 9),
        ("100 / 10 / 5", 2.0),
        ("7 - 5 % 3", 5),
        ("-2 * 3", -6),
        ("-result.output.total", -5),
        ("1 + 2 == 3", True),
        ("(1 < 2) == true", True),
        ("true || false && false", True),
        ("(true || false) && false", False),
        ("true or false and false", True),
        ("not 1 == 2", True),  # Python: not (1 == 2)
        ("!1 == false", True),  # JavaScript: (!1) == false
        ("not true or true", True),
        ("not (true or true)", False),
        ("not true and false", False),
        ("! true || true", True),
        ("1 in tup and 3 in tup", False),
        ("1 + 1 in tup", True),
        ("not 2 in tup", False),
        ("result.output.total > 0 && result.action == 'ok'", True),
        ("result.output.total > 0 and result.action === \"no\" or zero", 0),
    ],
)
def test_precedence(source: str, expected: Any) -> None:
    assert ev(source) == expected


class RecordingScope(Mapping[str, Any]):
    """A scope that records which names were looked up."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.seen: list[str] = []

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.append(key)
        return self.data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


@pytest.mark.parametrize(
    ("source", "expected", "looked_up"),
    [
        ("f && boom.x", False, ["f"]),
        ("f and boom", False, ["f"]),
        ("t || boom", True, ["t"]),
        ("t or boom", True, ["t"]),
        ("f && a && boom", False, ["f"]),
        ("t && a && boom", None, ["t", "a", "boom"]),
        ("f || f || t || boom", True, ["f", "f", "t"]),
        ("f || a", 1, ["f", "a"]),
    ],
)
def test_short_circuit(source: str, expected: Any, looked_up: list[str]) -> None:
    scope = RecordingScope({"t": True, "f": False, "a": 1})
    assert compile_expression(source).evaluate(scope) == expected
    assert scope.seen == looked_up


# --------------------------------------------------------------------------------------------
# names, caching, the API objects
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("result.output.x > a", {"result", "a"}),
        ("len(items) > 0", {"items"}),
        ("len", {"len"}),  # only a call is the built-in; a bare `len` is an ordinary name
        ("a[b.c][d]", {"a", "b", "d"}),
        ("x.len.y", {"x"}),
        ("'a' + \"b\" == null", set()),
        ("true && True && undefined", set()),
        ("not a in b", {"a", "b"}),
        ("mapping._outputs['n1'] || other", {"mapping", "other"}),
        ("(a)?.b?.[c]", {"a", "c"}),
    ],
)
def test_names(source: str, names: set[str]) -> None:
    expression = compile_expression(source)
    assert expression.names == frozenset(names)
    assert isinstance(expression.names, frozenset)


def test_compile_is_cached_and_expression_is_immutable() -> None:
    first = compile_expression("a.b == 1")
    assert compile_expression("a.b == 1") is first
    assert first.source == "a.b == 1"
    assert first == Expression("a.b == 1")
    assert hash(first) == hash(Expression("a.b == 1"))
    assert first != compile_expression("a.b == 2")
    with pytest.raises(AttributeError):
        first.source = "other"
    with pytest.raises(AttributeError):
        first.names = frozenset()
    with pytest.raises(AttributeError):
        del first.source
    assert first.source == "a.b == 1"
    assert first.evaluate({"a": {"b": 1}}) is True
    assert first.evaluate({"a": {"b": 1}}) is True  # reusable


def test_compile_expression_lints_a_source() -> None:
    assert compile_expression("a * 2").evaluate({"a": 21}) == 42
    with pytest.raises(ExpressionError):
        compile_expression("a *")


def test_a_custom_evaluator_satisfies_the_one_protocol() -> None:
    class Upper:
        def evaluate(self, expression: str, scope: Mapping[str, Any]) -> Any:
            return expression.upper()

    assert routing.ExpressionEvaluator is ExpressionEvaluator
    assert isinstance(Upper(), ExpressionEvaluator)
    assert not isinstance(object(), ExpressionEvaluator)


def test_expression_error_is_a_blueprint_error() -> None:
    with pytest.raises(BlueprintError):
        compile_expression("1 +")


@pytest.mark.parametrize("bad", [None, 1, b"a == 1", ["a"], {"a": 1}])
def test_non_string_sources_raise_expression_error(bad: Any) -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        compile_expression(bad)


# --------------------------------------------------------------------------------------------
# Syntax errors: the message names the position and shows the expression
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "position", "fragment"),
    [
        ("", 0, "empty expression"),
        ("   ", 3, "empty expression"),
        ("a +", 3, "unexpected end"),
        ("a + )", 4, "unexpected ')'"),
        ("(a", 2, "expected ')'"),
        ("a[1", 3, "expected ']'"),
        ("a = 1", 2, "use '=='"),
        ("a & b", 2, "use '&&'"),
        ("a | b", 2, "use '||'"),
        ("a ** 2", 3, "unexpected '*'"),
        ("a // 2", 3, "unexpected '/'"),
        ("'abc", 0, "unterminated string"),
        ("'\\q'", 1, "unknown escape"),
        ("'\\x4'", 1, "invalid escape"),
        ("'\\u12'", 1, "invalid escape"),
        ("'\\u{110000}'", 1, "invalid escape"),
        ("a.", 2, "expected a member name"),
        ("a?.1", 3, "expected a member name"),
        ("a b", 2, "unexpected 'b'"),
        ("1 2", 2, "unexpected '2'"),
        ("a < b < c", 6, "chained comparisons"),
        ("a == b != c", 7, "chained comparisons"),
        ("a in b in c", 7, "chained comparisons"),
        ("foo(1)", 3, "only len"),
        ("a.b(1)", 3, "only len"),
        ("len(a, b)", 5, "exactly one argument"),
        ("len()", 4, "unexpected ')'"),
        ("()", 1, "empty parentheses"),
        ("[1, 2]", 0, "unexpected '['"),
        ("{}", 0, "unexpected character '{'"),
        ("a ? b : c", 2, "unexpected character '?'"),
        ("a not b", 2, "unexpected 'not'"),
        ("a and", 5, "unexpected end"),
        ("and a", 0, "unexpected 'and'"),
        ("x.__class__()", 11, "only len"),
        ("a @ b", 2, "unexpected character '@'"),
        ("1" * 5000, 0, "number literal too long"),
    ],
)
def test_syntax_errors_name_the_position(source: str, position: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    message = str(info.value)
    assert fragment in message
    assert f"at position {position}" in message
    # the message quotes the source whole, or an 80-character window of it: only the
    # 5000-digit case is longer, and it fails at position 0, so its window is the start
    quoted = source if len(source) <= 80 else source[:80] + "..."
    assert message.endswith(f" at position {position} in expression {quoted!r}"), message


def test_error_message_truncates_long_expressions_around_the_position() -> None:
    source = "a + " * 300 + ") + b"
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    message = str(info.value)
    assert f"at position {source.index(')')}" in message
    assert len(message) < 200
    assert "'... + a + a" in message
    assert "a + ) + b'" in message


# --------------------------------------------------------------------------------------------
# Bounds
# --------------------------------------------------------------------------------------------


def test_length_limit() -> None:
    at_limit = "1" + " " * (MAX_EXPRESSION_LENGTH - 1)
    assert compile_expression(at_limit).evaluate({}) == 1
    with pytest.raises(ExpressionError, match="characters long"):
        compile_expression(at_limit + " ")


def test_one_hundred_thousand_nested_parentheses() -> None:
    source = "(" * 100_000 + "1" + ")" * 100_000
    with pytest.raises(ExpressionError):  # not RecursionError
        compile_expression(source)


@pytest.mark.parametrize(
    ("make", "levels_per_step"),
    [
        (lambda n: "(" * n + "1" + ")" * n, 1),
        (lambda n: "-" * n + "1", 1),
        (lambda n: "!" * n + "x", 1),
        (lambda n: "not " * n + "x", 1),
        (lambda n: "a[" * n + "0" + "]" * n, 1),
        (lambda n: "len(" * n + "x" + ")" * n, 1),
        # a right operand is one level, its parentheses another
        (lambda n: "1" + " + (1" * n + ")" * n, 2),
        (lambda n: "x" + " || (x" * n + ")" * n, 2),
    ],
)
def test_depth_limit(make: Any, levels_per_step: int) -> None:
    steps = MAX_DEPTH // levels_per_step
    compile_expression(make(steps))  # exactly at the limit is fine
    with pytest.raises(ExpressionError, match=f"deeper than {MAX_DEPTH}"):
        compile_expression(make(steps + 1))
    deepest = steps
    while len(make(deepest * 2)) <= MAX_EXPRESSION_LENGTH:
        deepest *= 2
    with pytest.raises(ExpressionError, match=f"deeper than {MAX_DEPTH}"):
        compile_expression(make(deepest))  # thousands of levels: still no RecursionError


def test_nesting_at_the_limit_evaluates() -> None:
    assert ev("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH) == 1
    assert ev("-" * MAX_DEPTH + "1") == 1
    assert ev("!" * MAX_DEPTH + "yes") is True
    assert ev("a[" * MAX_DEPTH + "0" + "]" * MAX_DEPTH, {"a": [0]}) == 0
    assert ev("len(" * MAX_DEPTH + "'abc'" + ")" * MAX_DEPTH) is None  # len(3) has no length
    assert ev("len(" * MAX_DEPTH + "x" + ")" * MAX_DEPTH, {"x": "abc"}) is None
    assert ev("len(" + "x" + ")", {"x": "abc"}) == 3


def test_flat_chains_are_not_depth_limited() -> None:
    # member chains, and same-level operator chains, compile flat (no recursion)
    members = "a" + ".b" * 4999
    deep: dict[str, Any] = {"b": "end"}
    for _ in range(4998):
        deep = {"b": deep}
    assert ev(members, {"a": deep}) == "end"
    assert ev(members, {}) is None
    assert ev(" && ".join(["t"] * 2000), {"t": 1}) == 1
    assert ev(" || ".join(["f"] * 2000), {"f": 0}) == 0
    assert ev("-".join(["1"] * 4999)) == 1 - 4998
    assert ev("-".join(["x"] * 4999), {"x": 1}) == 1 - 4998


def test_deepest_expressions_evaluate_from_a_deep_call_stack() -> None:
    # every operator level nested as deep as the parser allows
    unit = "a * b + c == d and e or ("
    levels = 0
    while True:
        try:
            compile_expression(unit * (levels + 1) + "x" + ")" * (levels + 1))
        except ExpressionError as error:
            assert str(error).startswith(f"expression nested deeper than {MAX_DEPTH} levels")
            break
        levels += 1
    # each unit nests twice: the operand right of `or`, then the parenthesis
    assert levels == MAX_DEPTH // 2
    expression = compile_expression(unit * levels + "x" + ")" * levels)
    scope = {"a": 1, "b": 1, "c": 1, "d": 3, "e": 0, "x": "bottom"}

    def at_depth(n: int) -> Any:
        return at_depth(n - 1) if n else expression.evaluate(scope)

    assert at_depth(sys.getrecursionlimit() // 2) == "bottom"


# --------------------------------------------------------------------------------------------
# Escape attempts: never leak Python internals, never call anything
# --------------------------------------------------------------------------------------------


class Plain:
    def __init__(self) -> None:
        self.visible = 1
        self.function = len
        self.module = math
        self.klass = Customer
        self.generator = (i for i in range(3))


ESCAPE_SCOPE: dict[str, Any] = {
    "x": Plain(),
    "result": Customer(name="r", tier=1),
    "order": SCOPE["order"],
    "d": {"k": 1},
    "l": [1],
    "s": "str",
    "n": 1,
}

ESCAPES = [
    "x.__class__",
    "x['__class__']",
    "x.__dict__",
    "x.__class__.__mro__",
    "x.__class__.__subclasses__",
    "len.__self__",
    "len.__self__.__import__",
    "result.__init__.__globals__",
    "result.__init__['__globals__']",
    "result.method.__func__.__globals__",
    "result.method",
    "result.__class__.__base__",
    "order.__struct_fields__",
    "order.__class__",
    "order.to_dict",
    "d.__class__",
    "d.items",
    "d.get",
    "l.__class__",
    "l.append",
    "l.pop",
    "s.__class__",
    "s.format",
    "s.join",
    "n.__class__",
    "n.real.__class__",
    "x.function",
    "x.module",
    "x.module.pi",
    "x.klass",
    "x.klass.mro",
    "x.generator",
    "x.generator.gi_frame",
    "x.generator.gi_frame.f_globals",
    "x._Plain__x",
    "x[x]",
    "'abc'.__len__",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_escape_attempts_yield_none(source: str) -> None:
    assert compile_expression(source).evaluate(ESCAPE_SCOPE) is None


@pytest.mark.parametrize(
    "source",
    [
        "().__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "len.__self__.__import__('os')",
        "x.__class__()",
        "x.visible()",
        "len(x)(1)",
        "getattr(x, '__class__')",
        "__import__('os')",
        "eval('1')",
        "lambda: 1",
        "[c for c in ()]",
        "x if x else y",
        "f'{x}'",
        "x.y = 1",
        "a; b",
        "'a' * 10**9",
        "2 ** 10",
    ],
)
def test_python_syntax_beyond_the_language_is_rejected(source: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(source)


def test_visible_data_attributes_remain_reachable() -> None:
    assert ev("x.visible + 1", ESCAPE_SCOPE) == 2
    assert ev("result.name", ESCAPE_SCOPE) == "r"


# --------------------------------------------------------------------------------------------
# Property tests
# --------------------------------------------------------------------------------------------

# `make chaos` raises this to 10,000 through FLOWCRAFT_FUZZ_EXAMPLES.
FAST = settings(max_examples=int(os.environ.get("FLOWCRAFT_FUZZ_EXAMPLES", "300")),
                derandomize="FLOWCRAFT_FUZZ_EXAMPLES" not in os.environ,
                deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = [
    "a", "b", "result", "len", "not", "and", "or", "in", "true", "null", "None", "1", "2.5",
    "'s'", '"t"', "(", ")", "[", "]", ".", "?.", ",", "+", "-", "*", "/", "%", "==", "===",
    "!=", "!==", "<", "<=", ">", ">=", "&&", "||", "!", "'", '"', "\\", "?", "=", "&", "|",
    "__class__", "output", "0", "-1", "1e5", "\\u", "{", "}",
]


ASCII_SPACE = " \t\n\r\x0b\x0c"  # what the lexer skips (`\s` under re.ASCII)
# characters that always lex as a token of their own kind, outside a string
PLAIN = frozenset(string.ascii_letters + string.digits + "_" + ASCII_SPACE + "-+*/%<>!()[].,")
POSITION = re.compile(r" at position (\d+) in expression ")


def _assert_names_a_position(error: ExpressionError, source: str) -> None:
    (position,) = POSITION.findall(str(error))
    assert 0 <= int(position) <= len(source), str(error)


def _text_verdict(source: str) -> str | None:
    """The error prefix `source` must be rejected with, when the text alone decides it."""
    if not source.strip(ASCII_SPACE):
        return f"empty expression at position {len(source)} in expression "
    for position, char in enumerate(source):
        if char in PLAIN:
            continue
        if char in "\"'=&|?":  # may open a string or belong to `==`, `&&`, `||`, `?.`: open
            return None
        return f"unexpected character {char!r} at position {position} in expression "
    return None  # only characters of the language: whether they form an expression is open


@FAST
@given(st.text(max_size=200))
def test_random_text_only_raises_expression_error(source: str) -> None:
    """Blank text, and text whose first character outside the language comes before any quote
    or `= & | ?`, must be rejected exactly there. Whether any other text parses is open (only a
    second parser could tell), so there the test only requires one of two clean outcomes: an
    ExpressionError naming a position inside the text, or an expression keeping its source.
    (200 characters never reach MAX_EXPRESSION_LENGTH, so the length error cannot occur.)"""
    expected = _text_verdict(source)
    try:
        expression = compile_expression(source)
    except ExpressionError as error:
        if expected is not None:
            assert str(error).startswith(expected), (str(error), expected)
        _assert_names_a_position(error, source)
    else:
        assert expected is None, f"{source!r} loaded; expected {expected!r}"
        assert expression.source == source


# the first of these outside a string stops the lexer (spaced out, none can join a neighbour)
LEX_ERRORS = {
    "\\": "unexpected character '\\\\'", "\\u": "unexpected character '\\\\'",
    "{": "unexpected character '{'", "}": "unexpected character '}'",
    "?": "unexpected character '?'", "=": "unexpected '=' (use '==' to compare)",
    "&": "unexpected '&' (use '&&')", "|": "unexpected '|' (use '||')",
}
NEVER_VALID = frozenset({"\\", "\\u", "{", "}", ","})  # no token joins these, none parses them
NEEDS_OPERAND = frozenset({
    "(", "[", ".", "?.", ",", "+", "-", "*", "/", "%", "==", "===", "!=", "!==", "<", "<=", ">",
    ">=", "&&", "||", "!",
})
NEEDS_OPERAND_WORDS = frozenset({"not", "and", "or", "in"})  # joined to a neighbour unless spaced


def _soup_verdict(tokens: list[str], spaced: bool) -> str | None:
    """The error prefix the soup must be rejected with ("" when only rejection is certain), or
    None when the tokens alone do not decide it."""
    if "'" in tokens or '"' in tokens:
        return None  # a lone quote may swallow the rest into a string, or be closed by another
    if not tokens:
        return "empty expression at position 0 in expression "
    if spaced:
        position = 0
        for token in tokens:
            if token in LEX_ERRORS:
                return f"{LEX_ERRORS[token]} at position {position} in expression "
            position += len(token) + 1
    unbalanced = (tokens.count("(") != tokens.count(")")
                  or tokens.count("[") != tokens.count("]"))
    member_name = len(tokens) > 1 and tokens[-2] in (".", "?.")  # `a . not` reads member "not"
    dangling = tokens[-1] in NEEDS_OPERAND or (
        spaced and tokens[-1] in NEEDS_OPERAND_WORDS and not member_name)
    if NEVER_VALID.intersection(tokens) or unbalanced or dangling:
        return ""
    return None


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=40), st.booleans())
def test_random_token_soup_only_raises_expression_error(tokens: list[str], spaced: bool) -> None:
    """A soup that is empty, has a lexer error (when spaced), a comma, a backslash or brace,
    unbalanced brackets, or ends wanting an operand must be rejected (with the exact message
    where the tokens decide which error comes first). Whether any other soup parses is open:
    it must either raise an ExpressionError naming a position or compile and evaluate."""
    source = (" " if spaced else "").join(tokens)
    expected = _soup_verdict(tokens, spaced)
    try:
        expression = compile_expression(source)
    except ExpressionError as error:
        if expected is not None:
            assert str(error).startswith(expected), (str(error), expected)
        _assert_names_a_position(error, source)
        return
    assert expected is None, f"{source!r} loaded; expected {expected!r}"
    expression.evaluate({"a": 1, "b": [1, 2], "result": {"output": {"x": 1}}})


NAMES = ["a", "b", "c", "result", "items", "_outputs"]
KEYS = ["a", "b", "output", "action", "x", "_outputs", "length", "__class__", "name"]


@dataclasses.dataclass
class Box:
    a: Any
    name: str = "box"


class Bag(msgspec.Struct):
    a: Any
    x: int = 1


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # JSON escapes are valid in the language
    if isinstance(value, float):
        return repr(value)
    return str(value)


literals = st.one_of(
    st.integers(min_value=0, max_value=10**12).map(str),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=8).map(_literal),
    st.sampled_from(["true", "false", "null", "True", "False", "None", "undefined"]),
)
names = st.sampled_from(NAMES)
member_names = st.sampled_from(KEYS)
BINARY_OPS = [
    "==", "===", "!=", "!==", "<", "<=", ">", ">=", "in", "not in", "and", "&&", "or", "||",
    "+", "-", "*", "/", "%",
]


# A generated expression is labelled with the parser depth it needs (sub-expressions parsed one
# level deeper: a parenthesis, an operand right of an operator, a unary operand, an index, len's
# argument), so a test knows whether it must load or must be refused as nested too deeply.
Labelled = tuple[str, int]
_LOOSER_THAN_NOT = frozenset({"and", "&&", "or", "||"})


def _binary_depth(left: Labelled, op: str, right: Labelled) -> int:
    # a bare `not x` on the left takes a tighter operator and its right operand inside itself
    inside_not = left[0].startswith("not ") and op not in _LOOSER_THAN_NOT
    return max(1 + left[1], (3 if inside_not else 2) + right[1])


def _extend(inner: st.SearchStrategy[Labelled]) -> st.SearchStrategy[Labelled]:
    binary = st.tuples(inner, st.sampled_from(BINARY_OPS), inner)
    unary = st.tuples(st.sampled_from(["-", "!", "not "]), inner)
    member = st.tuples(inner, st.sampled_from([".", "?."]), member_names)
    index = st.tuples(inner, st.sampled_from(["[", "?.["]), inner)
    return st.one_of(
        binary.map(lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})", _binary_depth(*t))),
        unary.map(lambda t: (f"{t[0]}({t[1][0]})", 2 + t[1][1])),
        member.map(lambda t: (f"({t[0][0]}){t[1]}{t[2]}", 1 + t[0][1])),
        index.map(lambda t: (f"({t[0][0]}){t[1]}{t[2][0]}]", 1 + max(t[0][1], t[2][1]))),
        inner.map(lambda e: (f"len({e[0]})", 1 + e[1])),
    )


expressions = st.recursive(st.one_of(literals, names).map(lambda leaf: (leaf, 0)), _extend,
                           max_leaves=25)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(member_names, inner, max_size=4),
        st.builds(Box, inner),
        st.builds(Bag, inner),
    ),
    max_leaves=12,
)
internals = st.sampled_from([len, math, Customer, print, (i for i in range(1)), lambda: 1])
scope_values = st.one_of(json_values, internals.map(Box))
scopes = st.dictionaries(names, scope_values, max_size=6)


def _is_internal(value: Any) -> bool:
    return callable(value) or isinstance(
        value, types.ModuleType | types.FrameType | types.CodeType | types.GeneratorType | type
    )


def _truthy(value: Any) -> bool:
    try:
        return bool(value)
    except Exception:
        return True


comparable = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=5),
    st.floats(min_value=-5, max_value=5, allow_nan=False),
    st.sampled_from(["", "ok", "no"]),
    st.sampled_from([Level.LOW, Level.HIGH, Color.RED]),
    st.lists(st.integers(min_value=-2, max_value=2), max_size=2),
)
constants = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=0, max_value=5),
    st.floats(min_value=0, max_value=5, allow_nan=False),
    st.sampled_from(["", "ok", "no", "red"]),
)


@FAST
@given(comparable, st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "+", "*", "in"]), constants)
def test_constant_fast_paths_agree_with_the_general_path(x: Any, op: str, c: Any) -> None:
    fast = compile_expression(f"x {op} {json.dumps(c)}").evaluate({"x": x})
    general = compile_expression(f"x {op} y").evaluate({"x": x, "y": c})
    assert fast == general
    assert type(fast) is type(general)


@FAST
@given(st.text())
def test_string_literals_round_trip_json_escapes(text: str) -> None:
    assert compile_expression(json.dumps(text)).evaluate({}) == text
    assert compile_expression(json.dumps(text, ensure_ascii=False)).evaluate({}) == text


@FAST
@given(expressions, scopes)
def test_random_well_formed_expressions_evaluate(labelled: Labelled,
                                                 scope: dict[str, Any]) -> None:
    """Every generated expression loads, unless its label says it nests deeper than MAX_DEPTH
    (with 25 leaves the deepest seen is about 10; the deep branch is decided all the same)."""
    source, depth = labelled
    if depth + 2 > MAX_DEPTH:  # `!(...)` adds two levels
        too_deep = source if depth > MAX_DEPTH else f"!({source})"
        with pytest.raises(ExpressionError, match=f"nested deeper than {MAX_DEPTH} levels"):
            compile_expression(too_deep)
        return
    expression = compile_expression(source)
    assert expression.names <= frozenset(NAMES)
    started = time.perf_counter()
    value = expression.evaluate(scope)
    negated = compile_expression(f"!({source})").evaluate(scope)
    assert time.perf_counter() - started < 0.5
    # internals are only reachable as attributes here, and attribute access refuses them
    assert not _is_internal(value)
    assert negated is (not _truthy(value))


# Ways to break a well-formed expression S, with the error each must give: (template, message,
# where the error points given len(S), parser levels the template adds around S).
BREAKAGES = [
    ("{} +", "unexpected end of expression", lambda n: n + 2, 1),
    ("({}", "expected ')' but the expression ended", lambda n: n + 1, 1),
    ("{})", "unexpected ')'", lambda n: n, 0),
    ("{} @", "unexpected character '@'", lambda n: n + 1, 0),
    ("({0}) ({0})", "only len(...) can be called", lambda n: n + 3, 1),
    ("({0}) == ({0}) == ({0})", "chained comparisons are ambiguous; add parentheses",
     lambda n: 2 * n + 9, 2),
]


@FAST
@given(expressions, st.sampled_from(BREAKAGES))
def test_random_broken_expressions_are_rejected_where_they_break(
        labelled: Labelled, breakage: tuple[str, str, Any, int]) -> None:
    """Invalid by construction: each must be rejected with its own message and position."""
    source, depth = labelled
    template, message, position, levels = breakage
    assume(depth + levels <= MAX_DEPTH)
    broken = template.format(source)
    with pytest.raises(ExpressionError) as info:
        compile_expression(broken)
    assert str(info.value).startswith(
        f"{message} at position {position(len(source))} in expression "), str(info.value)
