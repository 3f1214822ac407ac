"""FlowRuntime: runs blueprints in memory, in this process.

The public API (run, resume, replay, cancel) lives here; one run's scheduling is `Run`
(`scheduler.py`), its bookkeeping a `Book`, and built-in constructs are `flowcraft.builtins`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import msgspec

from flowcraft.blueprint import WorkflowBlueprint, load_blueprint
from flowcraft.builder import Flow
from flowcraft.builtins.kinds import BUILTIN_KINDS, SLEEP, SUBFLOW, Suspended
from flowcraft.builtins.subflow import subflow_outcome
from flowcraft.context import ensure_encodable, output_key
from flowcraft.errors import BlueprintError, FlowcraftError, ResumeError
from flowcraft.events import Event, WorkflowFinish, WorkflowResume, WorkflowStart, as_emitter
from flowcraft.expressions import ExpressionEvaluator
from flowcraft.nodes import NodeResult
from flowcraft.result import WorkflowResult, utc_now
from flowcraft.runtime.executor import Executor
from flowcraft.runtime.graph import CompiledNode, Graph
from flowcraft.runtime.replay import ReplayPlan, replay_context
from flowcraft.runtime.scheduler import Instance, Run
from flowcraft.runtime.state import Awaiting, PausedState


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
        self._runs: dict[str, Run] = {}

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
        run = self.prepare(flow, context, run_id, durable_timers=durable_timers)
        return await self._drive(run, run.start_instances(), start=True)

    async def resume(self, flow: Flow | WorkflowBlueprint | str,
                     result: WorkflowResult | bytes | str | Mapping[str, Any],
                     node_id: str | None = None, output: Any = None,
                     action: str | None = None) -> WorkflowResult:
        """Complete an awaiting node with `output`/`action` and continue its branch."""
        previous = _as_result(result)
        graph = self.graph_for(flow)
        if previous.status != "awaiting":
            raise ResumeError(f"run {previous.run_id!r} is {previous.status}, not awaiting")
        paused = msgspec.convert(previous.state, PausedState, strict=False)
        awaiting = {a.node_id: a for a in paused.awaiting}
        node_id = _pick_awaiting(previous.run_id, awaiting, node_id)
        waiting = awaiting[node_id]
        node = graph.by_id.get(node_id)
        if node is None:
            raise ResumeError(f"run {previous.run_id!r}: node {node_id!r} is not in blueprint "
                              f"{graph.id!r}")
        if waiting.kind == SLEEP and waiting.wake_at is not None and waiting.wake_at > utc_now():
            raise ResumeError(f"run {previous.run_id!r}: sleep {node_id!r} is due at "
                              f"{waiting.wake_at.isoformat()}, not yet")
        ensure_encodable(output_key(node_id), output)
        run = Run(self, graph, previous.run_id, dict(previous.context), paused)
        await run.emit(WorkflowResume(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                      node_id=node_id))
        if waiting.kind == SUBFLOW:
            return await self._resume_subflow(run, node, waiting, output, action)
        del run.awaiting[node_id]
        ready = await run.complete(node, waiting.iteration, NodeResult(output, action))
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
        run = self.prepare(flow, context)
        run.replay = plan
        return await self._drive(run, run.start_instances(), start=True)

    def cancel(self, run_id: str) -> bool:
        """Cancel a live run: running nodes are cancelled, the result says `cancelled`."""
        run = self._runs.get(run_id)
        return run is not None and run.cancel()

    # -- runs -------------------------------------------------------------------------------

    def prepare(self, flow: Flow | WorkflowBlueprint | str,
                context: Mapping[str, Any] | None = None, run_id: str | None = None, *,
                durable_timers: bool = False) -> Run:
        """A new run of `flow`, not started yet (`Stepper` drives one step by step)."""
        graph = self.graph_for(flow)
        if not graph.start_nodes:
            raise BlueprintError(f"blueprint {graph.id!r} has no start node")
        data: dict[str, Any] = {}
        for key, value in (context or {}).items():
            ensure_encodable(key, value)
            data[key] = value
        return Run(self, graph, run_id or new_run_id(), data,
                   durable_timers=durable_timers)

    async def _drive(self, run: Run, ready: list[Instance], *,
                     start: bool = False) -> WorkflowResult:
        """Run `ready` and what follows to the end; `start`: announce a new run first."""
        if start and run.bus is not None:
            await run.bus(WorkflowStart(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                        context=dict(run.data)))
        if run.run_id in self._runs:
            raise FlowcraftError(f"run {run.run_id!r} is already running on this runtime")
        self._runs[run.run_id] = run
        try:
            await run.run_lanes(ready)
        except anyio.get_cancelled_exc_class():
            # Cancelled from outside (a cancel scope, wait_for): report it, then propagate.
            if run.bus is not None:
                with anyio.CancelScope(shield=True):
                    await run.bus(WorkflowFinish(run_id=run.run_id,
                                                 blueprint_id=run.blueprint_id,
                                                 status="cancelled", errors=list(run.errors)))
            raise
        finally:
            del self._runs[run.run_id]
        return run.outcome() if run.bus is None else await run.finish()

    async def _resume_subflow(self, run: Run, node: CompiledNode, waiting: Awaiting,
                              output: Any, action: str | None) -> WorkflowResult:
        assert waiting.child is not None
        child_previous = msgspec.convert(waiting.child, WorkflowResult, strict=False)
        child = await self.resume(node.params["blueprintId"], child_previous, None, output,
                                  action)
        ctx = run.node_context(node, waiting.iteration, None)
        del run.awaiting[node.id]
        try:
            result = await subflow_outcome(node, ctx, child)
        except FlowcraftError as exc:
            await run.fail(node, waiting.iteration, exc, 1)
            return await run.finish()
        if type(result.output) is Suspended:
            run.suspend(node, waiting.iteration, result.output)
            return await run.finish()
        return await self._drive(run, await run.complete(node, waiting.iteration, result))


def _pick_awaiting(run_id: str, awaiting: Mapping[str, Awaiting], node_id: str | None) -> str:
    if node_id is None:
        if len(awaiting) != 1:
            raise ResumeError(f"run {run_id!r}: node_id is required when "
                              f"{len(awaiting)} nodes await: {sorted(awaiting)}")
        return next(iter(awaiting))
    if node_id not in awaiting:
        raise ResumeError(f"run {run_id!r}: node {node_id!r} is not awaiting "
                          f"(awaiting: {sorted(awaiting)})")
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


_BUILTINS: dict[str, Any] = {kind: kind for kind in BUILTIN_KINDS}

_run_ids: list[str] = []


def new_run_id() -> str:
    """A fresh run id: the hex form of a random (version 4) UUID, like `uuid4().hex`, cut
    from random bytes drawn for 256 ids at once (one urandom call per run cost a tenth of a
    short run). A forked child draws its own."""
    if not _run_ids:
        raw = bytearray(os.urandom(16 * 256))
        raw[6::16] = raw[6::16].translate(_VERSION_4)  # what uuid.UUID(version=4) sets
        raw[8::16] = raw[8::16].translate(_VARIANT_RFC)
        text = raw.hex()
        _run_ids.extend(text[i:i + 32] for i in range(0, len(text), 32))
    return _run_ids.pop()


_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT_RFC = bytes((b & 0x3F) | 0x80 for b in range(256))


os.register_at_fork(after_in_child=_run_ids.clear)

__all__ = ["FlowRuntime"]
