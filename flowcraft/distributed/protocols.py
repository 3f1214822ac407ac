"""The technology-agnostic contracts of distributed execution.

A distributed run is a set of node *instances* `(node, iteration)`, each executed as one job by
some worker. Three parts cooperate:

- a `JobQueue` delivers `JobPayload`s to workers (at least once);
- a `CoordinationStore` keeps all run state and performs every state transition of one node
  completion atomically (claim with a lease, commit, fail, finish);
- `BaseDistributedAdapter` (see `adapter.py`) runs one job: claim, execute the node through the
  core executor, decide the routing with the core's routing code, commit, hand the successors
  the store made ready to the queue.

The store does *bookkeeping only*: routing decisions (actions, conditions, transforms) are made
in Python by the worker and passed to `commit` as data (`Resolution`s).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

import msgspec

from flowcraft.result import WorkflowResult
from flowcraft.runtime.spec import GraphSpec

RunState = Literal["running", "awaiting", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

ORPHAN_AFTER_MS = 600_000
"""A reconcile pass drops an id from the active set whose run does not exist once it was
registered this long ago: `start_run` registers a run before creating it (write-ahead), so a
younger one may be a start still under way."""


class InstanceRef(msgspec.Struct, frozen=True, array_like=True):
    """One node instance of one run, as every store transition names it: the node's index in
    the graph, the iteration, and for an item of a batch instance its index (-1: none)."""

    run_id: str
    node: int
    iteration: int = 0
    item: int = -1

    @property
    def key(self) -> str:
        return inst_key(self.node, self.iteration, self.item)

    @property
    def batch(self) -> InstanceRef:
        """The batch instance an item belongs to (itself when it is not an item)."""
        return InstanceRef(self.run_id, self.node, self.iteration)


class Refusal(StrEnum):
    """Why a store refused a transition."""

    UNKNOWN = "unknown"            # no such run
    NOT_RUNNING = "not_running"    # failed, cancelled, completed (or awaiting, for a claim)
    NOT_FIRED = "not_fired"        # the instance was never made ready
    DONE = "done"                  # already finished (the outcome carries jobs to re-drive)
    LEASED = "leased"              # another worker holds a live lease
    STALE = "stale"                # the caller's lease was lost (fencing)
    SCATTERED = "scattered"        # a batch whose items are running
    PARKED = "parked"              # a subflow node waiting for its child run
    NOT_AWAITING = "not_awaiting"  # resume of an instance that does not await


class JobPayload(msgspec.Struct, frozen=True, array_like=True):
    """What travels through the queue: which node instance of which run to execute.

    `epoch` changes when the reconciler re-fires an instance whose job was lost, so the job id
    `"{run}:{node}:{iteration}:{epoch}"` is new; `version` is the blueprint version the run was
    started with (a worker with another version does not execute it).
    """

    run_id: str
    blueprint_id: str
    node_id: str
    iteration: int = 0
    attempt: int = 1
    epoch: int = 0
    version: str | None = None
    item: int = -1
    trace: dict[str, str] = msgspec.field(default_factory=dict)  # W3C context (jobtrace.py)

    @property
    def job_id(self) -> str:
        node = self.node_id if self.item < 0 else f"{self.node_id}[{self.item}]"
        return f"{self.run_id}:{node}:{self.iteration}:{self.epoch}"


class JobRef(msgspec.Struct, frozen=True, array_like=True):
    """A job the store decided to run, as the store knows it: which instance, which epoch,
    and (for durable sleeps) not before when (epoch ms, 0 = now). `key` names it in the
    store's outbox; the adapter turns it into a `QueuedJob` with a full payload."""

    node_index: int
    iteration: int
    epoch: int = 0
    defer_until_ms: int = 0
    item: int = -1

    @property
    def key(self) -> str:
        return f"{inst_key(self.node_index, self.iteration, self.item)}#{self.epoch}"


def fused_token(prefix: str, k: int) -> str:
    """The lease token of the k-th successor a commit claimed for its caller."""
    return f"{prefix}.{k}"


def delivery_token(job_id: str, nonce: str) -> str:
    """The lease token of one delivery of a queue job: `<hex of the job id>~<nonce>`. Every
    successor that delivery runs on (fusion) gets a token starting the same way, so a later
    delivery of the same job can tell them apart (`orphan_prefix`) and re-drive them."""
    return f"{hashlib.sha1(job_id.encode()).hexdigest()[:16]}~{nonce}"


def orphan_prefix(token: str) -> str | None:
    """The prefix shared by the tokens of one queue job's deliveries (see `delivery_token`)."""
    head, sep, _ = token.partition("~")
    if not sep or not head or any(c not in "0123456789abcdef" for c in head):
        return None
    return head + sep


def inst_key(node_index: int, iteration: int, item: int = -1) -> str:
    """How stores name an instance: `n#it`, and `n#it/k` for item k of a batch instance."""
    if item < 0:
        return f"{node_index}#{iteration}"
    return f"{node_index}#{iteration}/{item}"


class QueuedJob(msgspec.Struct, frozen=True):
    """A job for the queue: the payload and, for durable sleeps, when (epoch ms)."""

    payload: JobPayload
    defer_until_ms: int | None = None


class Resolution(msgspec.Struct, frozen=True, array_like=True):
    """One edge decision of a finished node: edge index, taken, value (JSON). The iteration it
    resolves at follows from the edge's kind (see `runtime/book.py`)."""

    edge: int
    taken: bool
    value: bytes = b"null"


class CommitRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one successful node completion records, applied atomically by the store.

    `writes` are the node's context writes in order (value None = delete), including its output
    under `_outputs.<id>` and `<id>`; `resolutions` the routing decisions; `events` encoded
    events to append to the run's event log; `await_details` turns the completion into a pause
    (the instance waits for `resume`) and `defer_ms` delays the successors (durable sleep).
    For an item of a batch, `item_output` is the item's output and `lease_ms` the lease
    the committer takes on the batch instance when this was the last item. `park` (resume of
    a subflow node only) puts the instance back to waiting for its child run. `fuse` asks the
    store to claim up to that many of the successors it fires that are due now for the
    committer to run at once (local continuation), with leases of `lease_ms` and the tokens
    `fuse_token.<k>` (see `fused_token`).
    """

    token: str = ""
    node_id: str = ""
    writes: Sequence[tuple[str, bytes | None]] = ()
    resolutions: Sequence[Resolution] = ()
    events: Sequence[bytes] = ()
    timestamp: str = ""
    await_details: bytes | None = None
    defer_ms: int = 0
    item_output: bytes = b"null"
    lease_ms: int = 0
    park: bool = False
    skip_events: bool = False
    fuse: int = 0
    fuse_token: str = ""


class FailRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A node failed for good: its error (encoded WorkflowError) and the pills of its successors.

    `pills` are `(target node index, "poison" | "cancel")`, at the failing instance's iteration.
    """

    token: str
    error: bytes
    writes: Sequence[tuple[str, bytes | None]] = ()
    pills: Sequence[tuple[int, str]] = ()
    events: Sequence[bytes] = ()
    timestamp: str = ""


class ClaimOutcome(msgspec.Struct, frozen=True):
    """`ok` with the instance's input (JSON), or the reason the job must not run.

    Reasons: "unknown" (no such run), "not_running" (failed, cancelled, ...), "not_fired",
    "done" (already completed; `jobs` then holds undelivered successors to re-drive), "leased"
    (another worker holds a live lease), "scattered" (a batch whose items are running).
    `gathered` is set for a batch instance whose items all finished: `input` is then the list
    of their outputs and only the batch's own completion is left to do.
    """

    ok: bool
    reason: Refusal | None = None
    input: bytes = b"null"
    status: str = ""
    jobs: list[JobRef] = msgspec.field(default_factory=list)
    gathered: bool = False


class CommitOutcome(msgspec.Struct, frozen=True):
    """`ok` (recorded) or rejected (`reason`: "stale", "not_fired", ...); `jobs` to enqueue;
    `status` the run status afterwards; `finished` when this call finished the run.
    `gathered` (item commits only): this was the batch's last item; the outputs of all items
    in order (a JSON list), and the caller now holds the lease on the batch instance.
    `handed_over` (cancel only): the instances that were parked or awaiting when the run was
    cancelled, in order; the subflow nodes among them have child runs to cancel too;
    `claimed`: successors claimed for the caller (`CommitRequest.fuse`) with their inputs;
    `queued`: successors the store already put in the queue itself (nothing to dispatch);
    `child`: whether the run has a parent run (None: the store did not say)."""

    ok: bool
    reason: Refusal | None = None
    jobs: list[JobRef] = msgspec.field(default_factory=list)
    status: str = ""
    finished: bool = False
    gathered: bytes | None = None
    handed_over: list[InstanceRef] = msgspec.field(default_factory=list)
    claimed: list[tuple[JobRef, bytes]] = msgspec.field(default_factory=list)
    queued: list[JobRef] = msgspec.field(default_factory=list)
    child: bool | None = None


class StartOutcome(msgspec.Struct, frozen=True):
    """`created` is False when the run id already existed (start is idempotent); `jobs` are
    the start jobs (or, for an existing run, its undelivered ones) to put in the queue;
    `queued` those the store put in the queue itself."""

    created: bool
    jobs: list[JobRef] = msgspec.field(default_factory=list)
    status: str = ""
    queued: list[JobRef] = msgspec.field(default_factory=list)


class ReconcileOutcome(msgspec.Struct, frozen=True):
    """What reconciling one run did: `jobs` to enqueue, `refired` instances given a new epoch,
    `status` afterwards, the blueprint id found (meta or fallback key), and `exhausted`: the
    instances not re-fired because they were re-driven `max_redrives` times already (with
    that count), which the caller fails."""

    jobs: list[JobRef] = msgspec.field(default_factory=list)
    refired: int = 0
    status: str = ""
    blueprint_id: str = ""
    finished: bool = False
    exhausted: list[tuple[InstanceRef, int]] = msgspec.field(default_factory=list)


@runtime_checkable
class RunReader(Protocol):
    """What a store tells about its runs, without changing them."""

    async def status(self, run_id: str) -> str | None: ...

    async def result(self, run_id: str) -> WorkflowResult | None: ...

    async def get_values(self, run_id: str, keys: Sequence[str]) -> list[bytes | None]: ...

    async def get_context(self, run_id: str) -> dict[str, bytes]: ...

    async def loop_count(self, ref: InstanceRef) -> int: ...

    async def awaiting(self, run_id: str) -> dict[str, str]: ...

    async def blueprint_of(self, run_id: str) -> str | None: ...

    async def parent_of(self, run_id: str) -> InstanceRef | None: ...

    async def parked(self, run_id: str) -> list[InstanceRef]: ...

    async def unqueued_resumes(self, run_id: str) -> list[InstanceRef]:
        """Resumed instances some of whose fired jobs are still in the outbox (a retried
        resume of one of them queues those)."""
        ...

    async def stalled_runs(self, idle_ms: int, limit: int = 1000) -> list[tuple[str, float]]:
        """Up to `limit` runs a reconcile pass should look at (scored at least `idle_ms` ago),
        oldest first, each with the score read (see `reconcile_run`'s `seen`)."""

    async def log(self, run_id: str, events: Sequence[bytes]) -> None: ...


@runtime_checkable
class CoordinationStore(RunReader, Protocol):
    """All run state, with one atomic operation per state transition."""

    async def start_run(self, run_id: str, spec: GraphSpec, context: Mapping[str, bytes],
                        meta: Mapping[str, str], events: Sequence[bytes] = ()) -> StartOutcome:
        """Create the run once (idempotent on its id) and fire its start instances."""

    async def claim(self, ref: InstanceRef, token: str, lease_ms: int, *,
                    adopt: bool = False) -> ClaimOutcome:
        """Lease a fired instance (`adopt`: take a parked subflow instance back)."""

    async def renew(self, ref: InstanceRef, token: str, lease_ms: int) -> str | None:
        """Extend a lease; the run's status, or None when the lease is lost."""

    async def commit(self, ref: InstanceRef, spec: GraphSpec,
                     request: CommitRequest) -> CommitOutcome:
        """Record a completion (or a pause, or a batch item's output) and route it."""

    async def hand_off(self, ref: InstanceRef, token: str, items: Sequence[bytes] | None = None,
                       events: Sequence[bytes] = (), concurrency: int = 0) -> CommitOutcome:
        """Give a leased instance's work to others: a batch's `items` as jobs of their own,
        or (items None) a subflow node parked until its child run ends."""

    async def fail(self, ref: InstanceRef, spec: GraphSpec,
                   request: FailRequest) -> CommitOutcome:
        """The instance failed for good: the run fails, its successors get pills."""

    async def release(self, ref: InstanceRef, token: str) -> CommitOutcome:
        """Give a leased instance up without finishing it."""

    async def resume(self, ref: InstanceRef, spec: GraphSpec,
                     request: CommitRequest) -> CommitOutcome:
        """Complete an awaiting instance (or park a subflow node again, `request.park`)."""

    async def cancel(self, run_id: str, timestamp: str) -> CommitOutcome:
        """Stop the run: nothing new starts; running instances stop at their next renewal."""

    async def reconcile_run(self, run_id: str, timestamp: str, stalled_ms: int = 0,
                            max_redrives: int = 0, seen: float | None = None) -> ReconcileOutcome:
        """Re-drive undelivered jobs and instances whose job was lost (at most `max_redrives`
        times each; 0: no limit). `seen`: the score `stalled_runs` listed the run with; the
        run is then re-scored for the next pass unless its score changed meanwhile."""

    async def ack(self, run_id: str, jobs: Sequence[JobRef],
                  events: Sequence[bytes] = ()) -> None:
        """The jobs are in the queue: clear them from the outbox (and log `events`)."""


@runtime_checkable
class JobQueue(Protocol):
    """Delivers jobs to workers, at least once. Enqueueing an id already queued is a no-op."""

    async def enqueue(self, jobs: Sequence[QueuedJob]) -> None: ...


__all__ = [
    "ORPHAN_AFTER_MS",
    "TERMINAL",
    "inst_key",
    "delivery_token",
    "fused_token",
    "orphan_prefix",
    "ClaimOutcome",
    "CommitOutcome",
    "CommitRequest",
    "CoordinationStore",
    "FailRequest",
    "InstanceRef",
    "JobPayload",
    "JobQueue",
    "JobRef",
    "QueuedJob",
    "ReconcileOutcome",
    "Refusal",
    "Resolution",
    "RunReader",
    "RunState",
    "StartOutcome",
]
