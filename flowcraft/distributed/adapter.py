"""BaseDistributedAdapter: technology-agnostic handling of one node job.

For one `JobPayload` a worker: claims the instance (a lease with a fencing token), runs the node
through the core `Executor` (middleware, attempts, timeouts, fallback) with a buffered context,
decides the routing with the core's `decide_edges` / `edge_value`, and commits everything in one
store call (or records the failure). The store answers with the successors it made ready; the
adapter hands them to the queue and acknowledges them in the store's outbox. A crash anywhere in
between leaves either an uncommitted instance (the job is delivered again) or an outbox entry
(re-driven by the redelivered job or by `reconcile`).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import anyio
import msgspec

from flowcraft.blueprint import WorkflowBlueprint
from flowcraft.builder import Flow
from flowcraft.builtins.kinds import BATCH, SLEEP, SUBFLOW, WAIT, Suspended, parse_duration
from flowcraft.context import OUTPUTS_PREFIX, NodeScopedContext, ensure_encodable, output_key
from flowcraft.distributed.context import BufferedContext
from flowcraft.distributed.protocols import (
    FRESH,
    PARENT,
    SAME,
    CommitRequest,
    CoordinationStore,
    FailRequest,
    JobPayload,
    JobQueue,
    JobRef,
    QueuedJob,
    Resolution,
)
from flowcraft.errors import (
    BlueprintError,
    BlueprintVersionError,
    ContextError,
    FlowcraftError,
    LoopLimitError,
    ResumeError,
    RunNotFoundError,
    SubflowError,
)
from flowcraft.events import (
    BatchFinish,
    BatchStart,
    ContextChange,
    EdgeEvaluate,
    Event,
    NodeErrorEvent,
    NodeFinish,
    NodeStart,
    WorkflowResume,
    WorkflowStart,
    as_emitter,
    encode_event,
)
from flowcraft.expressions import compile_expression
from flowcraft.nodes import NodeContext, NodeResult
from flowcraft.result import WorkflowError, WorkflowResult, utc_now
from flowcraft.runtime.executor import Executor, RecoveredResult, failure_of
from flowcraft.runtime.graph import BACK, CONTINUE, EXIT, CompiledNode, Graph
from flowcraft.runtime.routing import (
    ExpressionEvaluator,
    decide_edges,
    edge_value,
    loop_continues,
    resolve_inputs,
)
from flowcraft.runtime.runtime import FlowRuntime
from flowcraft.runtime.spec import GraphSpec, graph_spec

log = logging.getLogger("flowcraft.distributed")

_encode = msgspec.json.encode
_decode = msgspec.json.decode

CRASH_AFTER_COMMIT_ENV = "FLOWCRAFT_TEST_CRASH_AFTER_COMMIT"
"""Test-only hook: a worker whose environment names a node id here SIGKILLs itself right after
committing that node and before handing its successors to the queue."""

DEFAULT_STREAM_EVENTS: frozenset[str] = frozenset({
    "workflow:start", "workflow:finish", "workflow:pause", "workflow:resume", "node:start",
    "node:finish", "node:error", "node:retry", "node:fallback", "node:skipped", "batch:start",
    "batch:finish",
})
"""Event types recorded in the run's event log (`client.events`)."""

Flows = Iterable[Flow | WorkflowBlueprint]


def _timestamp() -> str:
    return utc_now().isoformat()


class VersionMismatch(Exception):
    """The job's blueprint version differs from this worker's; retry the job later."""

    def __init__(self, payload: JobPayload, worker_version: str | None, defer_s: float) -> None:
        super().__init__(f"run {payload.run_id!r}: job for node {payload.node_id!r} has "
                         f"blueprint version {payload.version!r}, this worker has "
                         f"{worker_version!r}")
        self.defer_s = defer_s


class BaseDistributedAdapter:
    """Runs node jobs against a CoordinationStore and a JobQueue.

    `flows` are the flows (or blueprints, with `registry`) this worker can execute; they are
    compiled once. `lease_ms` bounds how long a crashed worker blocks an instance (a live
    worker renews its lease while the node runs). `stream_events` selects the event types
    recorded in the run's event log; `event_bus` additionally receives every event locally.
    """

    def __init__(
        self,
        store: CoordinationStore,
        queue: JobQueue,
        flows: Flows = (),
        *,
        registry: Mapping[str, Any] | None = None,
        dependencies: Mapping[str, Any] | None = None,
        middleware: Sequence[Any] = (),
        event_bus: Any = None,
        evaluator: ExpressionEvaluator | None = None,
        lease_ms: int = 30_000,
        version_grace_s: float = 60.0,
        stream_events: Iterable[str] = DEFAULT_STREAM_EVENTS,
    ) -> None:
        self.store = store
        self.queue = queue
        self.runtime = FlowRuntime(registry=registry, dependencies=dependencies,
                                   middleware=middleware, evaluator=evaluator)
        self.dependencies: Mapping[str, Any] = dependencies or {}
        self.evaluator = evaluator
        self.lease_ms = lease_ms
        self.version_grace_s = version_grace_s
        self.stream_events = frozenset(stream_events)
        self._emit = as_emitter(event_bus)
        self._skip_events = "node:skipped" in self.stream_events
        self._edge_events = "edge:evaluate" in self.stream_events or self._emit is not None
        self._graphs: dict[str, Graph] = {}
        self._input_keys: dict[int, tuple[str, ...]] = {}
        self._loop_names: dict[int, tuple[str, ...]] = {}
        self._version_seen: dict[str, float] = {}
        for flow in flows:
            self.register(flow)

    # -- registry ---------------------------------------------------------------------------

    def register(self, flow: Flow | WorkflowBlueprint) -> Graph:
        """Make a flow (or a blueprint whose `uses` keys are in the registry) executable."""
        graph = self.runtime.graph_for(flow)
        self._graphs[graph.id] = graph
        return graph

    def graph(self, blueprint_id: str) -> Graph:
        graph = self._graphs.get(blueprint_id)
        if graph is None:
            raise BlueprintError(f"no flow with blueprint id {blueprint_id!r} is registered "
                                 "with this worker")
        return graph

    @property
    def blueprint_ids(self) -> list[str]:
        return list(self._graphs)

    # -- starting and driving runs ----------------------------------------------------------

    async def start_run(self, flow: Flow | WorkflowBlueprint | str,
                        context: Mapping[str, Any] | None = None,
                        run_id: str | None = None,
                        parent: tuple[str, int, int] | None = None) -> str:
        """Create the run (idempotent on `run_id`) and put its start jobs in the queue.

        `parent` = (run id, node index, iteration) of the subflow node a child run belongs to.
        """
        if isinstance(flow, str):
            graph = self.graph(flow)
        else:
            graph = self._graphs.get(flow.id) or self.register(flow)
        if not graph.start_nodes:
            raise BlueprintError(f"blueprint {graph.id!r} has no start node")
        spec = graph_spec(graph)
        run_id = run_id or uuid.uuid4().hex
        data: dict[str, bytes] = {}
        for key, value in (context or {}).items():
            ensure_encodable(key, value)
            data[key] = _encode(value)
        meta = {"blueprint_id": graph.id, "version": spec.version or "", "status": "running",
                "created": str(int(time.time() * 1000))}
        if parent is not None:
            meta.update(parent_run=parent[0], parent_node=str(parent[1]),
                        parent_it=str(parent[2]))
        events = []
        if "workflow:start" in self.stream_events:
            events.append(encode_event(WorkflowStart(
                run_id=run_id, blueprint_id=graph.id,
                context={k: _decode(v) for k, v in data.items()})))
        outcome = await self.store.start_run(run_id, spec, data, meta, events)
        if not outcome.created:
            existing = await self.store.blueprint_of(run_id)
            if existing != graph.id:
                raise FlowcraftError(f"run {run_id!r} already exists for blueprint "
                                     f"{existing!r}, not {graph.id!r}")
        await self.dispatch(run_id, spec, outcome.jobs)
        return run_id

    async def dispatch(self, run_id: str, spec: GraphSpec, refs: Sequence[JobRef]) -> None:
        """Hand jobs the store decided on to the queue, then clear them from the outbox."""
        if not refs:
            return
        jobs = [QueuedJob(self.payload_for(run_id, spec, ref), ref.defer_until_ms or None)
                for ref in refs]
        await self.queue.enqueue(jobs)
        await self.store.ack(run_id, refs)

    @staticmethod
    def payload_for(run_id: str, spec: GraphSpec, ref: JobRef) -> JobPayload:
        return JobPayload(run_id, spec.blueprint_id, spec.node_ids[ref.node_index],
                          ref.iteration, 1, ref.epoch, spec.version, ref.item)

    async def resume(self, run_id: str, node_id: str | None = None, output: Any = None,
                     action: str | None = None) -> None:
        """Complete an awaiting (wait) node with `output`/`action` and continue its branch,
        as `FlowRuntime.resume` does; raises ResumeError when the node is not awaiting."""
        waiting = await self.store.awaiting(run_id)
        if node_id is None:
            if len(waiting) != 1:
                raise ResumeError(f"run {run_id!r}: node_id is required when "
                                  f"{len(waiting)} nodes await: {sorted(waiting.values())}")
            node_id = next(iter(waiting.values()))
        matches = [key for key, waiting_id in waiting.items() if waiting_id == node_id]
        if not matches:
            if await self.store.status(run_id) is None:
                raise RunNotFoundError(f"no run {run_id!r}")
            raise ResumeError(f"run {run_id!r}: node {node_id!r} is not awaiting "
                              f"(awaiting: {sorted(waiting.values())})")
        node_index, iteration = (int(part) for part in matches[0].split("#"))
        blueprint_id = await self.store.blueprint_of(run_id)
        if blueprint_id is None:
            raise RunNotFoundError(f"no run {run_id!r}")
        graph = self.graph(blueprint_id)
        spec = graph_spec(graph)
        node = graph.nodes[node_index]
        if node.kind == SUBFLOW:
            # resuming a subflow node resumes its child run (whose single awaiting node gets
            # the output); the child's end completes the node
            parked = await self.store.resume(run_id, spec, CommitRequest(
                node_index=node_index, iteration=iteration, token="", node_id=node.id,
                events=self._stream([WorkflowResume(run_id=run_id, blueprint_id=graph.id,
                                                    node_id=node.id)]),
                timestamp=_timestamp(), park=True))
            if not parked.ok:
                raise ResumeError(f"run {run_id!r}: cannot resume node {node.id!r} "
                                  f"({parked.reason})")
            await self.resume(self.child_run_id(run_id, node.id, iteration), None, output,
                              action)
            return
        ensure_encodable(output_key(node.id), output)
        output_json = _encode(output)
        buffered = BufferedContext(self.store, run_id)
        buffered.writes[output_key(node.id)] = output
        buffered.writes[node.id] = output
        result = NodeResult(output, action)
        events: list[Event] = []
        record = self._recorder(events)
        await record(WorkflowResume(run_id=run_id, blueprint_id=graph.id, node_id=node.id))
        await record(NodeFinish(run_id=run_id, blueprint_id=graph.id, node_id=node.id,
                                iteration=iteration, output=output, action=action))
        resolutions = await self._route(graph, node, buffered, result, output_json, run_id,
                                        record)
        request = CommitRequest(
            node_index=node_index, iteration=iteration, token="", node_id=node.id,
            writes=[(output_key(node.id), output_json), (node.id, output_json)],
            resolutions=resolutions, events=self._stream(events), timestamp=_timestamp(),
            skip_events=self._skip_events)
        outcome = await self.store.resume(run_id, spec, request)
        if not outcome.ok:
            raise ResumeError(f"run {run_id!r}: cannot resume node {node.id!r} "
                              f"({outcome.reason})")
        await self.dispatch(run_id, spec, outcome.jobs)
        await self._ended(run_id, outcome.finished, outcome.status)

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run: nothing new starts, running nodes are cancelled at their next lease
        renewal. Returns False when the run was not running or awaiting."""
        outcome = await self.store.cancel(run_id, _timestamp())
        if outcome.reason == "unknown":
            raise RunNotFoundError(f"no run {run_id!r}")
        return outcome.ok

    async def reconcile(self, stalled_after: float = 60.0) -> dict[str, int]:
        """Re-drive runs without progress for `stalled_after` seconds (see `reconcile_run`)."""
        counts = {"scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}
        for run_id in await self.store.stalled_runs(int(stalled_after * 1000)):
            counts["scanned"] += 1
            counts["stalled"] += 1
            try:
                outcome = await self.store.reconcile_run(run_id, _timestamp(),
                                                         int(stalled_after * 1000))
                if outcome.jobs:
                    graph = self.graph(outcome.blueprint_id)
                    await self.dispatch(run_id, graph_spec(graph), outcome.jobs)
                adopted = await self._reconcile_parked(run_id, outcome.blueprint_id)
                if outcome.jobs or outcome.finished or adopted:
                    counts["reconciled"] += 1
            except Exception:
                log.exception("reconciling run %s failed", run_id)
                counts["failed"] += 1
        return counts

    async def _reconcile_parked(self, run_id: str, blueprint_id: str) -> bool:
        """Subflow nodes still parked although their child run ended (the worker that
        recorded the child's end died before completing the node): complete them now."""
        parked = await self.store.parked(run_id)
        if not parked or not blueprint_id:
            return False
        graph = self.graph(blueprint_id)
        done = False
        for node_index, iteration in parked:
            child_id = self.child_run_id(run_id, graph.nodes[node_index].id, iteration)
            if await self.store.result(child_id) is not None:
                await self._notify_parent(child_id)
                done = True
        return done

    # -- one job ----------------------------------------------------------------------------

    async def handle(self, payload: JobPayload) -> str:
        """Run one node job. Returns what happened: "committed", "failed", or a refusal."""
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
        token = secrets.token_hex(8)
        claim = await self.store.claim(run_id, spec, node.index, payload.iteration, token,
                                       self.lease_ms, payload.item)
        if not claim.ok:
            log.debug("run %s: job %s not run (%s)", run_id, payload.job_id, claim.reason)
            if claim.jobs:
                await self.dispatch(run_id, spec, claim.jobs)
            return claim.reason
        if claim.gathered:
            return await self._complete_batch(payload, graph, spec, node, token, claim.input)
        outcome: str | bytes = "cancelled"
        try:
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._heartbeat, payload, node, token, scope)
                    if payload.item >= 0:
                        outcome = await self._run_item(payload, graph, spec, node, token,
                                                       claim.input)
                    elif node.kind == BATCH:
                        outcome = await self._scatter(payload, graph, spec, node, token)
                    elif node.kind == SUBFLOW:
                        outcome = await self._subflow(payload, node, token)
                    else:
                        outcome = await self._run_node(payload, graph, spec, node, token,
                                                       claim.input)
                    tg.cancel_scope.cancel()
        finally:
            if outcome == "cancelled":
                with anyio.CancelScope(shield=True):
                    released = await self.store.release(run_id, node.index, payload.iteration,
                                                        token, payload.item)
                    log.info("run %s: job %s released (%s)", run_id, payload.job_id,
                             released.status or released.reason)
        if isinstance(outcome, bytes):  # the batch's last item: its outputs, gathered
            return await self._complete_batch(payload, graph, spec, node, token, outcome)
        return outcome

    async def _heartbeat(self, payload: JobPayload, node: CompiledNode, token: str,
                         scope: anyio.CancelScope) -> None:
        interval = min(self.lease_ms / 3000.0, 1.0)
        while True:
            await anyio.sleep(interval)
            status = await self.store.renew(payload.run_id, node.index, payload.iteration,
                                            token, self.lease_ms, payload.item)
            if status is None or status == "cancelled":
                log.info("run %s: node %s stops (%s)", payload.run_id, node.id,
                         "lease lost" if status is None else "run cancelled")
                scope.cancel()
                return

    async def _version_mismatch(self, payload: JobPayload, spec: GraphSpec,
                                node: CompiledNode) -> str:
        if len(self._version_seen) > 10_000:
            self._version_seen.clear()
        first = self._version_seen.setdefault(payload.job_id, time.monotonic())
        if time.monotonic() - first < self.version_grace_s:
            raise VersionMismatch(payload, spec.version, min(5.0, self.version_grace_s / 4))
        self._version_seen.pop(payload.job_id, None)  # grace is over: decided either way
        token = secrets.token_hex(8)
        claim = await self.store.claim(payload.run_id, spec, node.index, payload.iteration,
                                       token, self.lease_ms, payload.item)
        if not claim.ok:
            return claim.reason
        cause = BlueprintVersionError(
            f"run {payload.run_id!r}: node {node.id!r} was scheduled with blueprint version "
            f"{payload.version!r} but the workers run version {spec.version!r}")
        await self._record_failure(payload, spec, node, token, cause, 0, [], [])
        return "failed"

    def _input_keys_of(self, graph: Graph, node: CompiledNode) -> tuple[str, ...]:
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

    async def _run_node(self, payload: JobPayload, graph: Graph, spec: GraphSpec,
                        node: CompiledNode, token: str, raw_input: bytes) -> str:
        run_id = payload.run_id
        buffered = BufferedContext(self.store, run_id)
        if node.inputs is not None:
            keys = self._input_keys_of(graph, node)
            await buffered.prefetch(keys)
            node_input = resolve_inputs(node.inputs, buffered.view(keys), graph.by_id)
        else:
            node_input = _decode(raw_input)
        events: list[Event] = []
        emit = self._emit

        async def record(event: Event) -> None:
            events.append(event)
            if emit is not None:
                await emit(event)

        listener = None
        if emit is not None:
            async def changed(key: str, op: str, value: Any) -> None:
                await emit(ContextChange(run_id=run_id, blueprint_id=graph.id, key=key, op=op,
                                         node_id=node.id, iteration=payload.iteration,
                                         value=value))
            listener = changed
        context = NodeScopedContext(buffered, run_id, node.id, listener)
        ctx = NodeContext(context=context, input=node_input, params=node.params,
                          dependencies=self.dependencies, run_id=run_id, node_id=node.id,
                          blueprint_id=graph.id, iteration=payload.iteration)
        await record(NodeStart(run_id=run_id, blueprint_id=graph.id, node_id=node.id,
                               iteration=payload.iteration, input=node_input))
        fallback = graph.by_id[node.config.fallback] if node.config.fallback else None
        defer_ms = 0
        try:
            if node.kind is None:
                result = await Executor(self.runtime.middleware, record).execute(node, ctx,
                                                                                fallback)
            elif node.is_controller:
                result = await self._loop_step(run_id, node, buffered, ctx)
            elif node.kind == SLEEP:
                defer_ms = int(parse_duration(node.params["duration"]))
                result = NodeResult(ctx.input)
            elif node.kind == WAIT:
                result = NodeResult(Suspended(kind=WAIT))
            else:
                raise BlueprintError(f"node {node.id!r}: built-in kind {node.kind!r} is not "
                                     "supported by distributed execution yet")
        except FlowcraftError as exc:
            cause, attempt = failure_of(exc, ctx.attempt)
            await self._record_failure(payload, spec, node, token, cause, attempt,
                                       buffered.encoded_writes(), events)
            return "failed"
        if type(result.output) is Suspended:
            return await self._suspend(payload, spec, node, token, buffered, events,
                                       result.output)
        try:
            ensure_encodable(output_key(node.id), result.output)
            output_json = _encode(result.output)
        except (ContextError, TypeError, ValueError, msgspec.EncodeError) as exc:
            await self._record_failure(payload, spec, node, token, ContextError(
                f"run {run_id!r}, node {node.id!r}: output {exc}"), 1,
                buffered.encoded_writes(), events)
            return "failed"
        await record(NodeFinish(run_id=run_id, blueprint_id=graph.id, node_id=node.id,
                                iteration=payload.iteration, output=result.output,
                                action=result.action))
        writes = buffered.encoded_writes()
        recorded = {node.id: result.output}
        if type(result) is RecoveredResult:
            recorded = {result.fallback_id: result.output, node.id: None}
        for key, value in recorded.items():
            raw = output_json if value is result.output else b"null"
            writes += [(output_key(key), raw), (key, raw)]
            buffered.writes[output_key(key)] = value
            buffered.writes[key] = value
        resolutions = await self._route(graph, node, buffered, result, output_json, run_id,
                                        record)
        request = CommitRequest(
            node_index=node.index, iteration=payload.iteration, token=token, node_id=node.id,
            writes=writes, resolutions=resolutions, events=self._stream(events),
            timestamp=_timestamp(), defer_ms=defer_ms)
        return await self._commit(payload, spec, node, request)

    async def _commit(self, payload: JobPayload, spec: GraphSpec, node: CompiledNode,
                      request: CommitRequest) -> str:
        run_id = payload.run_id
        if self._skip_events and request.resolutions:
            request = msgspec.structs.replace(request, skip_events=True)
        outcome = await self.store.commit(run_id, spec, request)
        if not outcome.ok:
            log.warning("run %s: commit of node %s#%d rejected (%s)", run_id, node.id,
                        payload.iteration, outcome.reason)
            if outcome.jobs:
                await self.dispatch(run_id, spec, outcome.jobs)
            return f"rejected:{outcome.reason}"
        if os.environ.get(CRASH_AFTER_COMMIT_ENV) == node.id:  # pragma: no cover - test hook
            log.warning("test hook: crashing after the commit of %s", node.id)
            os.kill(os.getpid(), signal.SIGKILL)
        await self.dispatch(run_id, spec, outcome.jobs)
        await self._ended(run_id, outcome.finished, outcome.status)
        return "committed"

    async def _ended(self, run_id: str, finished: bool, status: str) -> None:
        """After a run ended or paused: if it is a subflow's child run, tell its parent."""
        if (finished or status == "awaiting") and "/" in run_id:
            await self._notify_parent(run_id)

    @staticmethod
    def child_run_id(run_id: str, node_id: str, iteration: int) -> str:
        """The run id of a subflow node's child run (as in memory)."""
        return f"{run_id}/{node_id}#{iteration}"

    async def _subflow(self, payload: JobPayload, node: CompiledNode, token: str) -> str:
        """A subflow node starts its child run (idempotent on the child's id) and parks; the
        child's end (or pause) takes the parked instance back and completes it."""
        run_id = payload.run_id
        params = node.params
        child_graph = self.graph(params["blueprintId"])
        buffered = BufferedContext(self.store, run_id)
        child_context = {child_key: await buffered.get(parent_key)
                         for child_key, parent_key in params.get("inputs", {}).items()}
        child_id = self.child_run_id(run_id, node.id, payload.iteration)
        await self.start_run(child_graph.id, child_context, child_id,
                             (run_id, node.index, payload.iteration))
        parked = await self.store.park(run_id, node.index, payload.iteration, token)
        if not parked.ok:
            return f"rejected:{parked.reason}"
        if await self.store.result(child_id) is not None:  # the child ended before we parked
            await self._notify_parent(child_id)
        return "parked"

    async def _notify_parent(self, child_id: str) -> None:
        """A child run ended or paused: complete (or fail, or pause) its subflow node."""
        link = await self.store.parent_of(child_id)
        raw = await self.store.result(child_id)
        if link is None or raw is None:
            return
        parent_run, node_index, iteration = link
        blueprint_id = await self.store.blueprint_of(parent_run)
        if blueprint_id is None:
            return
        graph = self.graph(blueprint_id)
        spec = graph_spec(graph)
        node = graph.nodes[node_index]
        token = secrets.token_hex(8)
        if not await self.store.adopt(parent_run, node_index, iteration, token, self.lease_ms):
            return
        child = WorkflowResult.from_json(raw)
        payload = JobPayload(parent_run, graph.id, node.id, iteration, 1, 0, spec.version)
        if child.status == "awaiting":
            await self._commit(payload, spec, node, CommitRequest(
                node_index=node_index, iteration=iteration, token=token, node_id=node.id,
                timestamp=_timestamp(), await_details=b"{}"))
            return
        if child.status != "completed":
            detail = "; ".join(f"{e.node_id}: {e.type}: {e.message}" for e in child.errors)
            await self._record_failure(payload, spec, node, token, SubflowError(
                f"subflow {node.id!r} (blueprint {node.params['blueprintId']!r}) ended "
                f"{child.status}: {detail or 'no error recorded'}"), 1, [], [])
            return
        buffered = BufferedContext(self.store, parent_run)
        for parent_key, child_key in node.params.get("outputs", {}).items():
            await buffered.set(parent_key, child.context.get(child_key))
        output = {k: v for k, v in child.context.items() if not k.startswith("_")}
        await self._complete_with(payload, graph, spec, node, token, output, buffered, [])

    async def _scatter(self, payload: JobPayload, graph: Graph, spec: GraphSpec,
                       node: CompiledNode, token: str) -> str:
        """A batch node: every item of the list at `inputKey` becomes its own job."""
        run_id = payload.run_id
        key = node.params["inputKey"]
        items = await BufferedContext(self.store, run_id).get(key)
        events: list[Event] = [NodeStart(run_id=run_id, blueprint_id=graph.id, node_id=node.id,
                                         iteration=payload.iteration, input=None)]
        if not isinstance(items, list):
            await self._record_failure(payload, spec, node, token, ContextError(
                f"batch {node.id!r}: context key {key!r} holds {type(items).__name__}, "
                "expected a list"), 1, [], events)
            return "failed"
        events.append(BatchStart(run_id=run_id, blueprint_id=graph.id, node_id=node.id,
                                 iteration=payload.iteration, size=len(items)))
        if self._emit is not None:
            for event in events:
                await self._emit(event)
        if not items:
            return await self._complete_batch(payload, graph, spec, node, token, b"[]",
                                              events)
        outcome = await self.store.scatter(run_id, spec, node.index, payload.iteration, token,
                                           [_encode(item) for item in items],
                                           self._stream(events))
        if not outcome.ok:
            return f"rejected:{outcome.reason}"
        await self.dispatch(run_id, spec, outcome.jobs)
        return "scattered"

    async def _run_item(self, payload: JobPayload, graph: Graph, spec: GraphSpec,
                        node: CompiledNode, token: str, raw_input: bytes) -> str | bytes:
        """One item of a batch, run by the batch's worker implementation. Returns the
        gathered outputs when this was the batch's last item."""
        run_id = payload.run_id
        worker = node.batch_worker
        assert worker is not None
        index = payload.item
        buffered = BufferedContext(self.store, run_id)
        item_id = f"{node.id}[{index}]"
        events: list[Event] = []
        emit = self._emit

        async def record(event: Event) -> None:
            events.append(event)
            if emit is not None:
                await emit(event)

        ctx = NodeContext(context=NodeScopedContext(buffered, run_id, item_id),
                          input=_decode(raw_input), params={**node.params, "index": index},
                          dependencies=self.dependencies, run_id=run_id, node_id=item_id,
                          blueprint_id=graph.id, iteration=payload.iteration)
        fallback = graph.by_id[node.config.fallback] if node.config.fallback else None
        try:
            result = await Executor(self.runtime.middleware, record).execute(worker, ctx,
                                                                            fallback)
        except FlowcraftError as exc:
            cause, attempt = failure_of(exc, ctx.attempt)
            await self._record_failure(payload, spec, node, token, cause, attempt,
                                       buffered.encoded_writes(), events)
            return "failed"
        try:
            ensure_encodable(output_key(node.id), result.output)
            item_output = _encode(result.output)
        except (ContextError, TypeError, ValueError, msgspec.EncodeError) as exc:
            await self._record_failure(payload, spec, node, token, ContextError(
                f"run {run_id!r}, node {item_id!r}: output {exc}"), ctx.attempt,
                buffered.encoded_writes(), events)
            return "failed"
        request = CommitRequest(
            node_index=node.index, iteration=payload.iteration, token=token, node_id=node.id,
            writes=buffered.encoded_writes(), events=self._stream(events),
            timestamp=_timestamp(), item=index, item_output=item_output,
            lease_ms=self.lease_ms)
        outcome = await self.store.commit(run_id, spec, request)
        if not outcome.ok:
            log.warning("run %s: commit of %s rejected (%s)", run_id, payload.job_id,
                        outcome.reason)
            return f"rejected:{outcome.reason}"
        return outcome.gathered if outcome.gathered is not None else "committed"

    async def _complete_batch(self, payload: JobPayload, graph: Graph, spec: GraphSpec,
                              node: CompiledNode, token: str, outputs_json: bytes,
                              events: list[Event] | None = None) -> str:
        """All items finished: the batch node completes with the list of their outputs."""
        run_id = payload.run_id
        events = list(events or ())
        outputs = _decode(outputs_json)
        buffered = BufferedContext(self.store, run_id)
        target = node.params.get("outputKey") or node.id
        if target != node.id:
            await buffered.set(target, outputs)
        finished: Event = BatchFinish(run_id=run_id, blueprint_id=graph.id, node_id=node.id,
                                      iteration=payload.iteration, size=len(outputs))
        if self._emit is not None:
            await self._emit(finished)
        events.append(finished)
        batch_payload = msgspec.structs.replace(payload, item=-1)
        return await self._complete_with(batch_payload, graph, spec, node, token, outputs,
                                         buffered, events)

    async def _complete_with(self, payload: JobPayload, graph: Graph, spec: GraphSpec,
                             node: CompiledNode, token: str, output: Any,
                             buffered: BufferedContext, events: list[Event]) -> str:
        """Complete a built-in node (batch, subflow) whose output is known: record it,
        route along its edges, commit."""
        output_json = _encode(output)
        events = list(events)
        record = self._recorder(events)
        await record(NodeFinish(run_id=payload.run_id, blueprint_id=graph.id, node_id=node.id,
                                iteration=payload.iteration, output=output, action=None))
        writes = buffered.encoded_writes()
        writes += [(output_key(node.id), output_json), (node.id, output_json)]
        buffered.writes[output_key(node.id)] = output
        buffered.writes[node.id] = output
        resolutions = await self._route(graph, node, buffered, NodeResult(output), output_json,
                                        payload.run_id, record)
        request = CommitRequest(
            node_index=node.index, iteration=payload.iteration, token=token, node_id=node.id,
            writes=writes, resolutions=resolutions, events=self._stream(events),
            timestamp=_timestamp())
        return await self._commit(payload, spec, node, request)

    async def _suspend(self, payload: JobPayload, spec: GraphSpec, node: CompiledNode,
                       token: str, buffered: BufferedContext, events: list[Event],
                       signal: Suspended) -> str:
        request = CommitRequest(
            node_index=node.index, iteration=payload.iteration, token=token, node_id=node.id,
            writes=buffered.encoded_writes(), events=self._stream(events),
            timestamp=_timestamp(), await_details=_encode(signal))
        return await self._commit(payload, spec, node, request)

    async def _loop_step(self, run_id: str, node: CompiledNode, buffered: BufferedContext,
                         ctx: NodeContext) -> NodeResult:
        """The loop controller's decision, as `FlowRuntime._loop_step` makes it: the count of
        iterations run so far is the number of `continue`s the store recorded for this loop
        entry, plus this one."""
        names = self._loop_names.get(id(node))
        if names is None:
            names = self._loop_names[id(node)] = tuple(
                compile_expression(node.params["condition"]).names)
        await buffered.prefetch(names)
        if not loop_continues(node, buffered.view(names), self.evaluator):
            return NodeResult(None, "break")
        done = await self.store.loop_count(run_id, node.index, ctx.iteration) + 1
        limit = int(node.params.get("maxIterations", 1000))
        if done >= limit:
            raise LoopLimitError(
                f"loop {node.id!r} of run {run_id!r} exceeded max_iterations={limit}: "
                f"{done} iterations ran and the condition still held")
        return NodeResult(None, "continue")

    def _recorder(self, events: list[Event]) -> Callable[[Event], Awaitable[None]]:
        """Collects events for the run's log and forwards them to the local bus."""
        emit = self._emit

        async def record(event: Event) -> None:
            events.append(event)
            if emit is not None:
                await emit(event)

        return record

    async def _route(self, graph: Graph, node: CompiledNode, buffered: BufferedContext,
                     result: NodeResult, output_json: bytes, run_id: str,
                     record: Callable[[Event], Awaitable[None]]) -> list[Resolution]:
        edges = node.out_edges
        if not edges:
            return []
        flags: list[bool] = []
        if not (node.is_controller and result.action == CONTINUE):
            names = [n for n in graph.condition_names[node.index] if n != "result"]
            if names:
                await buffered.prefetch(names)
            flags = decide_edges(node, result, buffered.view(names), self.evaluator)
        transform_scope: Mapping[str, Any] | None = None
        if node.is_controller:
            if result.action == CONTINUE:
                chosen = [(e, True, FRESH) for e in edges if e.kind == BACK]
            else:
                chosen = [(e, t, PARENT) for e, t in zip(edges, flags, strict=True)
                          if e.kind == EXIT]
        else:
            chosen = [(e, t, SAME) for e, t in zip(edges, flags, strict=True)]
        resolutions = []
        for edge, taken, mode in chosen:
            value = b""
            if taken:
                if edge.transform is None:
                    value = output_json
                else:
                    scope: Mapping[str, Any] = {}
                    if "context" in edge.transform.names:
                        # a transform sees the whole context only through the name `context`
                        if transform_scope is None:
                            transform_scope = await buffered.to_dict()
                        scope = transform_scope
                    value = _encode(edge_value(edge, result.output, scope, self.evaluator))
            resolutions.append(Resolution(edge.index, taken, value, mode))
            if self._edge_events:
                await record(EdgeEvaluate(run_id=run_id, blueprint_id=graph.id, source=node.id,
                                          target=edge.target.id, taken=taken,
                                          action=edge.action,
                                          condition=edge.condition_source))
        return resolutions

    async def _record_failure(self, payload: JobPayload, spec: GraphSpec, node: CompiledNode,
                              token: str, cause: BaseException, attempt: int,
                              writes: list[tuple[str, bytes | None]],
                              events: list[Event]) -> None:
        error = WorkflowError(node_id=node.id, message=str(cause) or type(cause).__name__,
                              type=type(cause).__name__, attempt=attempt, timestamp=utc_now())
        log.info("run %s: node %s failed: %s", payload.run_id, node.id, error.message)
        event = NodeErrorEvent(run_id=payload.run_id, blueprint_id=spec.blueprint_id,
                               node_id=node.id, iteration=payload.iteration, error=error)
        events.append(event)
        if self._emit is not None:
            await self._emit(event)
        pills = [(e.target.index, "cancel" if e.target.join_any else "poison")
                 for e in node.out_edges]
        request = FailRequest(node_index=node.index, iteration=payload.iteration, token=token,
                              error=_encode(error), writes=writes, pills=pills,
                              events=self._stream(events), timestamp=_timestamp(),
                              item=payload.item)
        outcome = await self.store.fail(payload.run_id, spec, request)
        if not outcome.ok:
            log.warning("run %s: failure of node %s rejected (%s)", payload.run_id, node.id,
                        outcome.reason)
        await self._ended(payload.run_id, outcome.finished, outcome.status)

    def _stream(self, events: list[Event]) -> list[bytes]:
        wanted = self.stream_events
        return [encode_event(e) for e in events if e.type in wanted]


__all__ = [
    "CRASH_AFTER_COMMIT_ENV",
    "DEFAULT_STREAM_EVENTS",
    "BaseDistributedAdapter",
    "VersionMismatch",
]
