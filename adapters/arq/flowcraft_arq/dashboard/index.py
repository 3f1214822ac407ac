"""The run list over `<prefix>:runs:all` (run id -> created ms), without KEYS or SCAN.

- An unfiltered page is one ZREVRANGE by rank plus one pipelined HMGET per row: the cost does
  not grow with the number of runs.
- A filtered page (status or flow) walks the index newest first in chunks and stops when the
  page is full or after `SCAN_LIMIT` entries; the "older" link continues where it stopped.
- Counts: `total` (ZCARD of the index) and `active` (ZCARD of `runs:active`: running and
  awaiting runs) are exact; the split by status is exact over the newest `SAMPLE` runs only, and
  cached for `COUNTS_TTL_S`. Exact per-status counters would need every status transition in the
  Lua scripts to maintain them; this keeps the scripts untouched at the cost of an estimate.
- Runs whose keys expired (result TTL) leave their id in the index; a page that meets such an id
  removes it (ZREM), so the index shrinks lazily to the runs that still exist.
- The index is opt-in: `enable()` creates it with the member `SENTINEL` (score 0, never a run
  id: the adapter turns an empty run id into a fresh one), and `start_run.lua` adds runs only
  to an index that exists. Deployments without a dashboard keep no index at all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from flowcraft_arq.dashboard.state import (
    ACTIVE,
    ROW_FIELDS,
    RunMeta,
    RunRow,
    parse_meta,
    parse_row,
    stream_ms,
    text,
)
from flowcraft_arq.keys import active_key, runs_index_key
from flowcraft_arq.store import RedisRunStore

SCAN_LIMIT = 5_000
CHUNK = 250
SAMPLE = 500
COUNTS_TTL_S = 3.0
SENTINEL = ""


class Row(msgspec.Struct, frozen=True):
    """One line of the runs table."""

    run: RunRow
    finished_ms: int          # 0 while active
    meta: RunMeta | None      # the full meta of active runs (their current nodes)


class Page(msgspec.Struct, frozen=True):
    rows: tuple[Row, ...]
    offset: int
    next_offset: int | None   # None: nothing older
    scanned: int
    stopped_early: bool       # a filtered walk hit SCAN_LIMIT before filling the page


class Counts(msgspec.Struct, frozen=True):
    total: int
    active: int
    sample_size: int
    by_status: dict[str, int]


class RunIndex:
    def __init__(self, store: RedisRunStore) -> None:
        self.store = store
        self.redis: Any = store.redis
        self.key = runs_index_key(store.prefix)
        self.active_key = active_key(store.prefix)
        self._counts: tuple[float, Counts] | None = None
        self._enabled_at = -COUNTS_TTL_S

    async def enable(self) -> None:
        """Create the index if it does not exist (idempotent): runs started from now on are
        listed. Returns at once when this dashboard already enabled it recently."""
        now = time.monotonic()
        if now - self._enabled_at < COUNTS_TTL_S:
            return
        await self.redis.zadd(self.key, {SENTINEL: 0}, nx=True)
        self.store.runs_listed()  # this process's starts list their runs at once
        self._enabled_at = now

    async def _ids(self, start: int, stop: int) -> list[str]:
        return [text(r) for r in await self.redis.zrevrange(self.key, start, stop)]

    async def _rows(self, ids: Sequence[str]) -> tuple[list[RunRow], list[str]]:
        """Rows of the given runs, and the ids whose keys are gone (pruned here)."""
        ids = [i for i in ids if i != SENTINEL]
        if not ids:
            return [], []
        pipe = self.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.hmget(self.store.keys(run_id).meta, list(ROW_FIELDS))
        found: list[RunRow] = []
        gone: list[str] = []
        for run_id, values in zip(ids, await pipe.execute(), strict=True):
            row = parse_row(run_id, values)
            if row is None:
                gone.append(run_id)
            else:
                found.append(row)
        if gone:
            await self.redis.zrem(self.key, *gone)
        return found, gone

    async def _enrich(self, rows: Sequence[RunRow]) -> list[Row]:
        """Finish time of finished runs (their last event's stream id) and the meta of active
        runs (their current nodes), in one round trip."""
        if not rows:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for row in rows:
            keys = self.store.keys(row.run_id)
            if row.status in ACTIVE:
                pipe.hgetall(keys.meta)
            else:
                pipe.xrevrange(keys.events, count=1)
        out = []
        now = int(time.time() * 1000)
        for row, got in zip(rows, await pipe.execute(), strict=True):
            if row.status in ACTIVE:
                meta = parse_meta(row.run_id, {text(k): text(v) for k, v in got.items()}, now)
                out.append(Row(row, 0, meta))
            else:
                finished = stream_ms(got[0][0]) if got else 0
                out.append(Row(row, finished, None))
        return out

    async def page(self, offset: int = 0, limit: int = 50, *, status: str | None = None,
                   flow: str | None = None) -> Page:
        offset = max(0, offset)
        if not status and not flow:
            ids = await self._ids(offset, offset + limit)   # one more: is there an older page?
            more = len(ids) > limit and ids[limit] != SENTINEL
            ids = ids[:limit]
            rows, gone = await self._rows(ids)
            nxt = offset + len(ids) - len(gone) if more else None
            return Page(tuple(await self._enrich(rows)), offset, nxt, len(ids), False)
        matched: list[RunRow] = []
        cursor, scanned, exhausted = offset, 0, False
        while len(matched) < limit and scanned < SCAN_LIMIT:
            ids = await self._ids(cursor, cursor + CHUNK - 1)
            if not ids or ids == [SENTINEL]:
                exhausted = True
                break
            rows, gone = await self._rows(ids)
            gone_set = set(gone)
            by_id = {r.run_id: r for r in rows}
            consumed = pruned = 0
            for run_id in ids:
                consumed += 1
                if run_id == SENTINEL:
                    continue
                if run_id in gone_set:
                    pruned += 1
                    continue
                row = by_id[run_id]
                if (not status or row.status == status) and (not flow or
                                                             row.blueprint_id == flow):
                    matched.append(row)
                    if len(matched) == limit:
                        break
            scanned += consumed - (SENTINEL in ids[:consumed])
            cursor += consumed - pruned
            if len(ids) < CHUNK and consumed == len(ids):
                exhausted = True
                break
        return Page(tuple(await self._enrich(matched)), offset,
                    None if exhausted else cursor, scanned,
                    not exhausted and len(matched) < limit)

    async def counts(self) -> Counts:
        now = time.monotonic()
        if self._counts is not None and now - self._counts[0] < COUNTS_TTL_S:
            return self._counts[1]
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.key)
        pipe.zcard(self.active_key)
        pipe.zrevrange(self.key, 0, SAMPLE - 1)
        total, active, newest = await pipe.execute()
        ids = [text(r) for r in newest if text(r) != SENTINEL]
        if int(total) == 0:
            self._enabled_at = -COUNTS_TTL_S   # the index vanished (FLUSHDB?): create it again
            await self.enable()
        total = max(0, int(total) - 1)
        by_status: dict[str, int] = {}
        if ids:
            pipe = self.redis.pipeline(transaction=False)
            for run_id in ids:
                pipe.hget(self.store.keys(run_id).meta, "status")
            for raw in await pipe.execute():
                if raw is not None:
                    by_status[text(raw)] = by_status.get(text(raw), 0) + 1
        counts = Counts(int(total), int(active), sum(by_status.values()), by_status)
        self._counts = (now, counts)
        return counts

    async def exists(self, run_id: str) -> bool:
        try:
            keys = self.store.keys(run_id)
        except ValueError:
            return False
        return bool(await self.redis.exists(keys.meta))


__all__ = ["COUNTS_TTL_S", "SAMPLE", "SCAN_LIMIT", "SENTINEL", "Counts", "Page", "Row", "RunIndex"]
