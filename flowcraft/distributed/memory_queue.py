"""An in-process JobQueue: at-least-once delivery to consumer tasks (tests, adapter authors)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from flowcraft.distributed.protocols import JobPayload, QueuedJob

log = logging.getLogger("flowcraft.distributed.memory")


Handler = Callable[[JobPayload], Awaitable[None]]


class MemoryQueue:
    """A JobQueue for one process: at-least-once delivery to `workers` consumer tasks.

    Like arq, enqueueing an id that is queued or running is a no-op; deferred jobs wait until
    their time. `duplicate(payload)` delivers a payload again on purpose (fault tests).
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[JobPayload] = asyncio.Queue()
        self._ids: set[str] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self.delivered = 0

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None:
        loop = asyncio.get_running_loop()
        for job in jobs:
            job_id = job.payload.job_id
            if job_id in self._ids:
                continue
            self._ids.add(job_id)
            delay = ((job.defer_until_ms - time.time() * 1000) / 1000.0
                     if job.defer_until_ms else 0.0)
            if delay > 0:
                handle = loop.call_later(delay, self._queue.put_nowait, job.payload)
                self._timers.add(handle)
            else:
                self._queue.put_nowait(job.payload)

    def duplicate(self, payload: JobPayload) -> None:
        self._queue.put_nowait(payload)

    def pending(self) -> int:
        return self._queue.qsize()

    async def serve(self, handler: Handler, workers: int = 4) -> None:
        """Consume jobs with `workers` tasks until cancelled."""

        async def consume() -> None:
            while True:
                payload = await self._queue.get()
                try:
                    await handler(payload)
                except Exception:
                    log.exception("job %s raised", payload.job_id)
                finally:
                    self._ids.discard(payload.job_id)
                    self.delivered += 1

        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(consume())

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()


__all__ = ["MemoryQueue"]
