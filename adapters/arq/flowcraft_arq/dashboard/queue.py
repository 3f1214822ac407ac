"""Workers and queue: arq's health check, queue depth, deferred jobs, throughput.

- arq workers write one health-check line per queue (`<queue>:health-check`, refreshed every
  `health_check_interval`); every worker of the queue overwrites it, so it shows the latest
  worker's counters and whether any worker reported within its interval.
- Queue depth is the arq queue's ZCARD; deferred jobs (sleeps, retries with a delay) are the
  members scored after now.
- Runs started per second comes from the run index (exact, any time span). Runs finished per
  second has no index: the dashboard samples `runs:active` while someone looks at the page
  (runs that left it, plus new runs that were never in it) and keeps ten minutes in memory.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import msgspec

from flowcraft_arq.dashboard.state import text
from flowcraft_arq.keys import active_key, runs_index_key

WINDOW_S = 600
BUCKET_S = 10
SAMPLE_EVERY_S = 2.0
MAX_ACTIVE_SAMPLED = 20_000


class Series(msgspec.Struct, frozen=True):
    name: str
    points: tuple[tuple[int, float], ...]   # (seconds ago, per second)
    path: str                               # SVG path in the chart's box


class QueueView(msgspec.Struct, frozen=True):
    queue: str
    health: str                             # "" when no worker reported within its interval
    counters: dict[str, int]                # j_complete, j_failed, j_retried, j_ongoing, ...
    depth: int
    deferred: int
    ready: int
    active_runs: int
    series: tuple[Series, ...]
    chart_w: int
    chart_h: int
    peak: float


def health_counters(line: str) -> dict[str, int]:
    """The `name=value` counters of an arq health-check line."""
    counters = {}
    for part in line.split():
        name, sep, value = part.partition("=")
        if sep and value.isdigit():
            counters[name] = int(value)
    return counters


class QueueMonitor:
    def __init__(self, redis: Any, prefix: str, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.health_key = f"{queue_name}:health-check"
        self.index_key = runs_index_key(prefix)
        self.active_key = active_key(prefix)
        self._last: tuple[float, set[str]] | None = None
        self._finished: deque[tuple[float, int]] = deque()

    async def _sample(self, now: float, active_count: int) -> None:
        if self._last is not None and now - self._last[0] < SAMPLE_EVERY_S:
            return
        if active_count > MAX_ACTIVE_SAMPLED:
            self._last = None
            return
        current = {text(r) for r in await self.redis.zrange(self.active_key, 0, -1)}
        if self._last is not None:
            since_ms = int(self._last[0] * 1000)
            new = {text(r) for r in await self.redis.zrangebyscore(
                self.index_key, f"({since_ms}", int(now * 1000))}
            done = len(self._last[1] - current) + len(new - current - self._last[1])
            self._finished.append((now, done))
        self._last = (now, current)
        while self._finished and self._finished[0][0] < now - WINDOW_S:
            self._finished.popleft()

    async def view(self, width: int = 640, height: int = 140) -> QueueView:
        now = time.time()
        now_ms = int(now * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.health_key)
        pipe.zcard(self.queue_name)
        pipe.zcount(self.queue_name, f"({now_ms}", "+inf")
        pipe.zcard(self.active_key)
        buckets = WINDOW_S // BUCKET_S
        for b in range(buckets):
            hi = now_ms - b * BUCKET_S * 1000
            pipe.zcount(self.index_key, f"({hi - BUCKET_S * 1000}", hi)
        got = await pipe.execute()
        health, depth, deferred, active = got[:4]
        started = [(b * BUCKET_S, int(c) / BUCKET_S) for b, c in enumerate(got[4:])]
        await self._sample(now, int(active))
        finished_buckets: dict[int, int] = {}
        for when, count in self._finished:
            b = int((now - when) // BUCKET_S)
            finished_buckets[b] = finished_buckets.get(b, 0) + count
        finished = [(b * BUCKET_S, c / BUCKET_S) for b, c in sorted(finished_buckets.items())]
        peak = max([v for _, v in started + finished] + [1.0])

        def path(points: list[tuple[int, float]]) -> str:
            coords = []
            for ago, value in sorted(points, key=lambda p: -p[0]):
                x = width - ago * width / WINDOW_S
                y = height - value * (height - 10) / peak
                coords.append(f"{x:.1f},{y:.1f}")
            return ("M" + " L".join(coords)) if coords else ""

        return QueueView(
            self.queue_name, text(health), health_counters(text(health)), int(depth), int(deferred),
            int(depth) - int(deferred), int(active),
            (Series("started/s", tuple(started), path(started)),
             Series("finished/s", tuple(finished), path(finished))),
            width, height, peak)


__all__ = ["QueueMonitor", "QueueView", "Series", "health_counters"]
