"""A run's lanes beyond the one its host task runs, and the run's cancellation.

(See `Run._lane_steps` for when a lane is spawned at all.)
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any


class Lanes:
    """A run's lanes beyond the one its host task runs: asyncio tasks (spawning one is several
    times cheaper than an anyio task) in one asyncio.TaskGroup, entered only when the first is
    spawned: a run whose nodes never wait spawns none (see `Run._lane_steps`). Until then
    only the host task runs lanes, so the group is entered there and has it as its parent.

    `cancel` cancels the host task, as `asyncio.timeout` does, and the group then cancels the
    other lanes; `run_lanes` takes that one cancellation back (`uncancel`), so cancel scopes
    and `wait_for` around the run still see their own. (An anyio CancelScope per run did the
    same at about a quarter of a short run's cost.)
    """

    __slots__ = ("_host", "group", "requested")

    def __init__(self, host: asyncio.Task[Any]) -> None:
        self.group: asyncio.TaskGroup | None = None  # until a lane is spawned
        self._host = host
        self.requested = False

    def spawn(self, lane: Coroutine[Any, Any, None],
              context: contextvars.Context | None = None) -> None:
        group = self.group
        if group is None:
            group = self.group = _entered(asyncio.TaskGroup())
        group.create_task(lane, context=context)

    def cancel(self) -> None:
        if not self.requested:
            self.requested = True
            self._host.cancel()

    async def leave(self, exc: BaseException | None) -> None:
        """Wait for the spawned lanes, handling `exc` (raised in the host's lane) as leaving
        `async with group:` does (TaskGroup never swallows it: it may raise a group)."""
        group = self.group
        if group is None:
            if exc is None:
                return
            group = _entered(asyncio.TaskGroup())  # handles exc as it always did
        if exc is None:
            await group.__aexit__(None, None, None)
        else:
            await group.__aexit__(type(exc), exc, exc.__traceback__)


def _entered(group: asyncio.TaskGroup) -> asyncio.TaskGroup:
    """`group`, entered from synchronous code in the current task (what `async with` does
    first; TaskGroup.__aenter__ never suspends)."""
    entering = group.__aenter__()
    try:
        entering.send(None)
    except StopIteration:
        return group
    entering.close()
    raise RuntimeError("asyncio.TaskGroup.__aenter__ suspended: cannot enter it in place")


__all__ = ["Lanes"]
