"""An in-memory CoordinationStore and JobQueue with the same semantics as the Redis ones.

This is the reference model of the store's bookkeeping: the Redis Lua scripts of
`flowcraft_arq` implement exactly these transitions (same data layout, same names), and the
adapter's unit tests run against this module without any server. It is also a starting point
for anyone writing an adapter for another queue or store.

Every public coroutine performs its whole transition without awaiting in between, so each is
atomic with respect to the other coroutines of the event loop, like a Lua script in Redis.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import cast

import msgspec

from flowcraft.distributed.memory_run import Record, StoredRun, now_ms
from flowcraft.distributed.protocols import (
    ORPHAN_AFTER_MS,
    TERMINAL,
    ClaimOutcome,
    CommitOutcome,
    CommitRequest,
    FailRequest,
    InstanceRef,
    JobRef,
    ReconcileOutcome,
    Refusal,
    StartOutcome,
    inst_key,
)
from flowcraft.events import WorkflowFinish, WorkflowPause, encode_event
from flowcraft.result import RunStatus, WorkflowError, WorkflowResult, result_of, utc_now
from flowcraft.runtime.spec import GraphSpec

_json = msgspec.json.encode


class MemoryStore:
    """The reference CoordinationStore, kept in this process's memory."""

    def __init__(self) -> None:
        self.runs: dict[str, StoredRun] = {}
        self.blueprint_fallback: dict[str, str] = {}
        # the active set: live or awaiting run id -> when a reconcile pass should look at it
        # next (now_ms clock; see flowcraft_arq.keys.active_key)
        self.active: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Event] = {}

    # -- reads ------------------------------------------------------------------------------

    async def status(self, run_id: str) -> str | None:
        run = self.runs.get(run_id)
        return None if run is None else run.meta["status"]

    async def result(self, run_id: str) -> WorkflowResult | None:
        run = self.runs.get(run_id)
        return None if run is None else run.result

    async def get_values(self, run_id: str, keys: Sequence[str]) -> list[bytes | None]:
        run = self.runs.get(run_id)
        if run is None:
            return [None for _ in keys]
        return [run.ctx.get(k) for k in keys]

    async def get_context(self, run_id: str) -> dict[str, bytes]:
        run = self.runs.get(run_id)
        return {} if run is None else dict(run.ctx)

    async def loop_count(self, ref: InstanceRef) -> int:
        """How many times the loop of controller `ref.node` continued since it was entered."""
        run = self.runs.get(ref.run_id)
        return 0 if run is None else run.book.loop_count(ref.node, ref.iteration)

    async def events(self, run_id: str) -> list[bytes]:
        run = self.runs.get(run_id)
        return [] if run is None else list(run.events)

    async def wait_result(self, run_id: str, timeout: float) -> WorkflowResult:
        """The result once the run is terminal or awaiting; TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            while True:
                run = self.runs.get(run_id)
                if run is not None and run.result is not None:
                    return run.result
                event = self._waiters.setdefault(run_id, asyncio.Event())
                await event.wait()

    def _notify(self, run_id: str) -> None:
        event = self._waiters.pop(run_id, None)
        if event is not None:
            event.set()

    # -- transitions ------------------------------------------------------------------------

    async def start_run(self, run_id: str, spec: GraphSpec, context: Mapping[str, bytes],
                        meta: Mapping[str, str], events: Sequence[bytes] = ()) -> StartOutcome:
        self.active[run_id] = now_ms()  # registered before the run exists (write-ahead)
        run = self.runs.get(run_id)
        if run is not None:
            if run.meta["status"] in TERMINAL:
                del self.active[run_id]
            return StartOutcome(False, list(run.outbox.values()), run.meta["status"])
        run = self.runs[run_id] = StoredRun(run_id, meta, spec)
        self.blueprint_fallback[run_id] = spec.blueprint_id
        run.ctx.update(context)
        run.events.extend(events)
        fired: list[JobRef] = []
        for ready in run.book.start(b"null"):
            run.fire(ready.node, ready.iteration, ready.input, fired, 0)
        run.live += len(fired)
        if not fired:
            self._finish(run, "completed", "")
        return StartOutcome(True, fired, run.meta["status"])

    async def claim(self, ref: InstanceRef, token: str, lease_ms: int, *,
                    adopt: bool = False) -> ClaimOutcome:
        run = self.runs.get(ref.run_id)
        if run is None:
            return ClaimOutcome(False, Refusal.UNKNOWN)
        status = run.meta["status"]
        if status != "running":
            return ClaimOutcome(False, Refusal.NOT_RUNNING, status=status)
        key = ref.key
        rec = run.inst.get(key)
        if rec is None:
            return ClaimOutcome(False, Refusal.NOT_FIRED, status=status)
        if adopt:  # a parked subflow instance, taken back to be completed
            if rec.state != "S":
                return ClaimOutcome(False, Refusal.NOT_FIRED, status=status)
            rec.state, rec.fired = "F", now_ms()
        elif rec.state == "B":  # (a redelivered job of a batch: re-drive its items' jobs)
            return ClaimOutcome(False, Refusal.SCATTERED, status=status,
                                jobs=list(run.outbox.values()))
        elif rec.state == "S":
            return ClaimOutcome(False, Refusal.PARKED, status=status)
        elif rec.state not in ("F", "G"):
            orphans = run.refire_orphans(token)
            if orphans is None:
                return ClaimOutcome(False, Refusal.LEASED, status=status)
            return ClaimOutcome(False, Refusal.DONE, status=status,
                                jobs=list(run.outbox.values()))
        now = now_ms()
        lease = run.leases.get(key)
        if lease is not None and lease[1] > now and lease[0] != token:
            return ClaimOutcome(False, Refusal.LEASED, status=status)
        run.leases[key] = (token, now + lease_ms)
        return ClaimOutcome(True, input=rec.input, status=status, gathered=rec.state == "G")

    async def renew(self, ref: InstanceRef, token: str, lease_ms: int) -> str | None:
        run = self.runs.get(ref.run_id)
        if run is None:
            return None
        key = ref.key
        lease = run.leases.get(key)
        if lease is None or lease[0] != token:
            return None
        run.leases[key] = (token, now_ms() + lease_ms)
        return run.meta["status"]

    async def commit(self, ref: InstanceRef, spec: GraphSpec,
                     request: CommitRequest) -> CommitOutcome:
        key = ref.key
        held = self._end_lease(ref.run_id, key, request.token, outbox_on_done=True)
        if isinstance(held, CommitOutcome):
            return held
        run = held
        run.settle(key, "D", request.writes, request.events)
        if ref.item >= 0:
            return self._gather(run, ref, request)
        fired: list[JobRef] = []
        if request.await_details is not None:
            run.awaiting[key] = request.node_id
        elif run.meta["status"] == "running":
            run.route(ref, request.resolutions, fired, request.defer_ms,
                        request.timestamp if request.skip_events else None)
        run.live += len(fired) - 1
        claimed = run.claim_fired(fired, request)
        finished = self._maybe_finish(run, spec, request.timestamp)
        return CommitOutcome(True, jobs=fired, status=run.meta["status"], finished=finished,
                             claimed=claimed)

    async def fail(self, ref: InstanceRef, spec: GraphSpec,
                   request: FailRequest) -> CommitOutcome:
        key = ref.key
        held = self._end_lease(ref.run_id, key, request.token)
        if isinstance(held, CommitOutcome):
            return held
        run = held
        run.settle(key, "X", request.writes, request.events)
        if ref.item >= 0:
            batch = run.inst.get(ref.batch.key)
            if batch is not None and batch.state == "B":
                batch.state = "X"
                run.live -= 1
        run.live -= 1
        run.errors.append(request.error)
        for target, pill in request.pills:
            run.pills[inst_key(target, ref.iteration)] = pill
        if run.meta["status"] == "running":
            run.meta["status"] = "failed"
            run.drop_unleased()
        finished = self._maybe_finish(run, spec, request.timestamp)
        return CommitOutcome(True, status=run.meta["status"], finished=finished)

    async def release(self, ref: InstanceRef, token: str) -> CommitOutcome:
        """Give up a claimed instance without completing it.

        While the run is running the instance stays fired (another delivery may run it);
        once the run is failed or cancelled it is dropped, which may finish the run.
        """
        key = ref.key
        held = self._end_lease(ref.run_id, key, token)
        if isinstance(held, CommitOutcome):
            return held
        run = held
        if run.meta["status"] == "running":
            return CommitOutcome(True, status="running")
        run.inst[key].state = "C"
        run.live -= 1
        finished = self._maybe_finish(run, None, utc_now().isoformat())
        return CommitOutcome(True, status=run.meta["status"], finished=finished)

    async def awaiting(self, run_id: str) -> dict[str, str]:
        run = self.runs.get(run_id)
        return {} if run is None else dict(run.awaiting)

    async def blueprint_of(self, run_id: str) -> str | None:
        run = self.runs.get(run_id)
        if run is None:
            return None
        return run.meta.get("blueprint_id") or self.blueprint_fallback.get(run_id)

    async def resume(self, ref: InstanceRef, spec: GraphSpec,
                     request: CommitRequest) -> CommitOutcome:
        """Complete an awaiting instance like a commit of it (no lease: it is not running)."""
        self.active[ref.run_id] = now_ms()  # before the transition, as start_run
        run = self.runs.get(ref.run_id)
        if run is None:
            return CommitOutcome(False, Refusal.UNKNOWN)
        status = run.meta["status"]
        if status not in ("running", "awaiting"):
            return CommitOutcome(False, Refusal.NOT_RUNNING, status=status)
        key = ref.key
        if run.awaiting.pop(key, None) is None:
            # a retried resume: the jobs its first call fired that are not queued yet
            pending = [run.outbox[k] for k in run.resumed.get(key, ()) if k in run.outbox]
            if pending and not request.park:
                return CommitOutcome(True, jobs=pending, status=status)
            if not request.park:
                run.resumed.pop(key, None)
            return CommitOutcome(False, Refusal.NOT_AWAITING, status=status)
        if status == "awaiting":
            run.meta["status"] = "running"
            run.result = None
        if request.park:
            run.inst[key].state = "S"
            run.live += 1
            return CommitOutcome(True, status=run.meta["status"])
        run.apply_writes(request.writes)
        run.events.extend(request.events)
        fired: list[JobRef] = []
        run.route(ref, request.resolutions, fired, 0,
                    request.timestamp if request.skip_events else None)
        if fired:
            run.resumed[key] = [job.key for job in fired]
        run.live += len(fired)
        finished = self._maybe_finish(run, spec, request.timestamp)
        return CommitOutcome(True, jobs=fired, status=run.meta["status"], finished=finished)

    async def hand_off(self, ref: InstanceRef, token: str, items: Sequence[bytes] | None = None,
                       events: Sequence[bytes] = (), concurrency: int = 0) -> CommitOutcome:
        """A batch hands its items out as jobs, at most `concurrency` at a time (0: all): it
        stays live (state B) until the last item's commit gathers the outputs (state G), then
        completes like any node. A subflow node (items None) parks (state S), unleased, until
        a claim with `adopt` takes it back to complete it. A run that stopped meanwhile drops
        the instance instead; a retried call (the instance is done) gets the outbox."""
        key = ref.key
        held = self._end_lease(ref.run_id, key, token, outbox_on_done=True)
        if isinstance(held, CommitOutcome):
            return held
        run = held
        status = run.meta["status"]
        if status != "running":
            run.inst[key].state = "C"
            run.live -= 1
            finished = self._maybe_finish(run, None, utc_now().isoformat())
            return CommitOutcome(False, Refusal.NOT_RUNNING, status=status, finished=finished)
        run.events.extend(events)
        if items is None:
            run.inst[key].state = "S"
            return CommitOutcome(True, status=run.meta["status"])
        run.inst[key].state = "B"
        run.batches[key] = [None] * len(items)
        for index, raw in enumerate(items):
            run.inst[inst_key(ref.node, ref.iteration, index)] = Record("H", 0, raw)
        first = len(items) if concurrency <= 0 else min(concurrency, len(items))
        run.held[key] = list(range(len(items) - 1, first - 1, -1))
        fired = [run.release_item(ref, index) for index in range(first)]
        run.live += len(items)
        return CommitOutcome(True, jobs=fired, status=run.meta["status"])

    async def parent_of(self, run_id: str) -> InstanceRef | None:
        run = self.runs.get(run_id)
        if run is None or "parent_run" not in run.meta:
            return None
        return InstanceRef(run.meta["parent_run"], int(run.meta["parent_node"]),
                           int(run.meta["parent_it"]))

    async def parked(self, run_id: str) -> list[InstanceRef]:
        """The subflow instances waiting for their child run."""
        run = self.runs.get(run_id)
        if run is None:
            return []
        return [InstanceRef(run_id, *(int(part) for part in key.split("#")))
                for key, rec in run.inst.items() if rec.state == "S"]

    async def unqueued_resumes(self, run_id: str) -> list[InstanceRef]:
        run = self.runs.get(run_id)
        if run is None:
            return []
        return [InstanceRef(run_id, *(int(part) for part in key.split("#")))
                for key, fired in run.resumed.items() if any(k in run.outbox for k in fired)]

    def _gather(self, run: StoredRun, ref: InstanceRef, request: CommitRequest) -> CommitOutcome:
        key = ref.batch.key
        outputs = run.batches[key]
        outputs[ref.item] = request.item_output
        run.live -= 1
        batch = run.inst[key]
        waiting = run.held.get(key)
        if waiting and run.meta["status"] == "running":
            job = run.release_item(ref, waiting.pop())
            return CommitOutcome(True, jobs=[job], status=run.meta["status"])
        if run.meta["status"] != "running" or batch.state != "B" or any(
                o is None for o in outputs):
            finished = self._maybe_finish(run, None, request.timestamp)
            return CommitOutcome(True, status=run.meta["status"], finished=finished)
        gathered = b"[" + b",".join(o or b"null" for o in outputs) + b"]"
        batch.state, batch.fired = "G", now_ms()
        batch.input = gathered
        run.leases[key] = (request.token, now_ms() + request.lease_ms)
        return CommitOutcome(True, status=run.meta["status"], gathered=gathered)

    async def ack(self, run_id: str, jobs: Sequence[JobRef],
                  events: Sequence[bytes] = ()) -> None:
        run = self.runs.get(run_id)
        if run is not None:
            for job in jobs:
                run.outbox.pop(job.key, None)
            run.events.extend(events)

    async def log(self, run_id: str, events: Sequence[bytes]) -> None:
        """Append events to the run's log (outside any transition)."""
        run = self.runs.get(run_id)
        if run is not None:
            run.events.extend(events)

    async def cancel(self, run_id: str, timestamp: str) -> CommitOutcome:
        run = self.runs.get(run_id)
        if run is None:
            return CommitOutcome(False, Refusal.UNKNOWN)
        status = run.meta["status"]
        if status not in ("running", "awaiting"):
            return CommitOutcome(False, Refusal.NOT_RUNNING, status=status)
        handed = sorted({*(key for key, rec in run.inst.items() if rec.state == "S"),
                         *run.awaiting}, key=lambda key: tuple(map(int, key.split("#"))))
        run.meta["status"] = "cancelled"
        run.awaiting.clear()
        run.result = None
        run.drop_unleased()
        finished = self._maybe_finish(run, None, timestamp)
        return CommitOutcome(True, status="cancelled", finished=finished, handed_over=[
            InstanceRef(run_id, *map(int, key.split("#"))) for key in handed])

    async def stalled_runs(self, idle_ms: int, limit: int = 1000) -> list[tuple[str, float]]:
        cut = now_ms() - idle_ms
        due = sorted((score, run_id) for run_id, score in self.active.items() if score <= cut)
        return [(run_id, score) for score, run_id in due[:limit]]

    def _rescore(self, run_id: str, seen: float | None, score: float | None) -> None:
        """A pass's verdict (None: remove), kept only while the score is the one it read."""
        if seen is not None and self.active.get(run_id) == seen:
            if score is None:
                del self.active[run_id]
            else:
                self.active[run_id] = score

    async def reconcile_run(self, run_id: str, timestamp: str, stalled_ms: int = 0,
                            max_redrives: int = 0, seen: float | None = None) -> ReconcileOutcome:
        """Re-drive a stalled run: undelivered outbox entries, and fired instances without a
        live lease get a new epoch (so a new job id). Done instances are never re-fired.
        With `seen`, re-score the run in the active set (see reconcile.lua)."""
        now = now_ms()
        run = self.runs.get(run_id)
        if run is None:
            if seen is not None and seen <= now - ORPHAN_AFTER_MS:
                self._rescore(run_id, seen, None)
            return ReconcileOutcome(status="unknown")
        blueprint_id = run.meta.get("blueprint_id") or self.blueprint_fallback.get(run_id, "")
        status = run.meta["status"]
        if status not in ("running", "awaiting"):
            if run.live <= 0:  # already finished
                self.active.pop(run_id, None)
                return ReconcileOutcome(status=status, blueprint_id=blueprint_id)
            run.drop_unleased()
            finished = self._maybe_finish(run, None, timestamp)
            if not finished:  # leased instances left: look again later
                self._rescore(run_id, seen, now)
            return ReconcileOutcome(status=run.meta["status"], blueprint_id=blueprint_id,
                                    finished=finished)
        refired = 0
        exhausted: list[tuple[InstanceRef, int]] = []
        looks: list[float] = []
        for key, rec in run.inst.items():
            if rec.state == "S":
                looks.append(now)
            if rec.state not in ("F", "G"):
                continue
            lease = run.leases.get(key)
            if lease is not None and lease[1] > now:
                looks.append(max(rec.fired, lease[1] - stalled_ms))
                continue
            if rec.fired + stalled_ms > now:
                looks.append(rec.fired)
                continue
            looks.append(now)
            node_part, _, rest = key.partition("#")
            iteration_part, _, item_part = rest.partition("/")
            node_index, iteration = int(node_part), int(iteration_part)
            item = int(item_part) if item_part else -1
            if lease is not None and 0 < max_redrives <= rec.abandoned:  # the caller fails it
                exhausted.append((InstanceRef(run_id, node_index, iteration, item),
                                  rec.abandoned))
                continue
            if lease is not None:  # a delivery claimed it and died (not just a long queue)
                rec.abandoned += 1
                del run.leases[key]
            rec.fired = now
            run.outbox.pop(JobRef(node_index, iteration, rec.epoch, 0, item).key, None)
            rec.epoch += 1
            refired += 1
            ref = JobRef(node_index, iteration, rec.epoch, 0, item)
            run.outbox[ref.key] = ref
        if run.outbox:
            looks.append(now)
        self._rescore(run_id, seen, min(looks) if looks else
                      math.inf if status == "awaiting" else now)
        return ReconcileOutcome(jobs=list(run.outbox.values()), refired=refired, status=status,
                                blueprint_id=blueprint_id, exhausted=exhausted)

    # -- internals --------------------------------------------------------------------------

    def _end_lease(self, run_id: str, key: str, token: str, *,
                   outbox_on_done: bool = False) -> StoredRun | CommitOutcome:
        """The run, with the lease `token` held on `key` ended; or why that was refused
        (with the outbox to re-drive when the instance is already done, if asked)."""
        run = self.runs.get(run_id)
        if run is None:
            return CommitOutcome(False, Refusal.UNKNOWN)
        reason = run.check_lease(key, token)
        if reason is not None:
            jobs = list(run.outbox.values()) if outbox_on_done and reason == Refusal.DONE else []
            return CommitOutcome(False, reason, jobs, status=run.meta["status"])
        del run.leases[key]
        return run

    def _maybe_finish(self, run: StoredRun, spec: GraphSpec | None, timestamp: str) -> bool:
        if run.live > 0:
            return False
        status = run.meta["status"]
        if status == "running":
            if run.awaiting:
                run.meta["status"] = "awaiting"
                run.result = result_of(run.run_id, "awaiting", run.meta.get("blueprint_id", ""),
                                       run.ctx, run.errors,
                                       sorted(run.awaiting.values()))
                if timestamp:
                    run.events.append(encode_event(WorkflowPause(
                        run_id=run.run_id, blueprint_id=run.meta.get("blueprint_id", ""),
                        timestamp=_when(timestamp), awaiting=sorted(run.awaiting.values()))))
                self._notify(run.run_id)
                return False
            status = "completed"
        if status == "awaiting":
            return False
        self._finish(run, status, timestamp)
        return True

    def _finish(self, run: StoredRun, status: str, timestamp: str) -> None:
        run.meta["status"] = status
        self.active.pop(run.run_id, None)
        blueprint_id = run.meta.get("blueprint_id", "")
        run.result = result_of(run.run_id, status, blueprint_id, run.ctx, run.errors, [])
        if timestamp:
            run.events.append(encode_event(WorkflowFinish(
                run_id=run.run_id, blueprint_id=blueprint_id, timestamp=_when(timestamp),
                status=cast(RunStatus, status),
                errors=[msgspec.json.decode(e, type=WorkflowError) for e in run.errors])))
        self._notify(run.run_id)

def _when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


__all__ = ["MemoryStore"]
