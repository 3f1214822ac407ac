"""A small, safe expression language for edge conditions, transforms and loop conditions.

Blueprints are data, often written by someone other than the person running them, so their
expressions must not be able to run code, reach Python internals, or exhaust the process. The
language is therefore parsed by hand (tokenizer + Pratt parser) and compiled into a tree of
plain closures; nothing here uses `eval`, `exec` or the `ast` module. Both the JavaScript and the
Python spellings of the operators are accepted so that blueprints written for the TypeScript
Flowcraft work unchanged. See docs/expressions.md for the language reference.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from numbers import Number
from types import (
    AsyncGeneratorType,
    CellType,
    CodeType,
    CoroutineType,
    FrameType,
    GeneratorType,
    ModuleType,
    TracebackType,
)
from typing import Any, NoReturn, Protocol, runtime_checkable

from flowcraft.errors import ExpressionError

MAX_EXPRESSION_LENGTH = 10_000
MAX_DEPTH = 100

_CACHE_SIZE = 4096
_SNIPPET = 80

_Scope = Mapping[str, Any]
_Fn = Callable[[_Scope], Any]


# --------------------------------------------------------------------------------------------
# Value semantics shared by the compiled closures. None of these may raise.
# --------------------------------------------------------------------------------------------

# How a value may be navigated; decided once per type and cached, because the ABC checks are
# the slow part of member access.
_MAPPING, _SEQUENCE, _RECORD, _STRING, _SCALAR, _OBJECT, _INTERNAL = range(7)

# Objects whose public attributes lead to frames, globals or code: never navigated into.
_INTERNAL_TYPES = (
    type, ModuleType, FrameType, CodeType, TracebackType, CellType,
    GeneratorType, CoroutineType, AsyncGeneratorType,
)
_SEED_KINDS: dict[type, int] = {
    dict: _MAPPING, list: _SEQUENCE, tuple: _SEQUENCE, str: _STRING, int: _SCALAR,
    float: _SCALAR, bool: _SCALAR, type(None): _SCALAR, bytes: _SCALAR, set: _SCALAR,
    frozenset: _SCALAR,
}
_KINDS: dict[type, int] = dict(_SEED_KINDS)
_NUMBER_TYPES = frozenset({int, float})
# Growth limits: without loops nothing grows exponentially, but a 10,000-character chain of
# `*` or `+` over scope values could still build huge integers or strings quadratically.
_MAX_INT_BITS = 1024  # about the range of a JSON/JavaScript number
_MAX_CONCAT = 10_000_000  # characters or items in a concatenation result
_LIST_TYPES = frozenset({list, tuple})


def _learn_kind(value: Any) -> int:
    """Classify a type not seen before (the cache stays small: types, not values)."""
    try:
        if isinstance(value, str):
            kind = _STRING
        elif isinstance(value, Mapping):
            kind = _MAPPING
        elif isinstance(value, bytes | bytearray | memoryview | Number | set | frozenset):
            kind = _SCALAR
        elif isinstance(value, tuple) and hasattr(type(value), "_fields"):
            kind = _RECORD  # a named tuple: indexable and with named fields
        elif isinstance(value, Sequence):
            kind = _SEQUENCE
        elif isinstance(value, _INTERNAL_TYPES) or callable(value):
            kind = _INTERNAL
        else:
            kind = _OBJECT
    except Exception:  # a class whose metaclass misbehaves: treat it as untouchable
        kind = _INTERNAL
    if len(_KINDS) > _CACHE_SIZE:  # pathological: many generated classes
        _KINDS.clear()
        _KINDS.update(_SEED_KINDS)
    _KINDS[type(value)] = kind
    return kind


def _kind(value: Any) -> int:
    kind = _KINDS.get(type(value))
    return _learn_kind(value) if kind is None else kind


def _member(obj: Any, key: Any) -> Any:
    """`obj.key` / `obj[key]`: mappings by key, lists by int index, objects by public attribute.

    Attribute access is the only way out of plain data, so it refuses names starting with `_`
    (no dunders) and anything callable or interpreter-internal (no methods, frames, modules).
    """
    if obj is None:
        return None
    cls = type(obj)
    if cls is dict:
        try:
            return obj.get(key)
        except Exception:  # unhashable (or hostile) dynamic key
            return None
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _learn_kind(obj)
    try:
        if kind == _MAPPING:
            return obj.get(key)
        if kind in (_SEQUENCE, _RECORD):
            if type(key) is int:
                size = len(obj)
                return obj[key] if -size <= key < size else None
            if kind == _SEQUENCE:
                return len(obj) if type(key) is str and key == "length" else None
        if kind == _STRING:
            return len(obj) if type(key) is str and key == "length" else None
        if kind in (_OBJECT, _RECORD) and type(key) is str and not key.startswith("_"):
            value = getattr(obj, key, None)
            return None if _kind(value) == _INTERNAL else value
    except Exception:
        return None
    return None


def _truthy(value: Any) -> bool:
    """Python truthiness; a value whose truthiness raises counts as true, like a plain object."""
    try:
        return bool(value)
    except Exception:
        return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equals(a: Any, b: Any) -> bool:
    """Python equality, except that a boolean only ever equals a boolean (`1 == true` is false)."""
    if (type(a) is bool) is not (type(b) is bool):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def _ordering(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if (type(a) is bool) is not (type(b) is bool):
            return False
        try:
            return bool(op(a, b))
        except Exception:  # None > 0, "a" < 1, ...
            return False

    return compare


def _contains(item: Any, container: Any) -> bool:
    """`item in container`: substring, mapping key, or element (strict equality for lists)."""
    try:
        kind = _kind(container)
        if kind == _STRING:
            return isinstance(item, str) and item in container
        if kind == _MAPPING:
            return bool(item in container)
        if type(container) in _LIST_TYPES and isinstance(item, int | float):
            return any(_equals(item, element) for element in container)
        if kind == _SEQUENCE or type(container) in (set, frozenset):
            return bool(item in container)
    except Exception:
        return False
    return False


def _not_contains(item: Any, container: Any) -> bool:
    return not _contains(item, container)


def _not_equals(a: Any, b: Any) -> bool:
    return not _equals(a, b)


def _add(a: Any, b: Any) -> Any:
    """Numbers add; two strings or two lists concatenate (up to _MAX_CONCAT); else None."""
    ta, tb = type(a), type(b)
    try:
        if ta in _NUMBER_TYPES and tb in _NUMBER_TYPES:
            return a + b
        if isinstance(a, str) and isinstance(b, str):
            return str.__add__(a, b) if len(a) + len(b) <= _MAX_CONCAT else None
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            return [*a, *b] if len(a) + len(b) <= _MAX_CONCAT else None
        if _is_number(a) and _is_number(b):
            return a + b
    except Exception:  # int too large to convert to float
        return None
    return None


def _concatenate(values: list[Any]) -> Any:
    """`a + b + c + ...` over strings or lists in linear time, not by quadratic pairwise copies.

    Returns NotImplemented when the operands are not all strings or all lists.
    """
    try:
        if all(isinstance(v, str) for v in values):
            if sum(map(len, values)) > _MAX_CONCAT:
                return None
            return "".join(values)
        if all(isinstance(v, list | tuple) for v in values):
            if sum(map(len, values)) > _MAX_CONCAT:
                return None
            return [item for v in values for item in v]
    except Exception:  # a hostile str/list subclass
        return None
    return NotImplemented


def _multiply(a: Any, b: Any) -> Any:
    """Numbers only (no string/list repetition); integer products beyond 2**1024 are None."""
    if not ((type(a) in _NUMBER_TYPES or _is_number(a)) and (
        type(b) in _NUMBER_TYPES or _is_number(b)
    )):
        return None
    try:
        if isinstance(a, int) and isinstance(b, int) and (
            a.bit_length() + b.bit_length() > _MAX_INT_BITS
        ):
            return None
        return a * b
    except Exception:  # int too large to convert to float
        return None


def _numeric(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Arithmetic defined on numbers only: no string/list repetition, errors become None."""

    def apply(a: Any, b: Any) -> Any:
        if (type(a) in _NUMBER_TYPES or _is_number(a)) and (
            type(b) in _NUMBER_TYPES or _is_number(b)
        ):
            try:
                return op(a, b)
            except Exception:  # division by zero, overflow
                return None
        return None

    return apply


def _negate(value: Any) -> Any:
    try:
        return -value if _is_number(value) else None
    except Exception:  # a hostile int subclass
        return None


def _not(value: Any) -> bool:
    return not _truthy(value)


def _length(value: Any) -> Any:
    if value is None:
        return None
    try:
        return len(value)
    except Exception:
        return None


_BINARY_FUNCTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "+": _add,
    "-": _numeric(operator.sub),
    "*": _multiply,
    "/": _numeric(operator.truediv),
    "%": _numeric(operator.mod),
    "==": _equals,
    "!=": _not_equals,
    "<": _ordering(operator.lt),
    "<=": _ordering(operator.le),
    ">": _ordering(operator.gt),
    ">=": _ordering(operator.ge),
    "in": _contains,
    "not in": _not_contains,
}
_UNARY_FUNCTIONS: dict[str, Callable[[Any], Any]] = {"-": _negate, "not": _not}


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<num>(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<str>"[^"\\]*(?:\\.[^"\\]*)*"|'[^'\\]*(?:\\.[^'\\]*)*')
    | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||\?\.|[-+*/%<>!().\[\],])
    """,
    re.VERBOSE | re.DOTALL | re.ASCII,
)
_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0",
    "\\": "\\", '"': '"', "'": "'", "/": "/", "\n": "",
}
_HEX_RE = re.compile(r"[0-9A-Fa-f]+", re.ASCII)

# (kind, text, position, literal value)
_Token = tuple[str, str, int, Any]


def _snippet(source: str, position: int) -> str:
    if len(source) <= _SNIPPET:
        return source
    start = max(0, min(position - _SNIPPET // 2, len(source) - _SNIPPET))
    text = source[start:start + _SNIPPET]
    return ("..." if start else "") + text + ("..." if start + _SNIPPET < len(source) else "")


def _fail(source: str, message: str, position: int) -> NoReturn:
    raise ExpressionError(
        f"{message} at position {position} in expression {_snippet(source, position)!r}"
    )


def _unescape(source: str, body: str, start: int) -> str:
    """Decode JS/Python-style backslash escapes; unknown escapes are errors, not literals."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1]  # the regex guarantees a character after a backslash
        where = start + i
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
            continue
        if esc == "x":
            digits, i = body[i + 2:i + 4], i + 4
            valid = len(digits) == 2
        elif esc == "u" and body[i + 2:i + 3] == "{":
            close = body.find("}", i + 3)
            if close < 0:
                _fail(source, "unterminated \\u{...} escape", where)
            digits, i = body[i + 3:close], close + 1
            valid = 1 <= len(digits) <= 6
        elif esc == "u":
            digits, i = body[i + 2:i + 6], i + 6
            valid = len(digits) == 4
        else:
            _fail(source, f"unknown escape '\\{esc}'", where)
        if not valid or not _HEX_RE.fullmatch(digits) or int(digits, 16) > 0x10FFFF:
            _fail(source, f"invalid escape '\\{esc}{digits[:8]}'", where)
        code = int(digits, 16)
        out.append(chr(code))
    text = "".join(out)
    # Join UTF-16 surrogate pairs written as two \u escapes, as JavaScript does.
    if any("\ud800" <= c <= "\udfff" for c in text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return text


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    append = tokens.append
    match = _TOKEN_RE.match
    pos, end = 0, len(source)
    while pos < end:
        m = match(source, pos)
        if m is None:
            ch = source[pos]
            if ch in "\"'":
                _fail(source, "unterminated string", pos)
            if ch == "=":
                _fail(source, "unexpected '=' (use '==' to compare)", pos)
            if ch in "&|":
                _fail(source, f"unexpected '{ch}' (use '{ch * 2}')", pos)
            _fail(source, f"unexpected character {ch!r}", pos)
        kind = m.lastgroup
        text = m.group()
        if kind == "num":
            try:
                value: Any = (
                    float(text) if "." in text or "e" in text or "E" in text else int(text)
                )
            except ValueError:  # more digits than int() accepts
                _fail(source, "number literal too long", pos)
            append(("num", text, pos, value))
        elif kind == "str":
            append(("str", text, pos, _unescape(source, text[1:-1], pos + 1)))
        elif kind != "ws":
            append((kind or "op", text, pos, None))
        pos = m.end()
    append(("end", "", end, None))
    return tokens


# --------------------------------------------------------------------------------------------
# Syntax tree
# --------------------------------------------------------------------------------------------


class _Node:
    __slots__ = ()


class _Const(_Node):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Name(_Node):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Access(_Node):
    """A whole postfix chain `base.a[b]?.c`, kept flat so long chains cost no recursion."""

    __slots__ = ("base", "steps")

    def __init__(self, base: _Node) -> None:
        self.base = base
        self.steps: list[_Node] = []


class _Unary(_Node):
    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: _Node) -> None:
        self.op = op
        self.operand = operand


class _Chain(_Node):
    """Same-precedence binary operators applied left to right: `a + b - c`, `a && b && c`.

    Kept flat (instead of a left-deep tree) so long chains cost no evaluation recursion.
    """

    __slots__ = ("operands", "ops")

    def __init__(self, first: _Node) -> None:
        self.operands: list[_Node] = [first]
        self.ops: list[str] = []


class _Call(_Node):
    __slots__ = ("arg",)

    def __init__(self, arg: _Node) -> None:
        self.arg = arg


# --------------------------------------------------------------------------------------------
# Pratt parser
# --------------------------------------------------------------------------------------------

_OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _UNARY = 10, 20, 30, 40, 50, 60, 70

# token text -> (binding power, canonical operator)
_INFIX: dict[str, tuple[int, str]] = {
    "or": (_OR, "or"), "||": (_OR, "or"),
    "and": (_AND, "and"), "&&": (_AND, "and"),
    "==": (_COMPARE, "=="), "===": (_COMPARE, "=="),
    "!=": (_COMPARE, "!="), "!==": (_COMPARE, "!="),
    "<": (_COMPARE, "<"), "<=": (_COMPARE, "<="), ">": (_COMPARE, ">"), ">=": (_COMPARE, ">="),
    "in": (_COMPARE, "in"),
    "+": (_SUM, "+"), "-": (_SUM, "-"),
    "*": (_PRODUCT, "*"), "/": (_PRODUCT, "/"), "%": (_PRODUCT, "%"),
}
_LITERAL_WORDS: dict[str, Any] = {
    "true": True, "True": True, "false": False, "False": False,
    "null": None, "None": None, "undefined": None,
}
_RESERVED = frozenset({"and", "or", "not", "in"})


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.index = 0
        self.depth = 0
        self.names: set[str] = set()

    def fail(self, message: str, token: _Token) -> NoReturn:
        _fail(self.source, message, token[2])

    def unexpected(self, token: _Token) -> NoReturn:
        if token[0] == "end":
            self.fail("unexpected end of expression", token)
        self.fail(f"unexpected {token[1]!r}", token)

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, text: str) -> _Token:
        token = self.tokens[self.index]
        if token[0] != "op" or token[1] != text:
            if token[0] == "end":
                self.fail(f"expected {text!r} but the expression ended", token)
            self.fail(f"expected {text!r} but found {token[1]!r}", token)
        self.index += 1
        return token

    def parse(self) -> _Node:
        if self.tokens[0][0] == "end":
            self.fail("empty expression", self.tokens[0])
        node = self.expression(0)
        token = self.tokens[self.index]
        if token[0] != "end":
            self.unexpected(token)
        return node

    def nested(self, rbp: int, token: _Token) -> _Node:
        """Parse a sub-expression one level deeper; the only place parser recursion grows."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"expression nested deeper than {MAX_DEPTH} levels", token)
        node = self.expression(rbp)
        self.depth -= 1
        return node

    def expression(self, rbp: int) -> _Node:
        left = self.prefix()
        chain_bp = 0  # binding power of the flat chain `left` currently is, if any
        while True:
            token = self.tokens[self.index]
            kind, text = token[0], token[1]
            if kind == "op" or kind == "word":
                if text == "not" and kind == "word":
                    after = self.tokens[self.index + 1]
                    if after[0] != "word" or after[1] != "in":
                        return left
                    bp, op, width = _COMPARE, "not in", 2
                elif text in _INFIX:
                    bp, op = _INFIX[text]
                    width = 1
                else:
                    return left
            else:
                return left
            if bp <= rbp:
                return left
            self.index += width
            if bp == _COMPARE and chain_bp == _COMPARE:
                self.fail("chained comparisons are ambiguous; add parentheses", token)
            right = self.nested(bp, token)
            # Same-level operators extend the chain (comparisons never get here twice).
            chain = left if chain_bp == bp and isinstance(left, _Chain) else _Chain(left)
            chain.ops.append(op)
            chain.operands.append(right)
            left, chain_bp = chain, bp

    def prefix(self) -> _Node:
        token = self.advance()
        kind, text = token[0], token[1]
        node: _Node
        if kind == "num" or kind == "str":
            node = _Const(token[3])
        elif kind == "word":
            if text in _LITERAL_WORDS:
                node = _Const(_LITERAL_WORDS[text])
            elif text == "not":
                return _Unary("not", self.nested(_NOT, token))
            elif text in _RESERVED:
                self.unexpected(token)
            elif text == "len" and self.tokens[self.index][1] == "(" and (
                self.tokens[self.index][0] == "op"
            ):
                self.index += 1
                arg = self.nested(0, token)
                if self.tokens[self.index][1] == ",":
                    self.fail("len() takes exactly one argument", self.tokens[self.index])
                self.expect(")")
                node = _Call(arg)
            else:
                self.names.add(text)
                node = _Name(text)
        elif kind == "op":
            if text == "(":
                if self.tokens[self.index][1] == ")":
                    self.fail("empty parentheses", self.tokens[self.index])
                node = self.nested(0, token)
                self.expect(")")
            elif text == "-":
                return _Unary("-", self.nested(_UNARY, token))
            elif text == "!":
                return _Unary("not", self.nested(_UNARY, token))
            else:
                self.unexpected(token)
        else:
            self.unexpected(token)
        return self.postfix(node)

    def postfix(self, node: _Node) -> _Node:
        access: _Access | None = None
        while True:
            token = self.tokens[self.index]
            if token[0] != "op":
                return node
            text = token[1]
            if text == "." or text == "?.":
                self.index += 1
                if text == "?." and self.tokens[self.index][1] == "[":
                    continue  # `a?.[k]` is `a[k]`: the `[` is handled on the next turn
                name = self.advance()
                if name[0] != "word":
                    self.fail(f"expected a member name after {text!r}", name)
                step: _Node = _Const(name[1])
            elif text == "[":
                self.index += 1
                step = self.nested(0, token)
                self.expect("]")
            elif text == "(":
                self.fail("only len(...) can be called", token)
            else:
                return node
            if access is None:
                access = _Access(node)
                node = access
            access.steps.append(step)


# --------------------------------------------------------------------------------------------
# Compilation to closures
# --------------------------------------------------------------------------------------------


def _constant(value: Any) -> _Fn:
    def const(scope: _Scope) -> Any:
        return value

    return const


def _compile(node: _Node) -> tuple[_Fn, bool]:
    """Compile a node to a closure over the scope; the flag says it is a constant (folded)."""
    if isinstance(node, _Const):
        return _constant(node.value), True
    if isinstance(node, _Name):
        return operator.methodcaller("get", node.name), False
    if isinstance(node, _Access):
        fn, const = _compile_access(node)
    elif isinstance(node, _Unary):
        operand, const = _compile(node.operand)
        fn = _compile_unary(_UNARY_FUNCTIONS[node.op], operand)
    elif isinstance(node, _Call):
        arg, const = _compile(node.arg)
        fn = _compile_unary(_length, arg)
    else:
        assert isinstance(node, _Chain)
        compiled = [_compile(operand) for operand in node.operands]
        fns = [fn for fn, _ in compiled]
        const = all(c for _, c in compiled)
        op = node.ops[0]
        if op == "and" or op == "or":
            fn = _compile_logic(op == "and", fns)
        elif len(fns) == 2:
            fn = _compile_binary(op, fns[0], fns[1], compiled[1][1])
        else:
            fn = _compile_arithmetic([_BINARY_FUNCTIONS[o] for o in node.ops], fns)
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
            if _truthy(value) is not is_and:
                return value
        return last(scope)

    return logic


def _compile_binary(op: str, left: _Fn, right: _Fn, right_const: bool) -> _Fn:
    function = _BINARY_FUNCTIONS[op]
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
            return _equals(got, value) is not negate

        return equals_string
    if op in ("<", "<=", ">", ">=") and type(value) in _NUMBER_TYPES:
        compare = _BINARY_FUNCTIONS[op]
        raw = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}[op]

        def order_number(scope: _Scope) -> Any:
            got = left(scope)
            if type(got) in _NUMBER_TYPES:
                return raw(got, value)
            return compare(got, value)

        return order_number
    return None


def _compile_arithmetic(functions: list[Callable[[Any, Any], Any]], fns: list[_Fn]) -> _Fn:
    """A chain of three or more `+ - * / %` operands, evaluated without quadratic copying.

    Left to right, a chain only stays non-None if all its operands are numbers, or (for a
    chain of `+` alone) all strings or all lists, which are joined in one go.
    """
    only_plus = all(function is _add for function in functions)

    def arithmetic(scope: _Scope) -> Any:
        values = [fn(scope) for fn in fns]
        if only_plus:
            joined = _concatenate(values)
            if joined is not NotImplemented:
                return joined
        if not all(_is_number(v) for v in values):
            return None
        value = values[0]
        for function, other in zip(functions, values[1:], strict=True):
            value = function(value, other)
            if value is None:  # division by zero or overflow: stays None
                return None
        return value

    return arithmetic


def _compile_access(node: _Access) -> tuple[_Fn, bool]:
    base, const = _compile(node.base)
    steps: list[tuple[bool, Any]] = []
    for step in node.steps:
        fn, step_const = _compile(step)
        if step_const:
            steps.append((False, fn({})))
        else:
            steps.append((True, fn))
            const = False
    if isinstance(node.base, _Name) and not any(dynamic for dynamic, _ in steps):
        return _compile_path(node.base.name, tuple(key for _, key in steps)), False
    member = _member

    def access(scope: _Scope) -> Any:
        value = base(scope)
        for dynamic, key in steps:
            if value is None:
                return None
            value = member(value, key(scope) if dynamic else key)
        return value

    return access, const


def _compile_path(root: str, keys: tuple[Any, ...]) -> _Fn:
    """`name.a.b` with constant keys: unrolled for short paths, with a plain-dict fast path."""
    member = _member
    if len(keys) == 1:
        (k1,) = keys

        def path1(scope: _Scope) -> Any:
            value = scope.get(root)
            return value.get(k1) if type(value) is dict else member(value, k1)

        return path1
    if len(keys) == 2:
        k1, k2 = keys

        def path2(scope: _Scope) -> Any:
            value = scope.get(root)
            value = value.get(k1) if type(value) is dict else member(value, k1)
            return value.get(k2) if type(value) is dict else member(value, k2)

        return path2
    if len(keys) == 3:
        k1, k2, k3 = keys

        def path3(scope: _Scope) -> Any:
            value = scope.get(root)
            value = value.get(k1) if type(value) is dict else member(value, k1)
            value = value.get(k2) if type(value) is dict else member(value, k2)
            return value.get(k3) if type(value) is dict else member(value, k3)

        return path3

    def path(scope: _Scope) -> Any:
        value = scope.get(root)
        for key in keys:
            if value is None:
                return None
            value = value.get(key) if type(value) is dict else member(value, key)
        return value

    return path


# --------------------------------------------------------------------------------------------
# Public API
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
                f"{MAX_EXPRESSION_LENGTH}: {_snippet(source, 0)!r}"
            )
        parser = _Parser(source)
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


@runtime_checkable
class Evaluator(Protocol):
    """What the runtime needs from an expression engine; pass your own as `evaluator=`."""

    def evaluate(self, expression: str, scope: Mapping[str, Any]) -> Any: ...


class DefaultEvaluator:
    """The built-in language as an `Evaluator`."""

    __slots__ = ()

    def evaluate(self, expression: str, scope: Mapping[str, Any]) -> Any:
        return compile_expression(expression).evaluate(scope)

    def check(self, expression: str) -> None:
        """Raise ExpressionError if `expression` does not compile (for linting blueprints)."""
        compile_expression(expression)


__all__ = [
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "DefaultEvaluator",
    "Evaluator",
    "Expression",
    "compile_expression",
]
