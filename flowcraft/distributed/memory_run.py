"""One run as `MemoryStore` keeps it: its instance records, leases, outbox and bookkeeping.

The scheduling rules themselves are the runtime's `Book` (the same code the in-memory runtime
runs); this module adds what a store needs around it: instance states with epochs and leases,
the outbox of jobs decided but not yet confirmed queued, and the context as JSON values.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime

import msgspec

from flowcraft.distributed.protocols import (
    CommitRequest,
    InstanceRef,
    JobRef,
    Refusal,
    Resolution,
    fused_token,
    inst_key,
    orphan_prefix,
)
from flowcraft.events import NodeSkipped, encode_event
from flowcraft.result import WorkflowResult
from flowcraft.runtime.book import Book
from flowcraft.runtime.spec import GraphSpec

_json = msgspec.json.encode


def now_ms() -> float:
    """The clock of leases and reconcile ages (monotonic, in ms)."""
    return time.monotonic() * 1000.0


def merge_json(parts: list[tuple[str, bytes]]) -> bytes:
    """A join's input as JSON, from its predecessors' JSON values (no decoding)."""
    return b"{" + b",".join(_json(source) + b":" + value for source, value in parts) + b"}"


class Record:
    """One instance record: state F (fired), B (a batch whose items run), G (a batch whose
    items all finished: `input` holds their outputs), H (a batch item held back by the
    batch's concurrency), S (a subflow node waiting for its child run), D (done), X (failed),
    C (dropped)."""

    __slots__ = ("abandoned", "epoch", "fired", "input", "state")

    def __init__(self, state: str, epoch: int, input: bytes) -> None:
        self.state = state
        self.epoch = epoch
        self.input = input
        self.fired = now_ms()  # when it was last handed to the queue (reconcile waits)
        self.abandoned = 0  # re-drives after a delivery claimed it and died (max_redrives)


class StoredRun:
    """A run's records; its methods are the pieces the store's transitions are made of."""

    def __init__(self, run_id: str, meta: Mapping[str, str], spec: GraphSpec) -> None:
        self.run_id = run_id
        self.meta: dict[str, str] = dict(meta)
        self.meta.setdefault("status", "running")
        self.spec = spec
        self.book: Book[bytes] = Book(spec, merge_json)
        self.live = 0
        self.ctx: dict[str, bytes] = {}
        self.inst: dict[str, Record] = {}
        self.leases: dict[str, tuple[str, float]] = {}
        self.pills: dict[str, str] = {}
        self.outbox: dict[str, JobRef] = {}
        self.awaiting: dict[str, str] = {}
        self.errors: list[bytes] = []
        self.events: list[bytes] = []
        self.result: WorkflowResult | None = None
        self.completions: dict[str, int] = {}
        self.batches: dict[str, list[bytes | None]] = {}
        self.held: dict[str, list[int]] = {}  # batch items not released yet (concurrency)
        self.resumed: dict[str, list[str]] = {}  # resumed instance -> outbox keys it fired

    def check_lease(self, key: str, token: str) -> Refusal | None:
        """Why `token` does not hold a live claim on instance `key` (None: it does)."""
        rec = self.inst.get(key)
        if rec is None:
            return Refusal.NOT_FIRED
        if rec.state not in ("F", "G"):
            return Refusal.DONE
        lease = self.leases.get(key)
        if lease is None or lease[0] != token:
            return Refusal.STALE
        return None

    def settle(self, key: str, state: str, writes: Sequence[tuple[str, bytes | None]],
               events: Sequence[bytes]) -> None:
        """Instance `key` finished (D) or failed (X): record its writes and events."""
        self.apply_writes(writes)
        self.events.extend(events)
        self.completions[key] = self.completions.get(key, 0) + 1
        self.inst[key].state = state

    def apply_writes(self, writes: Sequence[tuple[str, bytes | None]]) -> None:
        for key, value in writes:
            if value is None:
                self.ctx.pop(key, None)
            else:
                self.ctx[key] = value

    def drop_unleased(self) -> None:
        """The run stopped: what nobody runs is dropped, the outbox and awaiting cleared."""
        now = now_ms()
        for key, rec in self.inst.items():
            if rec.state not in ("F", "G", "B", "S", "H"):
                continue
            lease = self.leases.get(key)
            if rec.state in ("F", "G") and lease is not None and lease[1] > now:
                continue
            rec.state = "C"
            self.leases.pop(key, None)
            self.live -= 1
        self.outbox.clear()
        self.awaiting.clear()

    def fire(self, node_index: int, iteration: int, value: bytes, fired: list[JobRef],
             defer_ms: int) -> None:
        record = self.inst[inst_key(node_index, iteration)] = Record("F", 0, value)
        defer = int(time.time() * 1000) + defer_ms if defer_ms > 0 else 0
        if defer_ms > 0:  # a deferred job counts as fired when it is due (routing.lua fire)
            record.fired += defer_ms
        ref = JobRef(node_index, iteration, 0, defer)
        self.outbox[ref.key] = ref
        fired.append(ref)

    def claim_fired(self, fired: list[JobRef],
                    request: CommitRequest) -> list[tuple[JobRef, bytes]]:
        """Fusion: lease up to `request.fuse` of the jobs just fired that are due now to the
        committer, who runs them at once; they leave `fired` and the outbox."""
        claimed: list[tuple[JobRef, bytes]] = []
        for ref in list(fired):
            if len(claimed) >= request.fuse:
                break
            if ref.defer_until_ms:
                continue
            key = inst_key(ref.node_index, ref.iteration)
            token = fused_token(request.fuse_token, len(claimed))
            self.leases[key] = (token, now_ms() + request.lease_ms)
            del self.outbox[ref.key]
            fired.remove(ref)
            claimed.append((ref, self.inst[key].input))
        return claimed

    def refire_orphans(self, token: str) -> list[JobRef] | None:
        """A queue job delivered again (its `token` names the delivery): re-fire, with a new
        epoch and into the outbox, the instances an earlier delivery claimed and left behind
        once their lease ended; None while some are still leased (lua/lib.lua
        `orphans_of`)."""
        mine = orphan_prefix(token)
        if mine is None:
            return []
        now, jobs = now_ms(), []
        for key, (held, until) in list(self.leases.items()):
            rec = self.inst.get(key)
            if not held.startswith(mine) or rec is None or rec.state not in ("F", "G"):
                continue
            if until > now:
                return None
            del self.leases[key]
            rec.epoch += 1
            rec.fired = now
            node, _, rest = key.partition("#")
            iteration, _, item = rest.partition("/")
            job = JobRef(int(node), int(iteration), rec.epoch, 0, int(item) if item else -1)
            self.outbox[job.key] = job
            jobs.append(job)
        return jobs

    def release_item(self, ref: InstanceRef, index: int) -> JobRef:
        """Item `index` of batch `ref` may run now."""
        item = self.inst[inst_key(ref.node, ref.iteration, index)]
        item.state, item.fired = "F", now_ms()
        job = JobRef(ref.node, ref.iteration, 0, 0, index)
        self.outbox[job.key] = job
        return job

    def route(self, ref: InstanceRef, resolutions: Sequence[Resolution], fired: list[JobRef],
              defer_ms: int, skip_ts: str | None = None) -> None:
        """Record a finished instance's edge decisions in the Book; fire what became ready."""
        routed = self.book.route(ref.node, ref.iteration,
                                 [(r.edge, r.taken, r.value) for r in resolutions])
        for ready in routed.fired:
            self.fire(ready.node, ready.iteration, ready.input, fired, defer_ms)
        if skip_ts is not None:
            when = datetime.fromisoformat(skip_ts)
            for node, it in routed.skipped:
                self.events.append(encode_event(NodeSkipped(
                    run_id=self.run_id, blueprint_id=self.spec.blueprint_id, timestamp=when,
                    node_id=self.spec.nodes[node].id, iteration=it)))


__all__ = ["Record", "StoredRun", "merge_json", "now_ms"]
