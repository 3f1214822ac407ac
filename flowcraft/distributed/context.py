"""The context a node sees in a distributed worker: reads go to the store, writes are buffered.

A node's writes become visible to other nodes only when its completion is committed (they are
part of the atomic commit); until then only the node itself sees them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from flowcraft.context import ensure_encodable

if TYPE_CHECKING:
    from flowcraft.distributed.protocols import CoordinationStore

_decode = msgspec.json.decode
_encode = msgspec.json.encode
_DELETED = object()
_MISSING = object()


def decode_value(raw: bytes | None, default: Any = None) -> Any:
    return default if raw is None else _decode(raw)


class BufferedContext:
    """`ctx.context` of a distributed node execution (implements `flowcraft.Context`)."""

    __slots__ = ("_cache", "_run_id", "_store", "writes")

    def __init__(self, store: CoordinationStore, run_id: str,
                 prefetched: Mapping[str, Any] | None = None) -> None:
        self._store = store
        self._run_id = run_id
        self._cache: dict[str, Any] = dict(prefetched or {})
        self.writes: dict[str, Any] = {}

    async def _read(self, key: str) -> Any:
        if key in self.writes:
            value = self.writes[key]
            return _MISSING if value is _DELETED else value
        if key in self._cache:
            return self._cache[key]
        raw = (await self._store.get_values(self._run_id, [key]))[0]
        value = _MISSING if raw is None else _decode(raw)
        self._cache[key] = value
        return value

    async def get(self, key: str, default: Any = None) -> Any:
        value = await self._read(key)
        return default if value is _MISSING else value

    async def set(self, key: str, value: Any) -> None:
        ensure_encodable(key, value)
        self.writes[key] = value

    async def has(self, key: str) -> bool:
        return await self._read(key) is not _MISSING

    async def delete(self, key: str) -> bool:
        existed = await self._read(key) is not _MISSING
        self.writes[key] = _DELETED
        return existed

    async def to_dict(self) -> dict[str, Any]:
        data = {k: _decode(v) for k, v in (await self._store.get_context(self._run_id)).items()}
        for key, value in self.writes.items():
            if value is _DELETED:
                data.pop(key, None)
            else:
                data[key] = value
        return data

    async def prefetch(self, keys: Sequence[str]) -> None:
        """Read `keys` in one round trip (those not read or written yet)."""
        missing = [k for k in dict.fromkeys(keys) if k not in self._cache and k not in self.writes]
        if not missing:
            return
        for key, raw in zip(missing, await self._store.get_values(self._run_id, missing),
                            strict=True):
            self._cache[key] = _MISSING if raw is None else _decode(raw)

    def view(self, keys: Sequence[str]) -> _View:
        """A synchronous Mapping over the given (prefetched) keys plus everything written."""
        return _View(self, keys)

    def encoded_writes(self) -> list[tuple[str, bytes | None]]:
        return [(k, None if v is _DELETED else _encode(v)) for k, v in self.writes.items()]


class _View(Mapping[str, Any]):
    """What conditions and input mappings see: prefetched values, overlaid with the writes."""

    __slots__ = ("_data",)

    def __init__(self, ctx: BufferedContext, keys: Sequence[str]) -> None:
        data: dict[str, Any] = {}
        cache = ctx._cache
        for key in keys:
            value = cache.get(key, _MISSING)
            if value is not _MISSING:
                data[key] = value
        for key, value in ctx.writes.items():
            if value is _DELETED:
                data.pop(key, None)
            else:
                data[key] = value
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


__all__ = ["BufferedContext", "decode_value"]
