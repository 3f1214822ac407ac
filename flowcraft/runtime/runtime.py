"""FlowRuntime: runs blueprints in memory with dataflow scheduling.

A run is a state machine over node *instances* `(node, iteration)`. A node starts the moment its
join condition holds; a finished node routes along its edges, and the lane that ran it goes on
with one newly ready successor itself (no task hop on a chain) and spawns tasks for the rest.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup

from flowcraft.blueprint import WorkflowBlueprint, load_blueprint
from flowcraft.builder import Flow
from flowcraft.context import MemoryContext, TrackedContext, ensure_encodable, output_key
from flowcraft.errors import BlueprintError, ContextError, FlowcraftError, NodeExecutionError
from flowcraft.events import (
    ContextChange,
    EdgeEvaluate,
    Emit,
    NodeErrorEvent,
    NodeFinish,
    NodeSkipped,
    NodeStart,
    WorkflowFinish,
    WorkflowStart,
    as_emitter,
)
from flowcraft.nodes import NodeContext, NodeResult
from flowcraft.result import RunStatus, WorkflowError, WorkflowResult, utc_now
from flowcraft.runtime.executor import Executor
from flowcraft.runtime.graph import BACK, EXIT, CompiledEdge, CompiledNode, Graph
from flowcraft.runtime.routing import ExpressionEvaluator, decide_edges, edge_value, resolve_inputs

log = logging.getLogger("flowcraft.runtime")

Instance = tuple[CompiledNode, int, Any]
"""A ready node instance: (node, iteration, input)."""


class _Join:
    """Edge resolutions collected for one instance of a node with several incoming edges."""

    __slots__ = ("fired", "resolved", "taken")

    def __init__(self) -> None:
        self.resolved = 0
        self.taken: dict[int, tuple[str, Any]] = {}
        self.fired = False


class _Run:
    """The mutable state of one in-memory run."""

    def __init__(self, runtime: FlowRuntime, graph: Graph, run_id: str,
                 data: dict[str, Any], emit: Emit | None) -> None:
        self.runtime = runtime
        self.graph = graph
        self.run_id = run_id
        self.blueprint_id = graph.id
        self.context = MemoryContext(data)
        self.data = data
        self.emit = emit
        self.errors: list[WorkflowError] = []
        self.failed = False
        self.cancelled = False
        self.joins: dict[tuple[int, int], _Join] = {}
        self.skips: list[tuple[CompiledNode, int]] = []
        self.pills: dict[str, str] = {}
        self.parent: dict[int, int] = {}
        self.next_iteration = 0
        self.limiter = (anyio.CapacityLimiter(runtime.concurrency)
                        if runtime.concurrency else None)
        self.task_group: TaskGroup | None = None

    @property
    def stopping(self) -> bool:
        return self.failed or self.cancelled


class FlowRuntime:
    """Runs flows and blueprints in this process.

    `registry` maps `uses` keys to implementations (a Flow brings its own), `blueprints` are
    the blueprints subflows may name, `dependencies` reach nodes as `ctx.dependencies`.
    `concurrency` bounds how many nodes of one run execute at once (None: unbounded).
    """

    def __init__(
        self,
        registry: Mapping[str, Any] | None = None,
        blueprints: Mapping[str, WorkflowBlueprint | Flow] | None = None,
        dependencies: Mapping[str, Any] | None = None,
        middleware: Sequence[Any] = (),
        event_bus: Any = None,
        evaluator: ExpressionEvaluator | None = None,
        concurrency: int | None = None,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ValueError("concurrency must be >= 1 or None")
        self.registry: dict[str, Any] = dict(registry or {})
        self.blueprints: dict[str, WorkflowBlueprint] = {}
        for key, item in (blueprints or {}).items():
            if isinstance(item, Flow):
                self.registry.update(item.registry)
                item = item.to_blueprint()
            self.blueprints[key] = item
        self.dependencies: Mapping[str, Any] = dependencies or {}
        self.middleware = list(middleware)
        self.event_bus = event_bus
        self.evaluator = evaluator
        self.concurrency = concurrency
        self._emit = as_emitter(event_bus)
        self._executor = Executor(self.middleware, self._emit)
        self._graphs: dict[str, tuple[WorkflowBlueprint, Mapping[str, Any], Graph]] = {}
        self._runs: dict[str, _Run] = {}

    # -- public API -------------------------------------------------------------------------

    def graph_for(self, target: Flow | WorkflowBlueprint | str) -> Graph:
        """The compiled graph of a flow, a blueprint, or a registered blueprint id (cached)."""
        if isinstance(target, Flow):
            blueprint, registry = target.to_blueprint(), target.registry
        elif isinstance(target, WorkflowBlueprint):
            blueprint, registry = target, self.registry
        elif isinstance(target, str):
            if target not in self.blueprints:
                raise BlueprintError(f"no blueprint registered under id {target!r}")
            blueprint, registry = self.blueprints[target], self.registry
        else:
            raise TypeError(f"expected a Flow, a WorkflowBlueprint or a blueprint id, "
                            f"got {type(target).__name__}")
        cached = self._graphs.get(blueprint.id)
        if cached is not None and cached[0] is blueprint and cached[1] is registry:
            return cached[2]
        if not isinstance(target, Flow):
            load_blueprint(blueprint)
        graph = Graph(blueprint, {**self.registry, **registry})
        self._graphs[blueprint.id] = (blueprint, registry, graph)
        return graph

    async def run(self, flow: Flow | WorkflowBlueprint | str,
                  context: Mapping[str, Any] | None = None,
                  run_id: str | None = None) -> WorkflowResult:
        """Run to the end (or until every live branch awaits) and return the result."""
        graph = self.graph_for(flow)
        data: dict[str, Any] = {}
        for key, value in (context or {}).items():
            ensure_encodable(key, value)
            data[key] = value
        run = _Run(self, graph, run_id or uuid.uuid4().hex, data, self._emit)
        if not graph.start_nodes:
            raise BlueprintError(f"blueprint {graph.id!r} has no start node")
        if run.emit is not None:
            await run.emit(WorkflowStart(run_id=run.run_id, blueprint_id=graph.id,
                                         context=dict(data)))
        ready = [(node, 0, None) for node in graph.start_nodes]
        return await self._drive(run, ready)

    def cancel(self, run_id: str) -> bool:
        """Cancel a live run: running nodes are cancelled, the result says `cancelled`."""
        run = self._runs.get(run_id)
        if run is None or run.task_group is None:
            return False
        run.cancelled = True
        run.task_group.cancel_scope.cancel()
        return True

    # -- scheduling -------------------------------------------------------------------------

    async def _drive(self, run: _Run, ready: list[Instance]) -> WorkflowResult:
        self._runs[run.run_id] = run
        try:
            async with anyio.create_task_group() as tg:
                run.task_group = tg
                for instance in ready[1:]:
                    tg.start_soon(self._lane, run, instance)
                if ready:
                    await self._lane(run, ready[0])
        finally:
            run.task_group = None
            del self._runs[run.run_id]
        return await self._finish(run)

    async def _lane(self, run: _Run, instance: Instance) -> None:
        limiter = run.limiter
        if limiter is not None:
            async with limiter:
                await self._lane_steps(run, instance)
        else:
            await self._lane_steps(run, instance)

    async def _lane_steps(self, run: _Run, instance: Instance) -> None:
        current: Instance | None = instance
        while current is not None and not run.stopping:
            ready = await self._execute(run, *current)
            if not ready:
                return
            tg = run.task_group
            assert tg is not None
            for extra in ready[1:]:
                tg.start_soon(self._lane, run, extra)
            current = ready[0]

    async def _execute(self, run: _Run, node: CompiledNode, iteration: int,
                       given_input: Any) -> list[Instance]:
        """Run one instance, record its output, route; return the instances it made ready."""
        graph = run.graph
        data = run.data
        emit = run.emit
        node_input = (resolve_inputs(node.inputs, data, graph.by_id)
                      if node.inputs is not None else given_input)
        ctx = NodeContext(
            context=run.context if emit is None else self._tracked(run, node.id),
            input=node_input, params=node.params, dependencies=self.dependencies,
            run_id=run.run_id, node_id=node.id, blueprint_id=run.blueprint_id,
            iteration=iteration, services=run)
        if emit is not None:
            await emit(NodeStart(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                 node_id=node.id, iteration=iteration, input=node_input))
        fallback = graph.by_id[node.config.fallback] if node.config.fallback else None
        try:
            result = await self._executor.execute(node, ctx, fallback)
            output = result.output
            ensure_encodable(output_key(node.id), output)
        except NodeExecutionError as failure:
            await self._fail(run, node, iteration, failure.cause or failure, failure.attempt)
            return []
        except ContextError as exc:
            await self._fail(run, node, iteration, exc, ctx.attempt)
            return []
        data[output_key(node.id)] = output
        data[node.id] = output
        if emit is not None:
            await emit(NodeFinish(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                  node_id=node.id, iteration=iteration, output=output,
                                  action=result.action))
        if run.stopping:
            return []
        return await self._route(run, node, iteration, result)

    def _tracked(self, run: _Run, node_id: str) -> TrackedContext:
        emit = run.emit
        assert emit is not None

        async def changed(key: str, op: str, value: Any) -> None:
            await emit(ContextChange(run_id=run.run_id, blueprint_id=run.blueprint_id, key=key,
                                     op=op, node_id=node_id, value=value))

        return TrackedContext(run.context, changed)

    async def _route(self, run: _Run, node: CompiledNode, iteration: int,
                     result: NodeResult) -> list[Instance]:
        edges = node.out_edges
        if not edges:
            return []
        flags = decide_edges(node, result, run.data, self.evaluator)
        if node.is_controller:
            return self._route_controller(run, node, iteration, flags, result.output)
        ready: list[Instance] = []
        emit = run.emit
        for edge, taken in zip(edges, flags, strict=True):
            if emit is not None:
                await emit(EdgeEvaluate(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                        source=node.id, target=edge.target.id, taken=taken,
                                        action=edge.action, condition=edge.condition_source))
            value = edge_value(edge, result.output, run.data, self.evaluator) if taken else None
            self._resolve(run, edge, iteration, taken, value, ready)
        await self._flush_skips(run, ready)
        return ready

    def _route_controller(self, run: _Run, node: CompiledNode, iteration: int,
                          flags: list[bool], output: Any) -> list[Instance]:
        raise NotImplementedError("loops arrive with the loop built-in")

    def _resolve(self, run: _Run, edge: CompiledEdge, iteration: int, taken: bool, value: Any,
                 ready: list[Instance]) -> None:
        """Record one edge resolution at its target instance; collect what becomes ready.

        Targets that turn out skipped go to `run.skips` for `_flush_skips`.
        """
        target = edge.target
        if target.is_fallback_only:
            return
        required = target.back_in if edge.kind == BACK else target.forward_in
        if len(required) == 1:
            if taken:
                ready.append((target, iteration, value))
            else:
                run.skips.append((target, iteration))
            return
        key = (target.index, iteration)
        join = run.joins.get(key)
        if join is None:
            join = run.joins[key] = _Join()
        join.resolved += 1
        if taken:
            join.taken[edge.index] = (edge.source.id, value)
            if target.join_any and not join.fired:
                join.fired = True
                ready.append((target, iteration, {edge.source.id: value}))
        if join.resolved < len(required):
            return
        del run.joins[key]
        if target.join_any:
            if not join.fired:
                run.skips.append((target, iteration))
        elif join.taken:
            inputs = {src: val for _, (src, val) in sorted(join.taken.items())}
            ready.append((target, iteration, inputs))
        else:
            run.skips.append((target, iteration))

    async def _flush_skips(self, run: _Run, ready: list[Instance]) -> None:
        """Dead-path elimination: a skipped node resolves all its outgoing edges as skipped."""
        skips = run.skips
        while skips:
            node, iteration = skips.pop()
            if run.emit is not None:
                await run.emit(NodeSkipped(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                           node_id=node.id, iteration=iteration))
            for edge in node.out_edges:
                if node.is_controller and edge.kind != EXIT:
                    continue
                target_iteration = (run.parent.get(iteration, iteration)
                                    if edge.kind == EXIT else iteration)
                self._resolve(run, edge, target_iteration, False, None, ready)

    async def _fail(self, run: _Run, node: CompiledNode, iteration: int, cause: BaseException,
                    attempt: int) -> None:
        """Fail-fast: the run is failed for good; successors get poison (all) / cancel (any)."""
        error = WorkflowError(node_id=node.id, message=str(cause) or type(cause).__name__,
                              type=type(cause).__name__, attempt=attempt, timestamp=utc_now())
        log.info("run %s: node %s failed: %s", run.run_id, node.id, error.message)
        run.errors.append(error)
        run.failed = True
        for edge in node.out_edges:
            run.pills[f"{edge.target.id}#{iteration}"] = "cancel" if edge.target.join_any \
                else "poison"
        if run.emit is not None:
            await run.emit(NodeErrorEvent(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                          node_id=node.id, iteration=iteration, error=error))

    async def _finish(self, run: _Run) -> WorkflowResult:
        status: RunStatus
        if run.cancelled:
            status = "cancelled"
        elif run.failed:
            status = "failed"
        elif any(not j.fired for j in run.joins.values()):
            status = "stalled"
        else:
            status = "completed"
        result = WorkflowResult(
            run_id=run.run_id, status=status, context=_plain(run.data), errors=list(run.errors),
            blueprint_id=run.blueprint_id)
        if run.emit is not None:
            await run.emit(WorkflowFinish(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                          status=status, errors=list(run.errors)))
        return result


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """The context as JSON-shaped data: what a distributed run would return too."""
    try:
        plain: dict[str, Any] = msgspec.to_builtins(data)
    except (TypeError, msgspec.EncodeError) as exc:  # pragma: no cover - values are checked
        raise FlowcraftError(f"context is not encodable: {exc}") from None
    return plain


__all__ = ["FlowRuntime"]
