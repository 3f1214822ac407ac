"""What every distributed process does with a run: know its blueprint, complete instances.

Completing an instance records its output, routes along its edges with the core's routing code,
commits, and hands the successors to the queue. A worker does it after running a node; the
control side (`control.py`) does it when a waiting node is resumed or a child run ends. None of
it needs node code, only blueprints.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from flowcraft.blueprint import WorkflowBlueprint, load_blueprint
from flowcraft.builder import Flow
from flowcraft.builtins.kinds import BUILTIN_KINDS, Suspended
from flowcraft.builtins.loop import CONTINUE
from flowcraft.builtins.subflow import subflow_outcome
from flowcraft.context import output_key
from flowcraft.distributed.context import BufferedContext
from flowcraft.distributed.jobtrace import outgoing_carrier
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
from flowcraft.errors import BlueprintError, FlowcraftError
from flowcraft.events import (
    EdgeEvaluate,
    Event,
    JobEnqueued,
    NodeErrorEvent,
    NodeFinish,
    WorkflowFinish,
    as_emitter,
    encode_event,
)
from flowcraft.expressions import ExpressionEvaluator
from flowcraft.nodes import NodeContext, NodeResult
from flowcraft.result import WorkflowError, WorkflowResult, utc_now
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


class Completer:
    """Knows the blueprints, completes instances and hands jobs to the queue.

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
        max_redrives: int = 5,
    ) -> None:
        if max_redrives < 1:
            raise FlowcraftError(f"max_redrives must be at least 1, not {max_redrives!r}")
        self.store = store
        self.max_redrives = max_redrives
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

    async def dispatch(self, run_id: str, spec: GraphSpec, refs: Sequence[JobRef],
                       queued: Sequence[JobRef] = ()) -> None:
        """Hand jobs the store decided on to the queue, then clear them from the outbox
        (`queued`: jobs the store enqueued itself, only announced)."""
        if not refs and not (queued and self._job_events):
            return
        payloads = [self.payload_for(run_id, spec, ref) for ref in refs]
        if refs:
            await self.queue.enqueue([QueuedJob(p, ref.defer_until_ms or None)
                                      for p, ref in zip(payloads, refs, strict=True)])
        events: list[Event] = []
        if self._job_events:
            record = self.recorder(events)
            for p in payloads + [self.payload_for(run_id, spec, ref) for ref in queued]:
                await record(JobEnqueued(run_id=run_id, blueprint_id=spec.blueprint_id,
                                         node_id=p.node_id, iteration=p.iteration,
                                         job_id=p.job_id))
        await self.store.ack(run_id, refs, self.stream(events))

    @staticmethod
    def payload_for(run_id: str, spec: GraphSpec, ref: JobRef) -> JobPayload:
        return JobPayload(run_id, spec.blueprint_id, spec.node_ids[ref.node_index],
                          ref.iteration, 1, ref.epoch, spec.version, ref.item,
                          outgoing_carrier(ref.defer_until_ms))

    # -- completing instances ---------------------------------------------------------------

    async def ended(self, run_id: str, outcome: CommitOutcome) -> None:
        """After a run ended or paused: tell the local bus (the store logged it already) and,
        if it is a child run, complete its subflow node."""
        if outcome.finished and self._emit is not None:
            result = await self.store.result(run_id)
            if result is not None:
                await self._emit(WorkflowFinish(run_id=run_id, blueprint_id=result.blueprint_id,
                                                status=result.status, errors=result.errors))
        if (outcome.finished or outcome.status == "awaiting") and outcome.child is not False:
            await self.notify_parent(run_id)

    async def notify_parent(self, child_id: str) -> None:
        """A child run ended or paused: complete (or fail, or pause) its subflow node.

        A cancelled child counts as ended at once, while its running nodes still stop. A
        parent still awaiting on a child that ended (a resume stopped between resuming the
        child and parking the parent) parks its node first."""
        ref = await self.store.parent_of(child_id)
        if ref is None:
            return
        child = await self.store.result(child_id)
        if child is None:
            if await self.store.status(child_id) != "cancelled":
                return
            child = WorkflowResult(run_id=child_id, status="cancelled")
        blueprint_id = await self.store.blueprint_of(ref.run_id)
        if blueprint_id is None:
            return
        graph = await self.known_graph(blueprint_id)
        spec = graph_spec(graph)
        node = graph.nodes[ref.node]
        token = uuid.uuid4().hex[:16]
        claim = await self.store.claim(ref, token, self.lease_ms, adopt=True)
        if not claim.ok and child.status != "awaiting" and (
                (await self.store.awaiting(ref.run_id)).get(ref.key) == node.id):
            await self.store.resume(ref, spec, CommitRequest(
                node_id=node.id, timestamp=timestamp(), park=True))
            claim = await self.store.claim(ref, token, self.lease_ms, adopt=True)
        if not claim.ok:
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
        await self.dispatch(ref.run_id, spec, outcome.jobs, outcome.queued)
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


__all__ = ["DEFAULT_STREAM_EVENTS", "Completer", "Flows", "timestamp"]
