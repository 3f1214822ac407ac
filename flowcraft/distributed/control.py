"""The control side of distributed execution: start, resume, cancel, reconcile, complete.

Everything here needs blueprints only, never node code: a client that starts runs by name
uses it directly, and the worker side (`worker.py`) builds on it. Completing an instance
(recording its output, routing along its edges with the core's routing code, committing)
lives here too, because resume and the end of a child run complete instances without running
any node.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from flowcraft.blueprint import WorkflowBlueprint, load_blueprint
from flowcraft.builder import Flow
from flowcraft.builtins.kinds import BUILTIN_KINDS, SUBFLOW, Suspended
from flowcraft.builtins.loop import CONTINUE
from flowcraft.builtins.subflow import child_run_id, subflow_outcome
from flowcraft.context import ensure_encodable, output_key
from flowcraft.distributed.context import BufferedContext
from flowcraft.distributed.jobtrace import CURRENT_JOB, outgoing_carrier, start_carrier
from flowcraft.distributed.protocols import (
    CommitOutcome,
    CommitRequest,
    CoordinationStore,
    FailRequest,
    InstanceRef,
    JobPayload,
    JobQueue,
    JobRef,
    QueuedJob,
    Resolution,
)
from flowcraft.errors import BlueprintError, FlowcraftError, ResumeError, RunNotFoundError
from flowcraft.events import (
    EdgeEvaluate,
    Event,
    JobEnqueued,
    NodeErrorEvent,
    NodeFinish,
    WorkflowResume,
    WorkflowStart,
    as_emitter,
    encode_event,
)
from flowcraft.expressions import ExpressionEvaluator
from flowcraft.nodes import NodeContext, NodeResult
from flowcraft.result import WorkflowError, utc_now
from flowcraft.runtime.book import BACK, EXIT
from flowcraft.runtime.executor import RecoveredResult
from flowcraft.runtime.graph import CompiledNode, Graph
from flowcraft.runtime.routing import decide_edges, edge_value
from flowcraft.runtime.spec import GraphSpec, graph_spec

log = logging.getLogger("flowcraft.distributed")

_encode = msgspec.json.encode
_decode = msgspec.json.decode

DEFAULT_STREAM_EVENTS: frozenset[str] = frozenset({
    "workflow:start", "workflow:finish", "workflow:pause", "workflow:resume", "node:start",
    "node:finish", "node:error", "node:retry", "node:fallback", "node:skipped", "batch:start",
    "batch:finish", "context:change",
})
"""Event types recorded in the run's event log (`client.events`)."""

Flows = Iterable[Flow | WorkflowBlueprint]
Record = Callable[[Event], Awaitable[None]]

_BUILTINS: dict[str, Any] = {kind: kind for kind in BUILTIN_KINDS}


def timestamp() -> str:
    return utc_now().isoformat()


class Control:
    """Starts, resumes, cancels and reconciles runs, and completes instances.

    `flows` are the flows or blueprints it knows; with `registry` (or a Flow's own) their node
    code too, which only the worker side needs. `stream_events` selects the event types
    recorded in each run's event log; `event_bus` additionally receives them locally.
    """

    executes_code = False

    def __init__(
        self,
        store: CoordinationStore,
        queue: JobQueue,
        flows: Flows = (),
        *,
        registry: Mapping[str, Any] | None = None,
        middleware: Sequence[Any] = (),
        event_bus: Any = None,
        evaluator: ExpressionEvaluator | None = None,
        lease_ms: int = 30_000,
        stream_events: Iterable[str] = DEFAULT_STREAM_EVENTS,
    ) -> None:
        self.store = store
        self.queue = queue
        self.registry: dict[str, Any] = dict(registry or {})
        self.middleware = list(middleware)
        self.evaluator = evaluator
        self.lease_ms = lease_ms
        self.stream_events = frozenset(stream_events)
        self._emit = as_emitter(event_bus)
        self._skip_events = "node:skipped" in self.stream_events
        self._edge_events = "edge:evaluate" in self.stream_events or self._emit is not None
        self._job_events = self._emit is not None or any(
            t.startswith("job:") for t in self.stream_events)
        self._graphs: dict[str, Graph] = {}
        for flow in flows:
            self.register(flow)

    # -- blueprints -------------------------------------------------------------------------

    def register(self, flow: Flow | WorkflowBlueprint) -> Graph:
        """Make a flow or blueprint known (and, on a worker, executable)."""
        if isinstance(flow, Flow):
            self.registry.update(flow.registry)
            blueprint = flow.to_blueprint()
        else:
            blueprint = load_blueprint(flow)
        graph = Graph(blueprint, {**_BUILTINS, **self.registry}, code=self.executes_code)
        self._graphs[graph.id] = graph
        return graph

    def graph(self, blueprint_id: str) -> Graph:
        graph = self._graphs.get(blueprint_id)
        if graph is None:
            raise BlueprintError(f"no flow with blueprint id {blueprint_id!r} is registered "
                                 f"here (known: {sorted(self._graphs)})")
        return graph

    async def known_graph(self, blueprint_id: str, version: str | None = None) -> Graph:
        """The graph of `blueprint_id` (at `version`, when given), looked up with
        `find_blueprint` when this process was not given it."""
        graph = self._graphs.get(blueprint_id)
        if graph is None or (version is not None and graph.blueprint.version != version):
            return self.register(await self.find_blueprint(blueprint_id, version))
        return graph

    async def find_blueprint(self, blueprint_id: str,
                             version: str | None) -> WorkflowBlueprint:
        """Where blueprints this process was not given come from (by default: nowhere)."""
        self.graph(blueprint_id)  # raises BlueprintError naming what is known
        raise BlueprintError(f"blueprint {blueprint_id!r} version {version!r} is not "
                             "registered here")

    @property
    def blueprints(self) -> list[WorkflowBlueprint]:
        """The blueprints known here, as they were given."""
        return [graph.source for graph in self._graphs.values()]

    @property
    def blueprint_ids(self) -> list[str]:
        return list(self._graphs)

    # -- starting and driving runs ----------------------------------------------------------

    async def start_run(self, flow: Flow | WorkflowBlueprint | str,
                        context: Mapping[str, Any] | None = None,
                        run_id: str | None = None,
                        parent: tuple[str, int, int] | None = None, *,
                        version: str | None = None) -> str:
        """Create the run (idempotent on `run_id`) and put its start jobs in the queue.

        A flow named by id runs at `version` (None: the one known here, or found).
        `parent` = (run id, node index, iteration) of the subflow node a child run belongs to.
        """
        if isinstance(flow, str):
            graph = await self.known_graph(flow, version)
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
        events = self.stream([WorkflowStart(run_id=run_id, blueprint_id=graph.id,
                                            context={k: _decode(v) for k, v in data.items()})])
        outcome = await self.store.start_run(run_id, spec, data, meta, events)
        if not outcome.created:
            existing = await self.store.blueprint_of(run_id)
            if existing != graph.id:
                raise FlowcraftError(f"run {run_id!r} already exists for blueprint "
                                     f"{existing!r}, not {graph.id!r}")
        # tracing hook: middleware with `start_run` give the start jobs their trace context
        started = start_carrier(self.middleware, run_id, graph.id)
        token = CURRENT_JOB.set(started) if started is not None else None
        try:
            await self.dispatch(run_id, spec, outcome.jobs)
        finally:
            if token is not None:
                CURRENT_JOB.reset(token)
        return run_id

    async def dispatch(self, run_id: str, spec: GraphSpec, refs: Sequence[JobRef]) -> None:
        """Hand jobs the store decided on to the queue, then clear them from the outbox."""
        if not refs:
            return
        jobs = [QueuedJob(self.payload_for(run_id, spec, ref), ref.defer_until_ms or None)
                for ref in refs]
        await self.queue.enqueue(jobs)
        events: list[Event] = []
        if self._job_events:
            record = self.recorder(events)
            for job in jobs:
                p = job.payload
                await record(JobEnqueued(run_id=run_id, blueprint_id=spec.blueprint_id,
                                         node_id=p.node_id, iteration=p.iteration,
                                         job_id=p.job_id))
        await self.store.ack(run_id, refs, self.stream(events))

    @staticmethod
    def payload_for(run_id: str, spec: GraphSpec, ref: JobRef) -> JobPayload:
        return JobPayload(run_id, spec.blueprint_id, spec.node_ids[ref.node_index],
                          ref.iteration, 1, ref.epoch, spec.version, ref.item,
                          outgoing_carrier(ref.defer_until_ms))

    async def resume(self, run_id: str, node_id: str | None = None, output: Any = None,
                     action: str | None = None) -> None:
        """Complete an awaiting node with `output`/`action` and continue its branch, as
        `FlowRuntime.resume` does; raises ResumeError when the node is not awaiting."""
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
        graph = await self.known_graph(blueprint_id)
        spec = graph_spec(graph)
        node = graph.nodes[node_index]
        ref = InstanceRef(run_id, node_index, iteration)
        resumed = WorkflowResume(run_id=run_id, blueprint_id=graph.id, node_id=node.id)
        if node.kind == SUBFLOW:
            # resuming a subflow node resumes its child run (whose single awaiting node gets
            # the output); the child's end completes the node
            parked = await self.store.resume(ref, spec, CommitRequest(
                node_id=node.id, events=self.stream([resumed]), timestamp=timestamp(),
                park=True))
            if not parked.ok:
                raise ResumeError(f"run {run_id!r}: cannot resume node {node.id!r} "
                                  f"({parked.reason})")
            await self.resume(child_run_id(run_id, node.id, iteration), None, output, action)
            return
        ensure_encodable(output_key(node.id), output)
        events: list[Event] = []
        await self.recorder(events)(resumed)
        request = await self.completion(ref, graph, node, "", NodeResult(output, action),
                                        BufferedContext(self.store, run_id), events)
        outcome = await self.store.resume(ref, spec, request)
        if not outcome.ok:
            raise ResumeError(f"run {run_id!r}: cannot resume node {node.id!r} "
                              f"({outcome.reason})")
        await self.dispatch(run_id, spec, outcome.jobs)
        await self.ended(run_id, outcome)

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run: nothing new starts, running nodes are cancelled at their next lease
        renewal. Returns False when the run was not running or awaiting."""
        outcome = await self.store.cancel(run_id, timestamp())
        if outcome.reason == "unknown":
            raise RunNotFoundError(f"no run {run_id!r}")
        if outcome.ok:
            await self.ended(run_id, outcome)
        return outcome.ok

    async def reconcile(self, stalled_after: float = 60.0) -> dict[str, int]:
        """Re-drive runs without progress for `stalled_after` seconds: undelivered jobs,
        instances whose job was lost, subflow nodes whose child already ended."""
        counts = {"scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}
        for run_id in await self.store.stalled_runs(int(stalled_after * 1000)):
            counts["scanned"] += 1
            counts["stalled"] += 1
            try:
                outcome = await self.store.reconcile_run(run_id, timestamp(),
                                                         int(stalled_after * 1000))
                if outcome.jobs:
                    graph = await self.known_graph(outcome.blueprint_id)
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
        graph = await self.known_graph(blueprint_id)
        done = False
        for ref in parked:
            child_id = child_run_id(run_id, graph.nodes[ref.node].id, ref.iteration)
            if await self.store.result(child_id) is not None:
                await self.notify_parent(child_id)
                done = True
        return done

    # -- completing instances ---------------------------------------------------------------

    async def ended(self, run_id: str, outcome: CommitOutcome) -> None:
        """After a run ended or paused: if it is a child run, complete its subflow node."""
        if outcome.finished or outcome.status == "awaiting":
            await self.notify_parent(run_id)

    async def notify_parent(self, child_id: str) -> None:
        """A child run ended or paused: complete (or fail, or pause) its subflow node."""
        ref = await self.store.parent_of(child_id)
        if ref is None:
            return
        child = await self.store.result(child_id)
        if child is None:
            return
        blueprint_id = await self.store.blueprint_of(ref.run_id)
        if blueprint_id is None:
            return
        graph = await self.known_graph(blueprint_id)
        spec = graph_spec(graph)
        node = graph.nodes[ref.node]
        token = uuid.uuid4().hex[:16]
        if not (await self.store.claim(ref, token, self.lease_ms, adopt=True)).ok:
            return
        buffered = BufferedContext(self.store, ref.run_id)
        ctx = NodeContext(context=buffered, input=None, params=node.params, dependencies={},
                          run_id=ref.run_id, node_id=node.id, blueprint_id=graph.id,
                          iteration=ref.iteration)
        try:
            result = await subflow_outcome(node, ctx, child)
        except FlowcraftError as exc:
            await self.record_failure(ref, spec, node, token, exc, 1, [], [])
            return
        events: list[Event] = []
        if type(result.output) is Suspended:
            await self.commit(ref, spec, node, CommitRequest(
                token=token, node_id=node.id, writes=buffered.encoded_writes(),
                timestamp=timestamp(), await_details=_encode(result.output)))
            return
        request = await self.completion(ref, graph, node, token, result, buffered, events)
        await self.commit(ref, spec, node, request)

    async def completion(self, ref: InstanceRef, graph: Graph, node: CompiledNode, token: str,
                         result: NodeResult, buffered: BufferedContext, events: list[Event],
                         defer_ms: int = 0) -> CommitRequest:
        """The commit of a finished instance: its writes, its output (under the fallback's id
        when a fallback node stood in), and the routing decisions of its edges."""
        record = self.recorder(events)
        output_json = _encode(result.output)
        await record(NodeFinish(run_id=ref.run_id, blueprint_id=graph.id, node_id=node.id,
                                iteration=ref.iteration, output=result.output,
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
        resolutions = await self.route(graph, node, buffered, result, output_json, ref.run_id,
                                       record)
        return CommitRequest(
            token=token, node_id=node.id, writes=writes, resolutions=resolutions,
            events=self.stream(events), timestamp=timestamp(), defer_ms=defer_ms,
            skip_events=self._skip_events and bool(resolutions))

    async def route(self, graph: Graph, node: CompiledNode, buffered: BufferedContext,
                    result: NodeResult, output_json: bytes, run_id: str,
                    record: Record) -> list[Resolution]:
        """The decisions on `node`'s edges, made by the core's routing code."""
        edges = node.out_edges
        if not edges:
            return []
        if node.is_controller and result.action == CONTINUE:
            chosen = [(e, True) for e in edges if e.kind == BACK]
        else:
            conditions = await self.condition_scope(graph, node, buffered)
            chosen = list(zip(edges, decide_edges(node, result, conditions, self.evaluator),
                              strict=True))
            if node.is_controller:
                chosen = [(e, taken) for e, taken in chosen if e.kind == EXIT]
        transform_scope: Mapping[str, Any] | None = None
        resolutions = []
        for edge, taken in chosen:
            value = b""
            if taken:
                if edge.transform is None:
                    value = output_json
                else:
                    scope: Mapping[str, Any] = {}
                    if "context" in edge.transform.names or self.evaluator is not None:
                        # a transform sees the context only through the name `context`
                        if transform_scope is None:
                            transform_scope = await buffered.to_dict()
                        scope = transform_scope
                    value = _encode(edge_value(edge, result.output, scope, self.evaluator))
            resolutions.append(Resolution(edge.index, taken, value))
            if self._edge_events:
                await record(EdgeEvaluate(run_id=run_id, blueprint_id=graph.id, source=node.id,
                                          target=edge.target.id, taken=taken,
                                          action=edge.action,
                                          condition=edge.condition_source))
        return resolutions

    async def condition_scope(self, graph: Graph, node: CompiledNode,
                              buffered: BufferedContext) -> Mapping[str, Any]:
        """What conditions see: the names they mention, or everything for a custom
        evaluator (as in memory, it may look at any key)."""
        if self.evaluator is not None:
            return await buffered.to_dict()
        names = [n for n in graph.condition_names[node.index] if n != "result"]
        if names:
            await buffered.prefetch(names)
        return buffered.view(names)

    async def commit(self, ref: InstanceRef, spec: GraphSpec, node: CompiledNode,
                     request: CommitRequest) -> CommitOutcome:
        outcome = await self.store.commit(ref, spec, request)
        if not outcome.ok:
            log.warning("run %s: commit of node %s#%d rejected (%s)", ref.run_id, node.id,
                        ref.iteration, outcome.reason)
            await self.dispatch(ref.run_id, spec, outcome.jobs)
            return outcome
        self.after_commit(node)
        await self.dispatch(ref.run_id, spec, outcome.jobs)
        await self.ended(ref.run_id, outcome)
        return outcome

    def after_commit(self, node: CompiledNode) -> None:
        """Called between a commit and the dispatch of its successors (a test hook)."""

    async def record_failure(self, ref: InstanceRef, spec: GraphSpec, node: CompiledNode,
                             token: str, cause: BaseException, attempt: int,
                             writes: list[tuple[str, bytes | None]],
                             events: list[Event]) -> CommitOutcome:
        """The node failed for good: the run fails, its successors get pills."""
        error = WorkflowError(node_id=node.id, message=str(cause) or type(cause).__name__,
                              type=type(cause).__name__, attempt=attempt, timestamp=utc_now())
        log.info("run %s: node %s failed: %s", ref.run_id, node.id, error.message)
        await self.recorder(events)(NodeErrorEvent(
            run_id=ref.run_id, blueprint_id=spec.blueprint_id, node_id=node.id,
            iteration=ref.iteration, error=error))
        pills = [(e.target.index, "cancel" if e.target.join_any else "poison")
                 for e in node.out_edges]
        request = FailRequest(token=token, error=_encode(error), writes=writes, pills=pills,
                              events=self.stream(events), timestamp=timestamp())
        outcome = await self.store.fail(ref, spec, request)
        if not outcome.ok:
            log.warning("run %s: failure of node %s rejected (%s)", ref.run_id, node.id,
                        outcome.reason)
        await self.ended(ref.run_id, outcome)
        return outcome

    def recorder(self, events: list[Event]) -> Record:
        """Collects events for the run's log and forwards them to the local bus."""
        emit = self._emit

        async def record(event: Event) -> None:
            events.append(event)
            if emit is not None:
                await emit(event)

        return record

    def stream(self, events: Iterable[Event]) -> list[bytes]:
        wanted = self.stream_events
        return [encode_event(e) for e in events if e.type in wanted]


__all__ = ["DEFAULT_STREAM_EVENTS", "Control", "Flows", "timestamp"]
