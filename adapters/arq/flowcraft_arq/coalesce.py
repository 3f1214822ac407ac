"""Script calls made in the same turn of the event loop, sent to Redis as one call.

A worker runs many jobs at once, and their commits often come due together (the replies that
let them continue arrive in one read of the sockets). Each is a round trip, with its share of
redis-py's and asyncio's work; sent together, in one call of the script's batch form, they cost
one. Nothing waits for a batch to fill: a call goes out in the next turn of the loop with
whatever calls were made in this one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

Call = TypeVar("Call")


class Coalescer(Generic[Call]):
    """Sends the calls made in one turn of the event loop with `many` (one with `one`)."""

    def __init__(self, one: Callable[[Call], Awaitable[Any]],
                 many: Callable[[list[Call]], Awaitable[list[Any]]]) -> None:
        self._one, self._many = one, many
        self._pending: list[tuple[Call, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, call: Call) -> Any:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((call, future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                replies = [await self._one(batch[0][0])]
            else:
                replies = await self._many([call for call, _ in batch])
        except Exception as exc:  # each caller gets what its own call would have raised
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)


__all__ = ["Coalescer"]
