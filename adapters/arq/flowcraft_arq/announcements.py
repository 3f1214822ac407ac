"""One subscription per client for every run's announcements (it ended, or paused).

Waiting for a run used to subscribe to its channel: a connection taken from the pool, a
SUBSCRIBE and an UNSUBSCRIBE per wait. A client instead holds one pattern subscription to all
its prefix's run channels, and one task hands each message to the waits of that run.
A message missed while the subscription reconnects is covered by `wait` re-reading the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger("flowcraft.arq.client")


class Announcements:
    """The messages on the channels matching `pattern`, handed to whoever `expect`s them."""

    def __init__(self, redis: Any, pattern: str) -> None:
        self._redis = redis
        self._pattern = pattern
        self._waiting: dict[bytes, list[asyncio.Future[bytes]]] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Lock()

    async def listen(self) -> None:
        """Subscribe (once; returns when Redis confirmed it, so nothing published from now
        on is missed) and start handing messages out."""
        if self._task is not None:
            return
        async with self._ready:
            if self._task is not None:
                return
            pubsub = self._redis.pubsub()
            await pubsub.psubscribe(self._pattern)
            while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "psubscribe":
                pass
            self._pubsub = pubsub
            self._task = asyncio.get_running_loop().create_task(self._hand_out())

    def expect(self, channel: str) -> asyncio.Future[bytes]:
        """A future for the next message on `channel` (`forget` it when done)."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(channel.encode(), []).append(future)
        return future

    def forget(self, channel: str, future: asyncio.Future[bytes]) -> None:
        waiting = self._waiting.get(channel.encode())
        if waiting is not None and future in waiting:
            waiting.remove(future)
            if not waiting:
                del self._waiting[channel.encode()]

    async def _hand_out(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True,
                                                         timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection drops; redis-py subscribes again
                log.warning("run announcements: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(0.1)
                continue
            if message is None or message.get("type") != "pmessage":
                continue
            for future in self._waiting.pop(message["channel"], ()):
                if not future.done():
                    future.set_result(message["data"])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None


__all__ = ["Announcements"]
