"""What the operators mean on plain data, and how far an expression may reach into it.

Every function here takes already-evaluated values and never raises: a failed operation gives
None or False, so a blueprint's bad data cannot crash a run. This is also the safety boundary:
member access only walks mappings, sequences and public, non-callable attributes, so no
expression can reach a dunder, a method, a frame or a module.
"""

from __future__ import annotations

import operator
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
from typing import Any

_KIND_CACHE_SIZE = 4096

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
NUMBER_TYPES = frozenset({int, float})
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
    if len(_KINDS) > _KIND_CACHE_SIZE:  # pathological: many generated classes
        _KINDS.clear()
        _KINDS.update(_SEED_KINDS)
    _KINDS[type(value)] = kind
    return kind


def _kind(value: Any) -> int:
    kind = _KINDS.get(type(value))
    return _learn_kind(value) if kind is None else kind


def member(obj: Any, key: Any) -> Any:
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


def truthy(value: Any) -> bool:
    """Python truthiness; a value whose truthiness raises counts as true, like a plain object."""
    try:
        return bool(value)
    except Exception:
        return True


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def equals(a: Any, b: Any) -> bool:
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
            return any(equals(item, element) for element in container)
        if kind == _SEQUENCE or type(container) in (set, frozenset):
            return bool(item in container)
    except Exception:
        return False
    return False


def _not_contains(item: Any, container: Any) -> bool:
    return not _contains(item, container)


def _not_equals(a: Any, b: Any) -> bool:
    return not equals(a, b)


def add(a: Any, b: Any) -> Any:
    """Numbers add; two strings or two lists concatenate (up to _MAX_CONCAT); else None."""
    ta, tb = type(a), type(b)
    try:
        if ta in NUMBER_TYPES and tb in NUMBER_TYPES:
            return a + b
        if isinstance(a, str) and isinstance(b, str):
            return str.__add__(a, b) if len(a) + len(b) <= _MAX_CONCAT else None
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            return [*a, *b] if len(a) + len(b) <= _MAX_CONCAT else None
        if is_number(a) and is_number(b):
            return a + b
    except Exception:  # int too large to convert to float
        return None
    return None


def concatenate(values: list[Any]) -> Any:
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
    if not ((type(a) in NUMBER_TYPES or is_number(a)) and (
        type(b) in NUMBER_TYPES or is_number(b)
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
        if (type(a) in NUMBER_TYPES or is_number(a)) and (
            type(b) in NUMBER_TYPES or is_number(b)
        ):
            try:
                return op(a, b)
            except Exception:  # division by zero, overflow
                return None
        return None

    return apply


def _negate(value: Any) -> Any:
    try:
        return -value if is_number(value) else None
    except Exception:  # a hostile int subclass
        return None


def _not(value: Any) -> bool:
    return not truthy(value)


def length(value: Any) -> Any:
    if value is None:
        return None
    try:
        return len(value)
    except Exception:
        return None


BINARY_FUNCTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "+": add,
    "-": _numeric(operator.sub),
    "*": _multiply,
    "/": _numeric(operator.truediv),
    "%": _numeric(operator.mod),
    "==": equals,
    "!=": _not_equals,
    "<": _ordering(operator.lt),
    "<=": _ordering(operator.le),
    ">": _ordering(operator.gt),
    ">=": _ordering(operator.ge),
    "in": _contains,
    "not in": _not_contains,
}
UNARY_FUNCTIONS: dict[str, Callable[[Any], Any]] = {"-": _negate, "not": _not}


__all__ = [
    "BINARY_FUNCTIONS",
    "NUMBER_TYPES",
    "UNARY_FUNCTIONS",
    "add",
    "concatenate",
    "equals",
    "is_number",
    "length",
    "member",
    "truthy",
]
