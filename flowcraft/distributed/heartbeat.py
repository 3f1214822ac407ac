"""Lease renewal of a running job, paid for only by nodes that run long enough to need it.

A node that ends within the first renewal interval (most nodes) costs one timer: no task, no
task group. A longer one gets its lease renewed every interval until it ends; a renewal that
finds the lease gone (taken over, run cancelled) cancels the node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import Enum

log = logging.getLogger("flowcraft.distributed")


class Beat(Enum):
    """What one renewal found."""

    KEEP = "keep"  # renewed: beat again after the interval
    STOP = "stop"  # nothing to renew any more (the job is settling): stop quietly
    LOST = "lost"  # the lease is gone: stop the node


class Heartbeat:
    """Calls `renew` every `interval` seconds until `stop`, and `lost` once it answers LOST.
    A renewal that raises (Redis restarting, say) is logged and tried again next interval."""

    def __init__(self, renew: Callable[[], Awaitable[Beat]], lost: Callable[[], None],
                 interval: float) -> None:
        self._renew, self._lost, self._interval = renew, lost, interval
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        self._timer = self._loop.call_later(interval, self._due)
        self._task: asyncio.Task[None] | None = None

    def _due(self) -> None:
        self._task = self._loop.create_task(self._beat())

    async def _beat(self) -> None:
        try:
            beat = await self._renew()
        except Exception as exc:  # transient: the next beat tries again
            log.warning("lease renewal failed (%s: %s); trying again", type(exc).__name__, exc)
            beat = Beat.KEEP
        if self._stopped or beat is Beat.STOP:
            return
        if beat is Beat.LOST:
            self._lost()
            return
        self._timer = self._loop.call_later(self._interval, self._due)

    def stop(self) -> None:
        self._stopped = True
        self._timer.cancel()


__all__ = ["Beat", "Heartbeat"]
