"""Automatic reconcile: every worker ticks, one of them (under a Redis lock) runs the pass.

A tick tries `SET <prefix>:reconcile:lock <token> NX PX <interval>`. The worker that sets it runs
one reconcile pass; nobody releases the lock, it expires after the interval, so the whole
deployment runs about one pass per interval however many workers it has, and a crashed
reconciler blocks nobody for longer than one interval.

`stalled_after` decides what a pass re-drives: fired instances whose lease has expired (a live
node renews its lease every second, so it is never re-driven, however long it runs) and that
were fired at least `stalled_after` ago. A successor deferred by a durable sleep counts as
fired when its deferred job is due, so no sleep is cut short, whatever `stalled_after` is.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from flowcraft.errors import FlowcraftError
from flowcraft_arq.keys import reconcile_lock_key

log = logging.getLogger("flowcraft.arq.reconcile")

DEFAULT_RECONCILE_EVERY = 60.0
"""Seconds between reconcile passes (CONTRACT §13.2)."""

MIN_STALLED_AFTER = 60.0
"""Floor of the default `stalled_after` (s): also bounds how long a job may wait in a backed-up
queue before a pass enqueues it a second time (harmless: the second claim is refused)."""


class ReconcileSettingsError(FlowcraftError, ValueError):
    """`reconcile_every` or `reconcile_stalled_after` is not a positive number of seconds."""


def check_seconds(name: str, value: float | None) -> float | None:
    """`value` unless it is a bool, not a number, not finite or not > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise ReconcileSettingsError(
            f"worker_settings({name}={value!r}): expected a positive number of seconds or None")
    return float(value)


def default_stalled_after(lease_ms: int) -> float:
    """max(60 s, two leases)."""
    return max(MIN_STALLED_AFTER, 2 * lease_ms / 1000.0)


Pass = Callable[[float], Awaitable[dict[str, int]]]


class Reconciler:
    """The background task of one worker: `tick` every `every` seconds (10% jitter; the first
    tick after half to one interval)."""

    def __init__(self, redis: Any, run_pass: Pass, *, prefix: str, every: float,
                 stalled_after: float) -> None:
        self.redis = redis
        self.run_pass = run_pass
        self.every = every
        self.stalled_after = stalled_after
        self.lock_key = reconcile_lock_key(prefix)
        self.passes = 0

    async def tick(self) -> dict[str, int] | None:
        """Run one pass if this worker wins the interval's lock; its counts, else None."""
        token = secrets.token_hex(8)
        won = await self.redis.set(self.lock_key, token, nx=True, px=int(self.every * 1000))
        if not won:
            return None
        self.passes += 1
        try:
            # a pass longer than the interval is cut short: the lock would let a second one
            # start; what it left (outbox entries) the next pass enqueues
            counts = await asyncio.wait_for(self.run_pass(self.stalled_after), self.every)
        except TimeoutError:
            log.warning("reconcile pass cut short after %.1f s", self.every)
            return None
        if counts.get("reconciled") or counts.get("failed"):
            log.info("reconcile pass: %s", counts)
        else:
            log.debug("reconcile pass: %s", counts)
        return counts

    async def run_forever(self) -> None:
        # the first pass after half to one interval: workers started together spread out, and
        # a worker that only lives briefly (a test's) never writes the lock
        await asyncio.sleep(self.every * random.uniform(0.5, 1.0))
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile pass failed; trying again in %.1f s", self.every)
            await asyncio.sleep(self.every * random.uniform(0.9, 1.1))


TASK_CTX_KEY = "flowcraft_reconciler"


def start(ctx: dict[str, Any], reconciler: Reconciler) -> None:
    """Run `reconciler` in the background of the worker whose arq `ctx` this is."""
    task = asyncio.get_running_loop().create_task(reconciler.run_forever(),
                                                  name="flowcraft-reconciler")
    ctx[TASK_CTX_KEY] = (reconciler, task)


async def stop(ctx: dict[str, Any]) -> None:
    """Cancel the worker's reconciler task (arq `on_shutdown`)."""
    entry = ctx.pop(TASK_CTX_KEY, None)
    if entry is None:
        return
    task: asyncio.Task[None] = entry[1]
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("reconciler task ended with an error")


__all__ = [
    "DEFAULT_RECONCILE_EVERY",
    "ReconcileSettingsError",
    "Reconciler",
    "check_seconds",
    "default_stalled_after",
    "start",
    "stop",
]
