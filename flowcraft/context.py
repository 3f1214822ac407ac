"""The run's context: an async key/value store whose values must be msgspec-JSON encodable.

The async interface lets the same node code read a local dict (in memory) or Redis
(distributed). Values are checked at `set` time so a bad value fails where it is written,
never later on the wire, and never through a pickle fallback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import msgspec

from flowcraft.errors import ContextError

_PLAIN = (int, float, bool, type(None))
_json_encode = msgspec.json.encode

OUTPUTS_PREFIX = "_outputs."


def output_key(node_id: str) -> str:
    """The flat context key holding a node's output (its mirror is the bare node id)."""
    return OUTPUTS_PREFIX + node_id


def ensure_encodable(key: str, value: Any) -> None:
    """Raise ContextError naming `key` (never the value: it may be a secret)."""
    if type(key) is not str:
        raise ContextError(f"context keys must be strings, got {type(key).__name__}")
    kind = type(value)
    if kind in _PLAIN or (kind is str and value.isascii()):
        return
    try:
        _json_encode(value)
    except (TypeError, ValueError, msgspec.EncodeError, RecursionError) as exc:
        raise ContextError(
            f"context key {key!r}: value of type {type(value).__name__} is not "
            f"msgspec-JSON encodable ({type(exc).__name__})"
        ) from None


@runtime_checkable
class Context(Protocol):
    """What a node sees as `ctx.context`."""

    async def get(self, key: str, default: Any = None) -> Any: ...
    async def set(self, key: str, value: Any) -> None: ...
    async def has(self, key: str) -> bool: ...
    async def delete(self, key: str) -> bool: ...
    async def to_dict(self) -> dict[str, Any]: ...


ChangeListener = Callable[[str, str, Any], Awaitable[None]]
"""Called with (key, op, value) after a change; op is "set" or "delete"."""


class MemoryContext:
    """A dict-backed context. `data` is the live dict, used directly by the in-memory runtime."""

    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = {} if data is None else data

    async def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        ensure_encodable(key, value)
        self.data[key] = value

    async def has(self, key: str) -> bool:
        return key in self.data

    async def delete(self, key: str) -> bool:
        return self.data.pop(key, _MISSING) is not _MISSING

    async def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


class NodeScopedContext:
    """One node's view of the run context: errors name the run and node, and (when a listener
    is given) every change is reported for `context:change` events."""

    __slots__ = ("_base", "_listener", "_node_id", "_run_id")

    def __init__(self, base: Context, run_id: str, node_id: str,
                 listener: ChangeListener | None = None) -> None:
        self._base = base
        self._run_id = run_id
        self._node_id = node_id
        self._listener = listener

    async def get(self, key: str, default: Any = None) -> Any:
        return await self._base.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        try:
            await self._base.set(key, value)
        except ContextError as exc:
            raise ContextError(f"run {self._run_id!r}, node {self._node_id!r}: {exc}") from None
        if self._listener is not None:
            await self._listener(key, "set", value)

    async def has(self, key: str) -> bool:
        return await self._base.has(key)

    async def delete(self, key: str) -> bool:
        deleted = await self._base.delete(key)
        if deleted and self._listener is not None:
            await self._listener(key, "delete", None)
        return deleted

    async def to_dict(self) -> dict[str, Any]:
        return await self._base.to_dict()


_MISSING = object()

__all__ = [
    "ChangeListener",
    "Context",
    "MemoryContext",
    "NodeScopedContext",
    "ensure_encodable",
    "output_key",
]
