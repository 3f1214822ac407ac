"""The worker side of distributed execution: run one node job.

For one `JobPayload` a worker claims the instance (a lease with a fencing token), runs the node
through the core `Executor` (middleware, attempts, timeouts, fallback) or its built-in
construct (with `Job` as the construct's host) over a buffered context, and completes it
through the control side (route, commit, dispatch the successors). A crash anywhere leaves either
an uncommitted instance (the job is delivered again) or an outbox entry (re-driven by the
redelivered job or by `reconcile`).

Local continuation ("fusion"): a commit may claim some of the successors it fires, with leases
exactly like a queue claim, and the worker runs them at once within the same queue job, under a
budget of nodes and time (`Fusion`), instead of a queue round trip per node. A crash leaves them
fired and leased; once the lease ends, `reconcile` re-drives them like any lost job.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from enum import StrEnum
from typing import Any

import anyio
import msgspec

from flowcraft.builtins import run_builtin
from flowcraft.builtins.batch import concurrency_of, finish_batch, item_context
from flowcraft.builtins.kinds import Handoff, Suspended
from flowcraft.context import OUTPUTS_PREFIX, NodeScopedContext, ensure_encodable, output_key
from flowcraft.distributed.completion import Flows, timestamp
from flowcraft.distributed.context import BufferedContext
from flowcraft.distributed.control import Control
from flowcraft.distributed.fusion import Fusion
from flowcraft.distributed.heartbeat import Beat, Heartbeat
from flowcraft.distributed.jobtrace import CURRENT_JOB, JobTrace
from flowcraft.distributed.protocols import (
    CommitRequest,
    CoordinationStore,
    InstanceRef,
    JobPayload,
    JobQueue,
    Refusal,
    delivery_token,
)
from flowcraft.errors import (
    BlueprintError,
    BlueprintVersionError,
    ContextError,
    FlowcraftError,
    NodeTimeoutError,
)
from flowcraft.events import ContextChange, Event, JobFailed, JobProcessed, NodeStart
from flowcraft.expressions import ExpressionEvaluator
from flowcraft.nodes import NodeContext, NodeResult
from flowcraft.result import WorkflowResult
from flowcraft.runtime.executor import Executor, failure_of
from flowcraft.runtime.graph import CompiledNode, Graph
from flowcraft.runtime.routing import resolve_inputs
from flowcraft.runtime.spec import GraphSpec, graph_spec

log = logging.getLogger("flowcraft.distributed")

_to_json, _from_json = msgspec.json.encode, msgspec.json.decode

CRASH_AFTER_COMMIT_ENV = "FLOWCRAFT_TEST_CRASH_AFTER_COMMIT"
"""Test-only hook: a worker whose environment names a node id here SIGKILLs itself right after
committing that node and before handing its successors to the queue."""

_JOB_TRY: ContextVar[tuple[int, int]] = ContextVar("flowcraft_job_try", default=(1, 0))
"""(this try of the job, the queue's tries per job or 0: no limit), as the host says."""


class JobOutcome(StrEnum):
    """What handling one job did (a refused claim answers with its `Refusal` instead)."""

    COMMITTED = "committed"    # the instance's completion (or pause) is recorded
    FAILED = "failed"          # the node failed for good; the run failed
    HANDED_OFF = "handed-off"  # batch items or a child run carry on; the instance stays open
    CANCELLED = "cancelled"    # the lease was lost or the run cancelled while it ran
    REJECTED = "rejected"      # the store refused the commit (a stale lease: fencing)


class VersionMismatch(Exception):
    """The job's blueprint version differs from this worker's; retry the job later."""

    def __init__(self, payload: JobPayload, worker_version: str | None, defer_s: float) -> None:
        super().__init__(f"run {payload.run_id!r}: job for node {payload.node_id!r} has "
                         f"blueprint version {payload.version!r}, this worker has "
                         f"{worker_version!r}")
        self.defer_s = defer_s


class Job:
    """One claimed job: what its node sees and writes, and the `Host` of its construct."""

    def __init__(self, worker: JobWorker, payload: JobPayload, graph: Graph,
                 node: CompiledNode, token: str, fusion: Fusion | None = None) -> None:
        self.worker = worker
        self.fusion = fusion
        self.payload = payload
        self.graph = graph
        self.spec = graph_spec(graph)
        self.node = node
        self.token = token
        self.ref = InstanceRef(payload.run_id, node.index, payload.iteration, payload.item)
        self.buffered = BufferedContext(worker.store, payload.run_id)
        self.events: list[Event] = []
        self.record = worker.recorder(self.events)
        self.defer_ms = 0
        self.settling = False  # the store is told the outcome: the lease ends by itself

    # -- Host -------------------------------------------------------------------------------

    @property
    def evaluator(self) -> ExpressionEvaluator | None:
        return self.worker.evaluator

    async def scope(self, names: Collection[str]) -> Mapping[str, Any]:
        if self.worker.evaluator is not None:
            return await self.buffered.to_dict()
        keys = list(names)
        await self.buffered.prefetch(keys)
        return self.buffered.view(keys)

    async def loop_count(self, node: CompiledNode, iteration: int) -> int:
        return await self.worker.store.loop_count(
            InstanceRef(self.payload.run_id, node.index, iteration))

    async def delay(self, node: CompiledNode, ctx: NodeContext, ms: float) -> NodeResult:
        self.defer_ms = int(ms)  # the successors' jobs are deferred; nobody holds anything
        return NodeResult(ctx.input)

    async def fan_out(self, node: CompiledNode, ctx: NodeContext,
                      items: list[Any]) -> list[Any] | None:
        if not items:
            return []
        run_id = self.payload.run_id
        self.settling = True
        outcome = await self.worker.store.hand_off(
            self.ref, self.token, [_to_json(item) for item in items],
            self.worker.stream(self.events), concurrency_of(node, len(items)))
        self.events.clear()
        if outcome.ok:
            self.worker.after_commit(node)
        # the items' jobs, or (a retried scatter) the outbox its first attempt left
        await self.worker.dispatch(run_id, self.spec, outcome.jobs)
        if outcome.finished:  # the run stopped meanwhile and this dropped the batch
            await self.worker.ended(run_id, outcome)
        return None

    async def run_child(self, node: CompiledNode, ctx: NodeContext, blueprint_id: str,
                        context: dict[str, Any], run_id: str) -> WorkflowResult | None:
        """Start the child run and park this instance until the child ends (or pauses)."""
        worker, parent = self.worker, self.payload.run_id
        self.settling = True  # from here on a cancelled parent cancels the child (below)
        await worker.start_run(worker.graph(blueprint_id).id, context, run_id,
                               (parent, node.index, self.payload.iteration))
        parked = await worker.store.hand_off(self.ref, self.token)
        await worker.dispatch(parent, self.spec, parked.jobs)  # a retried park's outbox
        if parked.reason == Refusal.NOT_RUNNING:  # the parent stopped meanwhile
            await worker.ended(parent, parked)
            await worker.cancel_child(run_id)
        elif parked.ok and (await worker.store.result(run_id) is not None
                            or await worker.store.status(run_id) == "cancelled"):
            await worker.notify_parent(run_id)  # the child ended (or was cancelled) first
        return None

    async def emit(self, event: Event) -> None:
        await self.record(event)


class JobWorker(Control):
    """Runs node jobs against a CoordinationStore and a JobQueue (and can do all the control
    side can). `lease_ms` bounds how long a crashed worker blocks an instance (a live worker
    renews its lease while the node runs)."""

    executes_code = True

    def __init__(self, store: CoordinationStore, queue: JobQueue, flows: Flows = (), *,
                 dependencies: Mapping[str, Any] | None = None, version_grace_s: float = 60.0,
                 job_timeout_s: float | None = None, fuse_nodes: int = 64,
                 fuse_seconds: float = 2.0, fuse_width: int = 4, **options: Any) -> None:
        """`options` are the control side's (`Completer`): registry, middleware, event_bus,
        evaluator, lease_ms, stream_events. `job_timeout_s` is the queue's own limit per job
        (arq's `job_timeout`): a job still running shortly before it fails its instance.
        `fuse_nodes` successors at most (0: none), for `fuse_seconds` at most, `fuse_width`
        per commit, run on in the job that fired them (see `Fusion`)."""
        super().__init__(store, queue, flows, **options)
        if fuse_nodes < 0 or fuse_width < 1 or fuse_seconds < 0:
            raise FlowcraftError(f"fusion needs fuse_nodes >= 0, fuse_width >= 1 and "
                                 f"fuse_seconds >= 0 (got {fuse_nodes!r}, {fuse_width!r}, "
                                 f"{fuse_seconds!r})")
        self.fuse_nodes, self.fuse_seconds, self.fuse_width = fuse_nodes, fuse_seconds, fuse_width
        self.dependencies: Mapping[str, Any] = dependencies or {}
        self.version_grace_s = version_grace_s
        self.job_timeout_s = job_timeout_s
        self._input_keys: dict[int, tuple[str, ...]] = {}

    async def handle(self, payload: JobPayload, *, job_try: int = 1,
                     max_tries: int = 0) -> JobOutcome | Refusal:
        """Run one node job, and the successors it runs on (fusion). Returns what happened to
        the job's own node, or why the store refused it.

        `job_try` / `max_tries`: which try of its job this is and how many the queue allows
        (0: no limit); they pace the version grace period (`version_retry_s`). The job and its
        fused successors must end before `_deadline_s`: a successor still running then is
        given up and queued as a job of its own, the job's own node fails."""
        tries = _JOB_TRY.set((job_try, max_tries))
        try:
            outcome: JobOutcome | Refusal | None = None
            with anyio.move_on_after(self._deadline_s()) as deadline:
                if not self.fuse_nodes:
                    outcome = await self._traced(payload, None, None)
                else:
                    fusion = Fusion(self, self.fuse_nodes, self.fuse_seconds, self.fuse_width)
                    outcome = await fusion.run_job(payload)
            if deadline.cancelled_caught:
                if self.fuse_nodes:
                    await fusion.requeue_unfinished()
                if outcome is None:
                    outcome = await self._past_deadline(payload)
        finally:
            _JOB_TRY.reset(tries)
        assert outcome is not None
        return outcome

    async def _traced(self, payload: JobPayload, fusion: Fusion | None,
                      claimed: tuple[str, bytes] | None) -> JobOutcome | Refusal:
        """One node of the job (its own or a fused one), traced, with its job event."""
        token = CURRENT_JOB.set(self._job_trace(payload))  # tracing hook (jobtrace.py)
        try:
            outcome = await self._handle(payload, fusion, claimed)
        finally:
            CURRENT_JOB.reset(token)
        if self._job_events:
            event: Event
            if outcome == JobOutcome.FAILED:
                event = JobFailed(run_id=payload.run_id, blueprint_id=payload.blueprint_id,
                                  node_id=payload.node_id, iteration=payload.iteration,
                                  job_id=payload.job_id, message="the node failed")
            else:
                event = JobProcessed(run_id=payload.run_id, blueprint_id=payload.blueprint_id,
                                     node_id=payload.node_id, iteration=payload.iteration,
                                     job_id=payload.job_id)
            events: list[Event] = []
            await self.recorder(events)(event)
            if streamed := self.stream(events):
                await self.store.log(payload.run_id, streamed)
        return outcome

    def _job_trace(self, payload: JobPayload) -> JobTrace:
        graph = self._graphs.get(payload.blueprint_id)
        node = graph.by_id.get(payload.node_id) if graph is not None else None
        return JobTrace(payload.trace, payload.job_id, getattr(self.queue, "queue_name", ""),
                        getattr(self.queue, "system", "flowcraft"),
                        tuple(e.source.id for e in node.in_edges) if node is not None else ())

    async def _handle(self, payload: JobPayload, fusion: Fusion | None,
                      claimed: tuple[str, bytes] | None) -> JobOutcome | Refusal:
        """Claim the job's instance (unless a commit `claimed` it for us: token, input), run
        it, complete it."""
        graph = self.graph(payload.blueprint_id)
        spec = graph_spec(graph)
        node = graph.by_id.get(payload.node_id)
        if node is None:
            raise BlueprintError(f"run {payload.run_id!r}: node {payload.node_id!r} is not in "
                                 f"blueprint {graph.id!r}")
        if payload.item >= 0 and node.batch_worker is None:
            raise BlueprintError(f"run {payload.run_id!r}: node {node.id!r} is not a batch, "
                                 f"job {payload.job_id!r} names an item of it")
        if (payload.version or None) != spec.version:
            return await self._version_mismatch(payload, spec, node)
        run_id = payload.run_id
        if claimed is not None:
            token, raw_input = claimed
            job = Job(self, payload, graph, node, token, fusion)
        else:
            token = delivery_token(payload.job_id, secrets.token_hex(8))
            job = Job(self, payload, graph, node, token, fusion)
            claim = await self.store.claim(job.ref, token, self.lease_ms)
            if claim.reason is not None:
                log.debug("run %s: job %s not run (%s)", run_id, payload.job_id, claim.reason)
                await self.dispatch(run_id, spec, claim.jobs)
                return claim.reason
            if claim.gathered:
                return await self._complete_batch(job, claim.input)
            raw_input = claim.input
        outcome: JobOutcome | bytes = JobOutcome.CANCELLED
        try:
            with anyio.CancelScope() as scope:
                heartbeat = self._heartbeat(job, scope)
                try:
                    if payload.item >= 0:
                        outcome = await self._run_item(job, raw_input)
                    else:
                        outcome = await self._run_node(job, raw_input)
                finally:
                    heartbeat.stop()
        finally:
            if outcome == JobOutcome.CANCELLED:
                with anyio.CancelScope(shield=True):
                    released = await self.store.release(job.ref, token)
                    log.info("run %s: job %s released (%s)", run_id, payload.job_id,
                             released.status or released.reason)
        if isinstance(outcome, bytes):  # the batch's last item: its outputs, gathered
            return await self._complete_batch(job, outcome)
        return outcome

    def _heartbeat(self, job: Job, scope: anyio.CancelScope) -> Heartbeat:
        """Renew `job`'s lease while its node runs; cancel it (`scope`) once the lease is lost
        or the run cancelled. Never once the job settles: its own commit ends the lease, and
        the dispatch that follows must not be cancelled."""

        async def renew() -> Beat:
            if job.settling:
                return Beat.STOP
            status = await self.store.renew(job.ref, job.token, self.lease_ms)
            if job.settling:
                return Beat.STOP
            if status is None or status == "cancelled":
                log.info("run %s: node %s stops (%s)", job.ref.run_id, job.node.id,
                         "lease lost" if status is None else "run cancelled")
                return Beat.LOST
            return Beat.KEEP

        return Heartbeat(renew, scope.cancel, min(self.lease_ms / 3000.0, 1.0))

    def version_retry_s(self, max_tries: int) -> float:
        """Seconds between the tries of a job with another blueprint version: at most 5 s
        (a quarter of the grace period when shorter), but long enough that `max_tries` tries
        span the whole grace period (arq drops a job whose tries are used up)."""
        grace = self.version_grace_s
        spread = grace / (max_tries - 1) if max_tries > 1 else grace
        return max(min(5.0, grace / 4), spread)

    async def _version_mismatch(self, payload: JobPayload, spec: GraphSpec,
                                node: CompiledNode) -> JobOutcome | Refusal:
        """Retry the job (another worker may have its version) until the grace period,
        counted in tries, is over, then fail the instance with BlueprintVersionError. The
        tries are the queue's, so the count holds across workers and restarts."""
        number, most = _JOB_TRY.get()
        defer = self.version_retry_s(most)
        if (number - 1) * defer < self.version_grace_s and (most == 0 or number < most):
            raise VersionMismatch(payload, spec.version, defer)
        return await self._fail_unrun(payload, spec, node, BlueprintVersionError(
            f"run {payload.run_id!r}: node {node.id!r} was scheduled with blueprint version "
            f"{payload.version!r} but the workers run version {spec.version!r}"), 0)

    def _deadline_s(self) -> float:
        """How long a job may run: the queue's job timeout less a margin to record the
        failure in (a tenth of it, at most 5 s)."""
        if self.job_timeout_s is None:
            return float("inf")
        return self.job_timeout_s - min(5.0, self.job_timeout_s / 10)

    async def _past_deadline(self, payload: JobPayload) -> JobOutcome | Refusal:
        """The job ran into `_deadline_s` (and gave its instance up): the queue would drop it
        without a retry, so fail the instance now, with an error that says why."""
        graph = self.graph(payload.blueprint_id)
        node = graph.by_id[payload.node_id]
        log.warning("run %s: job %s ran past the job timeout (%g s)", payload.run_id,
                    payload.job_id, self.job_timeout_s)
        return await self._fail_unrun(payload, graph_spec(graph), node, NodeTimeoutError(
            f"run {payload.run_id!r}: node {node.id!r} was still running after "
            f"{self._deadline_s():g} s, close to the job timeout of {self.job_timeout_s:g} s "
            f"(arq's job_timeout); give the node a `timeout` below it to retry it instead"), 1)

    async def _fail_unrun(self, payload: JobPayload, spec: GraphSpec, node: CompiledNode,
                          cause: FlowcraftError, attempt: int) -> JobOutcome | Refusal:
        """Claim the instance and record `cause` as its failure (refused if it is not ours
        to take: already done, leased elsewhere, run over)."""
        token = secrets.token_hex(8)
        ref = InstanceRef(payload.run_id, node.index, payload.iteration, payload.item)
        claim = await self.store.claim(ref, token, self.lease_ms)
        if claim.reason is not None:
            await self.dispatch(payload.run_id, spec, claim.jobs)
            return claim.reason
        await self.record_failure(ref, spec, node, token, cause, attempt, [], [])
        return JobOutcome.FAILED

    # -- running nodes ----------------------------------------------------------------------

    def _input_keys_of(self, node: CompiledNode) -> tuple[str, ...]:
        keys = self._input_keys.get(id(node))
        if keys is None:
            paths = ([node.inputs] if isinstance(node.inputs, str)
                     else list((node.inputs or {}).values()))
            wanted: list[str] = []
            for path in paths:
                wanted.append(path)
                head = path.partition(".")[0]
                wanted += [head, OUTPUTS_PREFIX + head]
                if path.startswith(OUTPUTS_PREFIX):
                    wanted.append(OUTPUTS_PREFIX + path[len(OUTPUTS_PREFIX):].partition(".")[0])
            keys = self._input_keys[id(node)] = tuple(dict.fromkeys(wanted))
        return keys

    def _context(self, job: Job, node_id: str) -> NodeScopedContext:
        emit, run_id, iteration = self._emit, job.payload.run_id, job.payload.iteration
        if emit is None and "context:change" not in self.stream_events:
            return NodeScopedContext(job.buffered, run_id, node_id)

        async def changed(key: str, op: str, value: Any) -> None:
            await job.record(ContextChange(run_id=run_id, blueprint_id=job.graph.id, key=key,
                                           op=op, node_id=node_id, iteration=iteration,
                                           value=value))

        return NodeScopedContext(job.buffered, run_id, node_id, changed)

    async def _run_node(self, job: Job, raw_input: bytes) -> JobOutcome:
        payload, graph, node = job.payload, job.graph, job.node
        run_id = payload.run_id
        if node.inputs is not None:
            keys = self._input_keys_of(node)
            await job.buffered.prefetch(keys)
            node_input = resolve_inputs(node.inputs, job.buffered.view(keys), graph.by_id)
        else:
            node_input = _from_json(raw_input)
        ctx = NodeContext(context=self._context(job, node.id), input=node_input,
                          params=node.params, dependencies=self.dependencies, run_id=run_id,
                          node_id=node.id, blueprint_id=graph.id, iteration=payload.iteration)
        await job.record(NodeStart(run_id=run_id, blueprint_id=graph.id, node_id=node.id,
                                   iteration=payload.iteration, input=node_input))
        try:
            if node.kind is None:
                fallback = graph.by_id[node.config.fallback] if node.config.fallback else None
                result = await Executor(self.middleware, job.record).execute(node, ctx,
                                                                            fallback)
            else:
                result = await run_builtin(node, ctx, job)
        except FlowcraftError as exc:
            cause, attempt = failure_of(exc, ctx.attempt)
            job.settling = True
            await self.record_failure(job.ref, job.spec, node, job.token, cause, attempt,
                                      job.buffered.encoded_writes(), job.events)
            return JobOutcome.FAILED
        output_type = type(result.output)
        if output_type is Handoff:
            return JobOutcome.HANDED_OFF
        if output_type is Suspended:
            return await self._commit(job, CommitRequest(
                token=job.token, node_id=node.id, writes=job.buffered.encoded_writes(),
                events=self.stream(job.events), timestamp=timestamp(),
                await_details=_to_json(result.output)))
        return await self._complete(job, result)

    async def _complete(self, job: Job, result: NodeResult) -> JobOutcome:
        try:
            ensure_encodable(output_key(job.node.id), result.output)
        except ContextError as exc:
            job.settling = True
            await self.record_failure(job.ref, job.spec, job.node, job.token, ContextError(
                f"run {job.ref.run_id!r}, node {job.node.id!r}: output {exc}"), 1,
                job.buffered.encoded_writes(), job.events)
            return JobOutcome.FAILED
        request = await self.completion(job.ref, job.graph, job.node, job.token, result,
                                        job.buffered, job.events, job.defer_ms)
        return await self._commit(job, request)

    async def _commit(self, job: Job, request: CommitRequest) -> JobOutcome:
        job.settling = True
        fusion = job.fusion
        wanted = fusion.wanted() if fusion is not None else 0
        if wanted:
            request = msgspec.structs.replace(request, fuse=wanted, fuse_token=job.token,
                                              lease_ms=self.lease_ms)
        outcome = await self.commit(job.ref, job.spec, job.node, request)
        if outcome.claimed and fusion is not None:
            fusion.start(job.payload, job.spec, job.token, outcome.claimed)
        return JobOutcome.COMMITTED if outcome.ok else JobOutcome.REJECTED

    def after_commit(self, node: CompiledNode) -> None:
        if os.environ.get(CRASH_AFTER_COMMIT_ENV) == node.id:  # pragma: no cover - test hook
            log.warning("test hook: crashing after the commit of %s", node.id)
            os.kill(os.getpid(), signal.SIGKILL)

    # -- batches ----------------------------------------------------------------------------

    async def _run_item(self, job: Job, raw_input: bytes) -> JobOutcome | bytes:
        """One item of a batch, run by the batch's worker implementation. Returns the
        gathered outputs when this was the batch's last item."""
        payload, graph, node = job.payload, job.graph, job.node
        worker = node.batch_worker
        assert worker is not None
        index = payload.item
        ctx = item_context(node, self._context(job, f"{node.id}[{index}]"), index,
                           _from_json(raw_input), run_id=payload.run_id, blueprint_id=graph.id,
                           iteration=payload.iteration, dependencies=self.dependencies)
        fallback = graph.by_id[node.config.fallback] if node.config.fallback else None
        cause: BaseException | None = None
        try:
            result = await Executor(self.middleware, job.record).execute(worker, ctx, fallback)
        except FlowcraftError as exc:
            cause, attempt = failure_of(exc, ctx.attempt)
        else:
            attempt = ctx.attempt
            try:
                ensure_encodable(output_key(node.id), result.output)
            except ContextError as exc:
                cause = ContextError(f"run {payload.run_id!r}, node {ctx.node_id!r}: "
                                     f"output {exc}")
        job.settling = True
        if cause is not None:
            await self.record_failure(job.ref, job.spec, node, job.token, cause, attempt,
                                      job.buffered.encoded_writes(), job.events)
            return JobOutcome.FAILED
        request = CommitRequest(
            token=job.token, node_id=node.id, writes=job.buffered.encoded_writes(),
            events=self.stream(job.events), timestamp=timestamp(),
            item_output=_to_json(result.output), lease_ms=self.lease_ms)
        outcome = await self.store.commit(job.ref, job.spec, request)
        if not outcome.ok:
            log.warning("run %s: commit of %s rejected (%s)", payload.run_id, payload.job_id,
                        outcome.reason)
            return JobOutcome.REJECTED
        await self.dispatch(payload.run_id, job.spec, outcome.jobs)
        return outcome.gathered if outcome.gathered is not None else JobOutcome.COMMITTED

    async def _complete_batch(self, job: Job, outputs_json: bytes) -> JobOutcome:
        """All items finished: the batch node completes with the list of their outputs."""
        payload = msgspec.structs.replace(job.payload, item=-1)
        job.payload, job.ref = payload, job.ref.batch
        node = job.node
        ctx = NodeContext(context=self._context(job, node.id), input=None, params=node.params,
                          dependencies=self.dependencies, run_id=payload.run_id,
                          node_id=node.id, blueprint_id=job.graph.id,
                          iteration=payload.iteration)
        result = await finish_batch(node, ctx, _from_json(outputs_json), job)
        return await self._complete(job, result)


__all__ = ["Job", "JobOutcome", "JobWorker", "VersionMismatch"]
