"""What the run page shows: each node's state, the per-node timeline, context and errors.

Node states come from the meta hash (live: fired, leased, done, failed, awaiting, batch and
subflow bookkeeping); the timeline and `skipped` come from the run's event log, which a worker
appends when it commits a node (so a node that is running now shows in the meta hash only).
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Any

import msgspec

from flowcraft.builtins.subflow import child_run_id
from flowcraft.distributed.protocols import JobPayload
from flowcraft.events import Event
from flowcraft.result import WorkflowError
from flowcraft_arq.dashboard.blueprints import FlowInfo
from flowcraft_arq.dashboard.graph import Layout, layout
from flowcraft_arq.dashboard.state import Instance, RunMeta, decode_entries, parse_meta, text
from flowcraft_arq.store import RedisRunStore

EVENTS_SHOWN = 2_000
CONTEXT_CHARS = 200_000
STATES = ("pending", "queued", "running", "completed", "failed", "skipped", "awaiting",
          "sleeping", "cancelled")


class NodeView(msgspec.Struct, frozen=True):
    index: int
    id: str
    state: str
    label: str               # iterations, items, "awaiting", ...
    child_run: str = ""      # a subflow node's child run


class TimelineRow(msgspec.Struct):
    node_id: str
    iteration: int
    status: str = "running"
    started: str = ""
    finished: str = ""
    duration_ms: int | None = None
    attempts: int = 1
    note: str = ""
    sort_key: float = 0.0


class RunView(msgspec.Struct, frozen=True):
    meta: RunMeta
    flow: FlowInfo | None
    layout: Layout | None
    nodes: tuple[NodeView, ...]
    timeline: tuple[TimelineRow, ...]
    context_json: str
    errors: tuple[WorkflowError, ...]
    awaiting: tuple[str, ...]
    children: tuple[tuple[str, str], ...]     # (node id, child run id)
    finished_ms: int

    def live_state(self) -> dict[str, Any]:
        """The part the browser patches into the SVG without a reload."""
        return {"status": self.meta.status,
                "nodes": {n.id: {"state": n.state, "label": n.label} for n in self.nodes}}


def _ts(value: datetime) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3]


def timeline(events: list[Event]) -> list[TimelineRow]:
    rows: dict[tuple[str, int], TimelineRow] = {}
    starts: dict[tuple[str, int], datetime] = {}

    def row(node_id: str, iteration: int, when: datetime) -> TimelineRow:
        key = (node_id, iteration)
        found = rows.get(key)
        if found is None:
            found = rows[key] = TimelineRow(node_id, iteration, started=_ts(when),
                                            sort_key=when.timestamp())
            starts[key] = when
        return found

    def done(r: TimelineRow, key: tuple[str, int], when: datetime, status: str) -> None:
        r.status = status
        r.finished = _ts(when)
        r.duration_ms = int((when - starts[key]).total_seconds() * 1000)

    for ev in events:
        node_id = getattr(ev, "node_id", None)
        if node_id is None or ev.type.startswith("workflow:"):
            continue
        iteration = int(getattr(ev, "iteration", 0))
        key = (node_id, iteration)
        if ev.type in ("node:start", "batch:start"):
            r = row(node_id, iteration, ev.timestamp)
            if ev.type == "batch:start":
                r.note = f"{getattr(ev, 'size', 0)} items"
        elif ev.type == "node:retry":
            r = row(node_id, iteration, ev.timestamp)
            r.attempts = max(r.attempts, int(getattr(ev, "attempt", 1)) + 1)
        elif ev.type in ("node:finish", "batch:finish"):
            done(row(node_id, iteration, ev.timestamp), key, ev.timestamp, "completed")
        elif ev.type == "node:error":
            r = row(node_id, iteration, ev.timestamp)
            done(r, key, ev.timestamp, "failed")
            r.note = str(getattr(getattr(ev, "error", None), "message", ""))[:200]
        elif ev.type == "node:fallback":
            row(node_id, iteration, ev.timestamp).note = f"fallback {getattr(ev, 'fallback', '')}"
        elif ev.type == "node:skipped":
            r = row(node_id, iteration, ev.timestamp)
            r.status, r.finished, r.duration_ms = "skipped", _ts(ev.timestamp), 0
    return sorted(rows.values(), key=lambda r: r.sort_key)


def _label(meta: RunMeta, inst: Instance, iterations: int) -> str:
    parts = []
    if iterations > 1:
        parts.append(f"\u00d7{iterations} iterations")
    key = f"{inst.node_index}#{inst.iteration}"
    if key in meta.batch_total:
        total = meta.batch_total[key]
        items = meta.items(inst.node_index, inst.iteration)
        done = sum(1 for i in items if i.state == "completed")
        parts.append(f"{done}/{total} items")
    return ", ".join(parts)


_INSTANCE_STATE = {"queued": "queued", "running": "running", "batch": "running",
                   "subflow": "running", "completed": "completed", "failed": "failed",
                   "cancelled": "cancelled"}


def node_views(meta: RunMeta, flow: FlowInfo, skipped: set[str],
               deferred: set[int]) -> list[NodeView]:
    """Every node of the flow with its state; `deferred` = node indexes whose job waits in
    the queue for a later time (the successors of a sleep)."""
    latest = meta.latest()
    iterations = meta.iterations()
    sleeping = {e.source for e in flow.edges if e.target in deferred}
    out = []
    for node in flow.nodes:
        inst = latest.get(node.index)
        child = ""
        if inst is None:
            state, label = ("skipped" if node.id in skipped else "pending"), ""
        else:
            label = _label(meta, inst, iterations.get(node.index, 1))
            if meta.awaiting_at(node.index, inst.iteration):
                state = "awaiting"
            elif node.kind == "sleep" and node.index in sleeping and inst.state == "completed":
                state = "sleeping"
            else:
                state = _INSTANCE_STATE.get(inst.state, "pending")
            if node.kind == "subflow":
                child = child_run_id(meta.run_id, node.id, inst.iteration)
        out.append(NodeView(node.index, node.id, state, label, child))
    return out


def nodes_from_events(timeline_rows: list[TimelineRow]) -> list[NodeView]:
    """Without the blueprint: one entry per node seen in the event log."""
    seen: dict[str, NodeView] = {}
    for r in timeline_rows:
        seen[r.node_id] = NodeView(len(seen), r.node_id, r.status, "")
    return list(seen.values())


class RunReader:
    """Reads one run's state for the run page (a handful of pipelined Redis commands)."""

    def __init__(self, store: RedisRunStore, queue_name: str) -> None:
        self.store = store
        self.redis: Any = store.redis
        self.queue_name = queue_name

    async def fingerprint(self, run_id: str) -> bytes | None:
        """Changes whenever the run's meta hash or event log does; None when the run is gone.
        Two commands: what a live page pays per tick while nothing happens."""
        keys = self.store.keys(run_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.meta)
        pipe.xrevrange(keys.events, count=1)
        meta, newest = await pipe.execute()
        if not meta:
            return None
        digest = hashlib.sha1(usedforsecurity=False)
        for key in sorted(meta):
            digest.update(key + b"\0" + meta[key] + b"\0")
        digest.update(newest[0][0] if newest else b"-")
        return digest.digest()

    async def meta(self, run_id: str) -> RunMeta | None:
        return parse_meta(run_id, await self.store.meta(run_id))

    async def _deferred(self, meta: RunMeta, flow: FlowInfo) -> set[int]:
        queued = [i for i in meta.latest().values() if i.state == "queued"]
        if not queued:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for inst in queued:
            job = JobPayload(meta.run_id, meta.blueprint_id, flow.node_id(inst.node_index),
                             inst.iteration, 1, inst.epoch, meta.version or None)
            pipe.zscore(self.queue_name, job.job_id)
        now = time.time() * 1000
        return {inst.node_index for inst, score in zip(queued, await pipe.execute(), strict=True)
                if score is not None and score > now + 50}

    async def _events(self, run_id: str, entries: list[Any]) -> list[Event]:
        """The store's own decoding when it has one (a stream entry may hold facts the store
        turns into events), else the plain event encoding."""
        decode = getattr(self.store, "decode_entry", None)
        if decode is None:
            return decode_entries(entries)
        out: list[Event] = []
        for _entry_id, fields in entries:
            try:
                out += await decode(run_id, fields)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
                continue
        return out

    async def view(self, meta: RunMeta, flow: FlowInfo | None) -> RunView:
        keys = self.store.keys(meta.run_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.ctx)
        pipe.lrange(keys.errors, 0, -1)
        pipe.xrevrange(keys.events, count=EVENTS_SHOWN)
        ctx_raw, errors_raw, entries = await pipe.execute()
        entries.reverse()
        events = await self._events(meta.run_id, entries)
        rows = timeline(events)
        context: dict[str, Any] = {}
        for k, v in sorted(ctx_raw.items()):
            try:
                context[text(k)] = msgspec.json.decode(v)
            except msgspec.DecodeError:
                context[text(k)] = text(v)
        ctx_json = msgspec.json.format(msgspec.json.encode(context), indent=2).decode()
        if len(ctx_json) > CONTEXT_CHARS:
            ctx_json = ctx_json[:CONTEXT_CHARS] + "\n\u2026 (truncated)"
        errors = []
        for raw in errors_raw:
            try:
                errors.append(msgspec.json.decode(raw, type=WorkflowError))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
        finished = 0
        for ev in events:
            if ev.type == "workflow:finish":
                finished = int(ev.timestamp.timestamp() * 1000)
        waiting = set(meta.awaiting_ids())
        for r in rows:
            if r.status == "running" and r.node_id in waiting:
                r.status = "awaiting"   # a wait node's start is logged, its finish on resume
        skipped = {r.node_id for r in rows if r.status == "skipped"}
        if flow is not None:
            nodes = node_views(meta, flow, skipped, await self._deferred(meta, flow))
            drawn: Layout | None = layout(flow)
            children = tuple((n.id, n.child_run) for n in nodes if n.child_run)
        else:
            nodes, drawn, children = nodes_from_events(rows), None, ()
        return RunView(meta, flow, drawn, tuple(nodes), tuple(rows), ctx_json, tuple(errors),
                       tuple(meta.awaiting_ids()), children, finished)


__all__ = ["STATES", "NodeView", "RunReader", "RunView", "TimelineRow", "node_views",
           "timeline"]
