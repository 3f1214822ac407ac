"""FlowRuntime: runs blueprints in memory with dataflow scheduling.

A run is a state machine over node *instances* `(node, iteration)`. A node starts the moment its
join condition holds; a finished node routes along its edges, and the lane that ran it goes on
with one newly ready successor itself (no task hop on a chain) and spawns tasks for the rest.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from datetime import timedelta
from typing import Any

import anyio
import msgspec

from flowcraft.blueprint import WorkflowBlueprint, load_blueprint
from flowcraft.builder import Flow
from flowcraft.builtins.kinds import BATCH, SLEEP, SUBFLOW, WAIT, Suspended, parse_duration
from flowcraft.context import MemoryContext, NodeScopedContext, ensure_encodable, output_key
from flowcraft.errors import (
    BlueprintError,
    ContextError,
    FlowcraftError,
    NodeExecutionError,
    ResumeError,
)
from flowcraft.events import (
    BatchFinish,
    BatchStart,
    ContextChange,
    EdgeEvaluate,
    Emit,
    Event,
    NodeErrorEvent,
    NodeFinish,
    NodeSkipped,
    NodeStart,
    WorkflowFinish,
    WorkflowPause,
    WorkflowResume,
    WorkflowStart,
    as_emitter,
)
from flowcraft.nodes import NodeContext, NodeResult
from flowcraft.result import RunStatus, WorkflowError, WorkflowResult, utc_now
from flowcraft.runtime.executor import Executor, failure_of
from flowcraft.runtime.graph import BACK, EXIT, CompiledEdge, CompiledNode, Graph
from flowcraft.runtime.replay import ReplayPlan, replay_context
from flowcraft.runtime.routing import (
    ExpressionEvaluator,
    decide_edges,
    edge_value,
    loop_continues,
    resolve_inputs,
)
from flowcraft.runtime.state import Awaiting, Join, RunState

log = logging.getLogger("flowcraft.runtime")

Instance = tuple[CompiledNode, int, Any]
"""A ready node instance: (node, iteration, input)."""


class Lanes:
    """A run's concurrent lanes: asyncio tasks (spawning one is several times cheaper than an
    anyio task) inside one anyio cancel scope, which `cancel` and outer scopes act on."""

    __slots__ = ("_group", "_scope")

    def __init__(self, group: asyncio.TaskGroup, scope: anyio.CancelScope) -> None:
        self._group = group
        self._scope = scope

    def spawn(self, lane: Coroutine[Any, Any, None]) -> None:
        self._group.create_task(lane)

    def cancel(self) -> None:
        self._scope.cancel()


class _Run:
    """The mutable state of one in-memory run."""

    def __init__(self, runtime: FlowRuntime, graph: Graph, run_id: str, data: dict[str, Any],
                 state: RunState | None = None, durable_timers: bool = False) -> None:
        self.graph = graph
        self.run_id = run_id
        self.blueprint_id = graph.id
        self.context = MemoryContext(data)
        self.data = data
        self.emit: Emit | None = runtime._emit
        self.state = state or RunState()
        self.durable_timers = durable_timers
        self.errors: list[WorkflowError] = []
        self.failed = False
        self.cancelled = False
        self.skips: list[tuple[CompiledNode, int]] = []
        self.pills: dict[str, str] = {}
        self.limiter = (anyio.CapacityLimiter(runtime.concurrency)
                        if runtime.concurrency else None)
        self.lanes: Lanes | None = None
        self.step_mode = False
        self.pending: list[Instance] = []
        self.replay: ReplayPlan | None = None

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
            self.register(item, key)
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

    def register(self, flow: Flow | WorkflowBlueprint, blueprint_id: str | None = None) -> None:
        """Make a flow or blueprint available to subflows (and by id to `run`)."""
        if isinstance(flow, Flow):
            self.registry.update(flow.registry)
            flow = flow.to_blueprint()
        self.blueprints[blueprint_id or flow.id] = flow

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
        graph = Graph(blueprint, {**self.registry, **registry}, _BUILTINS)
        self._graphs[blueprint.id] = (blueprint, registry, graph)
        return graph

    async def run(self, flow: Flow | WorkflowBlueprint | str,
                  context: Mapping[str, Any] | None = None, run_id: str | None = None, *,
                  durable_timers: bool = False) -> WorkflowResult:
        """Run to the end (or until every live branch awaits) and return the result."""
        return await self._start(self._new_run(flow, context, run_id, durable_timers))

    async def resume(self, flow: Flow | WorkflowBlueprint | str,
                     result: WorkflowResult | bytes | str | Mapping[str, Any],
                     node_id: str | None = None, output: Any = None,
                     action: str | None = None) -> WorkflowResult:
        """Complete an awaiting node with `output`/`action` and continue its branch."""
        previous = _as_result(result)
        graph = self.graph_for(flow)
        if previous.status != "awaiting":
            raise ResumeError(f"run {previous.run_id!r} is {previous.status}, not awaiting")
        state = RunState.from_dict(previous.state)
        node_id = _pick_awaiting(previous.run_id, state, node_id)
        waiting = state.awaiting[node_id]
        node = graph.by_id.get(node_id)
        if node is None:
            raise ResumeError(f"run {previous.run_id!r}: node {node_id!r} is not in blueprint "
                              f"{graph.id!r}")
        if waiting.kind == SLEEP and waiting.wake_at is not None and waiting.wake_at > utc_now():
            raise ResumeError(f"run {previous.run_id!r}: sleep {node_id!r} is due at "
                              f"{waiting.wake_at.isoformat()}, not yet")
        ensure_encodable(output_key(node_id), output)
        run = _Run(self, graph, previous.run_id, dict(previous.context), state)
        run.durable_timers = bool(previous.state.get("durable_timers", False))
        if run.emit is not None:
            await run.emit(WorkflowResume(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                          node_id=node_id))
        if waiting.kind == SUBFLOW:
            return await self._resume_subflow(run, node, waiting, output, action)
        del state.awaiting[node_id]
        ready = await self._complete(run, node, waiting.iteration, NodeResult(output, action))
        return await self._drive(run, ready)

    def replay(self, flow: Flow | WorkflowBlueprint | str,
               events: Sequence[Event]) -> WorkflowResult:
        """Rebuild a recorded run's final result from its events, running no node."""
        graph = self.graph_for(flow)
        return replay_context(graph.id, events)

    async def replay_from(self, flow: Flow | WorkflowBlueprint | str, events: Sequence[Event],
                          node_id: str, overrides: Mapping[str, Any] | None = None,
                          ) -> WorkflowResult:
        """Re-run `node_id` and its descendants; every other node reuses its recorded output.

        `overrides` are context values set before the re-run (e.g. a corrected input).
        """
        graph = self.graph_for(flow)
        if node_id not in graph.by_id:
            raise BlueprintError(f"node {node_id!r} is not in blueprint {graph.id!r}")
        plan = ReplayPlan.from_events(graph, events, node_id)
        context = {**plan.initial_context, **(overrides or {})}
        run = self._new_run(flow, context, None, False)
        run.replay = plan
        return await self._start(run)

    def cancel(self, run_id: str) -> bool:
        """Cancel a live run: running nodes are cancelled, the result says `cancelled`."""
        run = self._runs.get(run_id)
        if run is None or run.lanes is None:
            return False
        run.cancelled = True
        run.lanes.cancel()
        return True

    # -- scheduling -------------------------------------------------------------------------

    def _new_run(self, flow: Flow | WorkflowBlueprint | str, context: Mapping[str, Any] | None,
                 run_id: str | None, durable_timers: bool) -> _Run:
        graph = self.graph_for(flow)
        if not graph.start_nodes:
            raise BlueprintError(f"blueprint {graph.id!r} has no start node")
        data: dict[str, Any] = {}
        for key, value in (context or {}).items():
            ensure_encodable(key, value)
            data[key] = value
        return _Run(self, graph, run_id or uuid.uuid4().hex, data,
                    durable_timers=durable_timers)

    async def _start(self, run: _Run) -> WorkflowResult:
        if run.emit is not None:
            await run.emit(WorkflowStart(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                         context=dict(run.data)))
        return await self._drive(run, self._start_instances(run))

    @staticmethod
    def _start_instances(run: _Run) -> list[Instance]:
        return [(node, 0, None) for node in run.graph.start_nodes]

    async def _drive(self, run: _Run, ready: list[Instance]) -> WorkflowResult:
        if run.run_id in self._runs:
            raise FlowcraftError(f"run {run.run_id!r} is already running on this runtime")
        self._runs[run.run_id] = run
        try:
            await self.run_lanes(run, ready)
        except anyio.get_cancelled_exc_class():
            # Cancelled from outside (a cancel scope, wait_for): report it, then propagate.
            if run.emit is not None:
                with anyio.CancelScope(shield=True):
                    await run.emit(WorkflowFinish(run_id=run.run_id,
                                                  blueprint_id=run.blueprint_id,
                                                  status="cancelled", errors=list(run.errors)))
            raise
        finally:
            del self._runs[run.run_id]
        return await self._finish(run)

    async def run_lanes(self, run: _Run, ready: list[Instance]) -> None:
        """Run `ready` and everything they lead to (or, in step mode, just `ready`)."""
        with anyio.CancelScope() as scope:
            try:
                async with asyncio.TaskGroup() as group:
                    run.lanes = Lanes(group, scope)
                    for instance in ready[1:]:
                        group.create_task(self._lane(run, instance))
                    if ready:
                        await self._lane(run, ready[0])
            finally:
                run.lanes = None

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
            if run.step_mode:
                run.pending.extend(ready)
                return
            lanes = run.lanes
            assert lanes is not None
            for extra in ready[1:]:
                lanes.spawn(self._lane(run, extra))
            current = ready[0]

    def _node_context(self, run: _Run, node: CompiledNode, iteration: int,
                      node_input: Any) -> NodeContext:
        return NodeContext(
            context=self._scoped(run, node.id, iteration),
            input=node_input, params=node.params, dependencies=self.dependencies,
            run_id=run.run_id, node_id=node.id, blueprint_id=run.blueprint_id,
            iteration=iteration)

    async def _execute(self, run: _Run, node: CompiledNode, iteration: int,
                       given_input: Any) -> list[Instance]:
        """Run one instance, record its output, route; return the instances it made ready."""
        node_input = (resolve_inputs(node.inputs, run.data, run.graph.by_id)
                      if node.inputs is not None else given_input)
        ctx = self._node_context(run, node, iteration, node_input)
        if run.emit is not None:
            await run.emit(NodeStart(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                     node_id=node.id, iteration=iteration, input=node_input))
        try:
            recorded = run.replay.recall(node.id, iteration) if run.replay is not None else None
            if recorded is not None:
                result = await recorded.apply(ctx)
            elif node.kind is None:
                fallback = run.graph.by_id[node.config.fallback] if node.config.fallback \
                    else None
                result = await self._executor.execute(node, ctx, fallback)
            else:
                result = await self._builtin(run, node, ctx)
        except FlowcraftError as exc:
            await self._fail(run, node, iteration, *failure_of(exc, ctx.attempt))
            return []
        if type(result.output) is Suspended:
            await self._suspend(run, node, iteration, result.output)
            return []
        return await self._complete(run, node, iteration, result)

    async def _complete(self, run: _Run, node: CompiledNode, iteration: int,
                        result: NodeResult) -> list[Instance]:
        """Record a finished instance's output and route along its edges."""
        output = result.output
        key = output_key(node.id)
        try:
            ensure_encodable(key, output)
        except ContextError as exc:
            await self._fail(run, node, iteration, ContextError(
                f"run {run.run_id!r}, node {node.id!r}: output {exc}"), 1)
            return []
        run.data[key] = output
        run.data[node.id] = output
        if run.emit is not None:
            await run.emit(NodeFinish(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                      node_id=node.id, iteration=iteration, output=output,
                                      action=result.action))
        if run.stopping or not node.out_edges:
            return []
        if node.is_controller:
            return await self._route_controller(run, node, iteration, result)
        return await self._route(run, node, iteration, result)

    @staticmethod
    def _scoped(run: _Run, node_id: str, iteration: int) -> NodeScopedContext:
        emit = run.emit
        if emit is None:
            return NodeScopedContext(run.context, run.run_id, node_id)

        async def changed(key: str, op: str, value: Any) -> None:
            await emit(ContextChange(run_id=run.run_id, blueprint_id=run.blueprint_id, key=key,
                                     op=op, node_id=node_id, iteration=iteration, value=value))

        return NodeScopedContext(run.context, run.run_id, node_id, changed)

    # -- routing and joins ------------------------------------------------------------------

    async def _route(self, run: _Run, node: CompiledNode, iteration: int,
                     result: NodeResult) -> list[Instance]:
        flags = decide_edges(node, result, run.data, self.evaluator)
        ready: list[Instance] = []
        for edge, taken in zip(node.out_edges, flags, strict=True):
            await self._take(run, edge, iteration, taken, result.output, ready)
        await self._flush_skips(run, ready)
        return ready

    async def _route_controller(self, run: _Run, node: CompiledNode, iteration: int,
                                result: NodeResult) -> list[Instance]:
        """A loop controller resolves only its BACK edges (continue) or its EXIT edges (break),
        so the loop's exit waits for the last iteration and the body re-enters fresh."""
        ready: list[Instance] = []
        if result.action == "continue":
            fresh = run.state.fresh_iteration(iteration)
            for edge in node.out_edges:
                if edge.kind == BACK:
                    await self._take(run, edge, fresh, True, result.output, ready)
        else:
            flags = decide_edges(node, result, run.data, self.evaluator)
            entry = run.state.entry_of(iteration)
            for edge, taken in zip(node.out_edges, flags, strict=True):
                if edge.kind == EXIT:
                    await self._take(run, edge, entry, taken, result.output, ready)
        await self._flush_skips(run, ready)
        return ready

    async def _take(self, run: _Run, edge: CompiledEdge, iteration: int, taken: bool,
                    output: Any, ready: list[Instance]) -> None:
        if run.emit is not None:
            await run.emit(EdgeEvaluate(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                        source=edge.source.id, target=edge.target.id,
                                        taken=taken, action=edge.action,
                                        condition=edge.condition_source))
        value = edge_value(edge, output, run.data, self.evaluator) if taken else None
        self._resolve(run, edge, iteration, taken, value, ready)

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
        joins = run.state.joins
        key = (target.index, iteration)
        join = joins.get(key)
        if join is None:
            join = joins[key] = Join()
        join.resolved += 1
        if taken:
            join.taken[edge.index] = (edge.source.id, value)
            if target.join_any and not join.fired:
                join.fired = True
                ready.append((target, iteration, {edge.source.id: value}))
        if join.resolved < len(required):
            return
        del joins[key]
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
                if node.is_controller:
                    if edge.kind == EXIT:
                        self._resolve(run, edge, run.state.entry_of(iteration), False, None,
                                      ready)
                else:
                    self._resolve(run, edge, iteration, False, None, ready)

    # -- built-in kinds ---------------------------------------------------------------------

    async def _builtin(self, run: _Run, node: CompiledNode, ctx: NodeContext) -> NodeResult:
        kind = node.kind
        if node.is_controller:
            return self._loop_step(run, node, ctx)
        if kind == WAIT:
            return NodeResult(Suspended(kind=WAIT))
        if kind == SLEEP:
            ms = parse_duration(node.params["duration"])
            if run.durable_timers:
                return NodeResult(Suspended(kind=SLEEP,
                                            wake_at=utc_now() + timedelta(milliseconds=ms)))
            await anyio.sleep(ms / 1000.0)
            return NodeResult(ctx.input)
        if kind == BATCH:
            return await self._batch(run, node, ctx)
        if kind == SUBFLOW:
            return await self._subflow(run, node, ctx)
        raise BlueprintError(f"node {node.id!r}: unknown built-in kind {kind!r}")

    def _loop_step(self, run: _Run, node: CompiledNode, ctx: NodeContext) -> NodeResult:
        entry = run.state.entry_of(ctx.iteration)
        counts = run.state.loop_counts
        done = counts.get((node.index, entry), 0) + 1
        counts[(node.index, entry)] = done
        if not loop_continues(node, run.data, self.evaluator):
            del counts[(node.index, entry)]
            return NodeResult(ctx.input, "break")
        limit = int(node.params.get("maxIterations", 1000))
        if done >= limit:
            raise LoopLimitError(
                f"loop {node.id!r} of run {run.run_id!r} exceeded max_iterations={limit}: "
                f"{done} iterations ran and the condition still held")
        return NodeResult(ctx.input, "continue")

    async def _batch(self, run: _Run, node: CompiledNode, ctx: NodeContext) -> NodeResult:
        params = node.params
        items = run.data.get(params["inputKey"])
        if not isinstance(items, list):
            raise ContextError(
                f"batch {node.id!r}: context key {params['inputKey']!r} holds "
                f"{type(items).__name__}, expected a list")
        worker = node.batch_worker
        assert worker is not None
        fallback = run.graph.by_id[node.config.fallback] if node.config.fallback else None
        outputs: list[Any] = [None] * len(items)
        limiter = anyio.CapacityLimiter(params.get("concurrency") or max(len(items), 1))
        emit = run.emit
        if emit is not None:
            await emit(BatchStart(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                  node_id=node.id, iteration=ctx.iteration, size=len(items)))

        failures: list[NodeExecutionError] = []

        async def one(index: int, item: Any) -> None:
            async with limiter:
                item_ctx = NodeContext(
                    context=ctx.context, input=item, params={**node.params, "index": index},
                    dependencies=self.dependencies, run_id=run.run_id,
                    node_id=f"{node.id}[{index}]", blueprint_id=run.blueprint_id,
                    iteration=ctx.iteration)
                try:
                    result = await self._executor.execute(worker, item_ctx, fallback)
                except NodeExecutionError as failure:
                    # The first failing item fails the batch; the others are cancelled.
                    failures.append(failure)
                    tg.cancel_scope.cancel()
                    return
                outputs[index] = result.output

        async with anyio.create_task_group() as tg:
            for index, item in enumerate(items):
                tg.start_soon(one, index, item)
        if failures:
            raise failures[0]
        output_key_name = params.get("outputKey") or node.id
        if output_key_name != node.id:
            await ctx.context.set(output_key_name, outputs)
        if emit is not None:
            await emit(BatchFinish(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                   node_id=node.id, iteration=ctx.iteration, size=len(items)))
        return NodeResult(outputs)

    async def _subflow(self, run: _Run, node: CompiledNode, ctx: NodeContext) -> NodeResult:
        params = node.params
        child_id = params["blueprintId"]
        child_context = {child_key: run.data.get(parent_key)
                         for child_key, parent_key in params.get("inputs", {}).items()}
        child = await self.run(child_id, context=child_context,
                               run_id=f"{run.run_id}/{node.id}#{ctx.iteration}",
                               durable_timers=run.durable_timers)
        return await self._subflow_outcome(run, node, ctx, child)

    async def _subflow_outcome(self, run: _Run, node: CompiledNode, ctx: NodeContext,
                               child: WorkflowResult) -> NodeResult:
        if child.status == "awaiting":
            return NodeResult(Suspended(kind=SUBFLOW, child=msgspec.to_builtins(child)))
        if child.status != "completed":
            detail = "; ".join(f"{e.node_id}: {e.type}: {e.message}" for e in child.errors)
            raise SubflowError(f"subflow {node.id!r} (blueprint {node.params['blueprintId']!r}) "
                               f"ended {child.status}: {detail or 'no error recorded'}")
        for parent_key, child_key in node.params.get("outputs", {}).items():
            await ctx.context.set(parent_key, child.context.get(child_key))
        return NodeResult({k: v for k, v in child.context.items() if not k.startswith("_")})

    async def _resume_subflow(self, run: _Run, node: CompiledNode, waiting: Awaiting,
                              output: Any, action: str | None) -> WorkflowResult:
        assert waiting.child is not None
        child_previous = msgspec.convert(waiting.child, WorkflowResult, strict=False)
        child = await self.resume(node.params["blueprintId"], child_previous, None, output,
                                  action)
        ctx = self._node_context(run, node, waiting.iteration, None)
        del run.state.awaiting[node.id]
        try:
            result = await self._subflow_outcome(run, node, ctx, child)
        except FlowcraftError as exc:
            await self._fail(run, node, waiting.iteration, exc, 1)
            return await self._finish(run)
        if type(result.output) is Suspended:
            await self._suspend(run, node, waiting.iteration, result.output)
            return await self._finish(run)
        return await self._drive(run, await self._complete(run, node, waiting.iteration,
                                                           result))

    @staticmethod
    async def _suspend(run: _Run, node: CompiledNode, iteration: int,
                       signal: Suspended) -> None:
        run.state.awaiting[node.id] = Awaiting(node_id=node.id, iteration=iteration,
                                               kind=signal.kind, wake_at=signal.wake_at,
                                               child=signal.child)

    # -- failure and the end of a run -------------------------------------------------------

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
        state = run.state
        if run.cancelled:
            status = "cancelled"
        elif run.failed:
            status = "failed"
        elif state.awaiting:
            status = "awaiting"
        elif any(not j.fired for j in state.joins.values()):
            status = "stalled"
        else:
            status = "completed"
        result = WorkflowResult(
            run_id=run.run_id, status=status, context=_plain(run.data), errors=list(run.errors),
            awaiting=list(state.awaiting) if status == "awaiting" else [],
            blueprint_id=run.blueprint_id)
        if status == "awaiting":
            result.state = {**state.to_dict(), "durable_timers": run.durable_timers}
            result.wake_at = {a.node_id: a.wake_at for a in state.awaiting.values()
                              if a.wake_at is not None}
        if run.emit is not None:
            if status == "awaiting":
                await run.emit(WorkflowPause(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                             awaiting=list(result.awaiting)))
            else:
                await run.emit(WorkflowFinish(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                              status=status, errors=list(run.errors)))
        return result


class LoopLimitError(FlowcraftError):
    """A loop ran `max_iterations` times and its condition still held."""


class SubflowError(FlowcraftError):
    """A subflow ended failed, cancelled or stalled; the message carries the child's errors."""


def _pick_awaiting(run_id: str, state: RunState, node_id: str | None) -> str:
    if node_id is None:
        if len(state.awaiting) != 1:
            raise ResumeError(f"run {run_id!r}: node_id is required when "
                              f"{len(state.awaiting)} nodes await: {sorted(state.awaiting)}")
        return next(iter(state.awaiting))
    if node_id not in state.awaiting:
        raise ResumeError(f"run {run_id!r}: node {node_id!r} is not awaiting "
                          f"(awaiting: {sorted(state.awaiting)})")
    return node_id


def _as_result(result: WorkflowResult | bytes | str | Mapping[str, Any]) -> WorkflowResult:
    if isinstance(result, WorkflowResult):
        return result
    try:
        if isinstance(result, bytes | str):
            return WorkflowResult.from_json(result)
        return msgspec.convert(result, WorkflowResult, strict=False)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ResumeError(f"not a serialised WorkflowResult: {exc}") from None


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """The context as JSON-shaped data: what a distributed run would return too."""
    plain: dict[str, Any] = msgspec.to_builtins(data)
    return plain


_BUILTINS: dict[str, Any] = {kind: kind for kind in (BATCH, SLEEP, SUBFLOW, WAIT,
                                                       "loop-controller")}

__all__ = ["FlowRuntime", "LoopLimitError", "SubflowError"]
