"""One in-memory run: dataflow scheduling over its `Book`, and the `Host` its constructs see.

A node starts the moment its join condition holds; a finished node routes along its edges, and
the lane that ran it goes on with one newly ready successor itself (no task hop on a chain). The
other successors wait in the lane and run there too unless it suspends first; then they become
tasks (`lanes.py`), so nodes that wait still run concurrently.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Collection, Coroutine, Mapping
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from flowcraft.builtins import run_builtin
from flowcraft.builtins.batch import concurrency_of, item_context
from flowcraft.builtins.kinds import SLEEP, Suspended
from flowcraft.builtins.loop import CONTINUE
from flowcraft.context import MemoryContext, NodeScopedContext, ensure_encodable, output_key
from flowcraft.errors import ContextError, FlowcraftError, NodeExecutionError
from flowcraft.events import (
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
)
from flowcraft.expressions import ExpressionEvaluator
from flowcraft.nodes import NodeContext, NodeResult
from flowcraft.result import RunStatus, WorkflowError, WorkflowResult, utc_now
from flowcraft.runtime.book import BACK, EXIT, Book
from flowcraft.runtime.eager import UntilSuspended
from flowcraft.runtime.executor import RecoveredResult, failure_of
from flowcraft.runtime.graph import CompiledEdge, CompiledNode, Graph
from flowcraft.runtime.lanes import Lanes
from flowcraft.runtime.plan import plan_of
from flowcraft.runtime.routing import decide_edges, edge_value, resolve_inputs
from flowcraft.runtime.state import Awaiting, PausedState

if TYPE_CHECKING:
    from flowcraft.runtime.replay import ReplayPlan
    from flowcraft.runtime.runtime import FlowRuntime

log = logging.getLogger("flowcraft.runtime")

Instance = tuple[CompiledNode, int, Any]
"""A ready node instance: (node, iteration, input)."""

Waiting = deque[tuple[Instance, contextvars.Context]]
"""Instances waiting in a lane, each with the context variables of when it became ready."""


def _waiting(instances: list[Instance]) -> Waiting:
    context = contextvars.copy_context()
    return deque([(instance, context) for instance in instances])


class Run:
    """The mutable state of one in-memory run, and the host of its built-in constructs."""

    def __init__(self, runtime: FlowRuntime, graph: Graph, run_id: str, data: dict[str, Any],
                 paused: PausedState | None = None, durable_timers: bool = False) -> None:
        self.runtime = runtime
        self.graph = graph
        self.run_id = run_id
        self.blueprint_id = graph.id
        self.context = MemoryContext(data)
        self.data = data
        self.bus: Emit | None = runtime._emit
        self.plan = plan = plan_of(graph)
        self.book: Book[Any] = Book(plan.spec, dict)
        self._call = runtime._executor.call
        self._fallbacks = plan.fallbacks
        self.awaiting: dict[str, Awaiting] = {}
        if paused is not None:
            self.book.load(paused.book)
            self.awaiting = {a.node_id: a for a in paused.awaiting}
            durable_timers = paused.durable_timers
        self.durable_timers = durable_timers
        self.errors: list[WorkflowError] = []
        self.failed = False
        self.cancelled = False
        self.limiter = (anyio.CapacityLimiter(runtime.concurrency)
                        if runtime.concurrency else None)
        self.lanes: Lanes | None = None
        self.step_mode = False
        self.pending: list[Instance] = []
        self.replay: ReplayPlan | None = None

    @property
    def stopping(self) -> bool:
        return self.failed or self.cancelled

    # -- Host -------------------------------------------------------------------------------

    @property
    def evaluator(self) -> ExpressionEvaluator | None:
        return self.runtime.evaluator

    async def scope(self, names: Collection[str]) -> Mapping[str, Any]:
        return self.data

    async def loop_count(self, node: CompiledNode, iteration: int) -> int:
        return self.book.loop_count(node.index, iteration)

    async def delay(self, node: CompiledNode, ctx: NodeContext, ms: float) -> NodeResult:
        if self.durable_timers:
            return NodeResult(Suspended(kind=SLEEP,
                                        wake_at=utc_now() + timedelta(milliseconds=ms)))
        await anyio.sleep(ms / 1000.0)
        return NodeResult(ctx.input)

    async def fan_out(self, node: CompiledNode, ctx: NodeContext,
                      items: list[Any]) -> list[Any] | None:
        worker = node.batch_worker
        assert worker is not None
        fallback = self.graph.by_id[node.config.fallback] if node.config.fallback else None
        executor = self.runtime._executor
        outputs: list[Any] = [None] * len(items)
        limiter = anyio.CapacityLimiter(concurrency_of(node, len(items)))
        failures: list[NodeExecutionError] = []

        async def one(index: int, item: Any) -> None:
            async with limiter:
                item_ctx = item_context(node, ctx.context, index, item, run_id=self.run_id,
                                        blueprint_id=self.blueprint_id,
                                        iteration=ctx.iteration,
                                        dependencies=self.runtime.dependencies)
                try:
                    result = await executor.execute(worker, item_ctx, fallback)
                except NodeExecutionError as failure:
                    # The first failing item fails the batch; the others are cancelled.
                    failures.append(failure)
                    group.cancel_scope.cancel()
                    return
                outputs[index] = result.output

        async with anyio.create_task_group() as group:
            for index, item in enumerate(items):
                group.start_soon(one, index, item)
        if failures:
            raise failures[0]
        return outputs

    async def run_child(self, node: CompiledNode, ctx: NodeContext, blueprint_id: str,
                        context: dict[str, Any], run_id: str) -> WorkflowResult:
        return await self.runtime.run(blueprint_id, context=context, run_id=run_id,
                                      durable_timers=self.durable_timers)

    async def emit(self, event: Event) -> None:
        if self.bus is not None:
            await self.bus(event)

    # -- lanes ------------------------------------------------------------------------------

    def start_instances(self) -> list[Instance]:
        nodes = self.graph.nodes
        return [(nodes[f.node], f.iteration, f.input) for f in self.book.start(None)]

    async def run_lanes(self, ready: list[Instance]) -> None:
        """Run `ready` and everything they lead to (or, in step mode, just `ready`)."""
        host = asyncio.current_task()
        assert host is not None
        outer = host.cancelling()
        lanes = self.lanes = Lanes(host)
        try:
            try:
                if ready:
                    await self._lane(ready[0], ready[1:])
            except BaseException as exc:
                await lanes.leave(exc)
                raise
            else:
                if lanes.group is not None:
                    await lanes.leave(None)
            if lanes.requested:
                # Our cancellation never arrived as an exception: the run cancelled itself
                # from the host lane and did not wait again (it arrives here), or a node
                # swallowed it (this returns at once). Either way it is ours to take back.
                await asyncio.sleep(0)
                host.uncancel()
        except asyncio.CancelledError:
            if not lanes.requested or host.uncancel() > outer:
                raise
        finally:
            self.lanes = None

    def cancel(self) -> bool:
        if self.lanes is None:
            return False
        self.cancelled = True
        self.lanes.cancel()
        return True

    def _lane(self, instance: Instance,
              waiting: list[Instance] | None = None) -> Coroutine[Any, Any, None]:
        """A lane starting at `instance`, with `waiting` instances to run after it (see
        `_lane_steps`). With a concurrency limit each of them is a lane of its own at once."""
        if self.limiter is None:
            return self._lane_steps(instance, _waiting(waiting) if waiting else None)
        for other in waiting or ():
            self._spawn_lane(other, None)
        return self._limited_lane(instance)

    async def _limited_lane(self, instance: Instance) -> None:
        assert self.limiter is not None
        async with self.limiter:
            await self._lane_steps(instance, None)

    def _spawn_lane(self, instance: Instance, context: contextvars.Context | None) -> None:
        """A lane of its own for `instance`, a task that starts from `context` (a copy)."""
        lanes = self.lanes
        assert lanes is not None
        lanes.spawn(self._lane(instance), None if context is None else context.copy())

    def _spawn_waiting(self, waiting: Waiting) -> None:
        while waiting:
            self._spawn_lane(*waiting.popleft())

    async def _lane_steps(self, instance: Instance, waiting: Waiting | None) -> None:
        """Run `instance`, then the first instance it made ready, and so on.

        The other newly ready instances wait in `waiting`, in order, and run here once the
        chain ends, unless the lane suspends first (a node awaits something not yet done):
        then every waiting instance becomes a lane of its own, a task started from the
        context variables as they were when it became ready, exactly as if it had been
        spawned then, and they run concurrently. Nodes that never suspend thus cost no task
        and no event loop turn (see `eager.py`); the waiting instances this lane runs itself
        see its context variables, as a lane's own chain always did. Under a concurrency
        limit nothing waits here: every extra instance gets its lane at once.
        """
        current: Instance | None = instance
        while True:
            while current is not None and not (self.failed or self.cancelled):
                if waiting:
                    ready = await UntilSuspended(self._execute(*current),
                                                 partial(self._spawn_waiting, waiting))
                else:
                    ready = await self._execute(*current)
                if not ready:
                    break
                if self.step_mode:
                    self.pending.extend(ready)
                    break
                if len(ready) > 1:
                    if self.limiter is not None:
                        for other in ready[1:]:
                            self._spawn_lane(other, None)
                    elif waiting is None:
                        waiting = _waiting(ready[1:])
                    else:
                        waiting.extend(_waiting(ready[1:]))
                current = ready[0]
            if not waiting or self.failed or self.cancelled:
                return
            current = waiting.popleft()[0]

    # -- one instance -----------------------------------------------------------------------

    def node_context(self, node: CompiledNode, iteration: int, node_input: Any) -> NodeContext:
        return NodeContext(
            context=self._scoped(node.id, iteration), input=node_input, params=node.params,
            dependencies=self.runtime.dependencies, run_id=self.run_id, node_id=node.id,
            blueprint_id=self.blueprint_id, iteration=iteration)

    def _scoped(self, node_id: str, iteration: int) -> NodeScopedContext:
        bus = self.bus
        if bus is None:
            return NodeScopedContext(self.context, self.run_id, node_id)

        async def changed(key: str, op: str, value: Any) -> None:
            await bus(ContextChange(run_id=self.run_id, blueprint_id=self.blueprint_id,
                                    key=key, op=op, node_id=node_id, iteration=iteration,
                                    value=value))

        return NodeScopedContext(self.context, self.run_id, node_id, changed)

    async def _execute(self, node: CompiledNode, iteration: int,
                       given_input: Any) -> list[Instance]:
        """Run one instance, record its output, route; return the instances it made ready."""
        node_input = (resolve_inputs(node.inputs, self.data, self.graph.by_id)
                      if node.inputs is not None else given_input)
        bus = self.bus
        if bus is None:
            ctx = NodeContext(
                context=NodeScopedContext(self.context, self.run_id, node.id), input=node_input,
                params=node.params, dependencies=self.runtime.dependencies, run_id=self.run_id,
                node_id=node.id, blueprint_id=self.blueprint_id, iteration=iteration)
        else:
            ctx = self.node_context(node, iteration, node_input)
            await bus(NodeStart(run_id=self.run_id, blueprint_id=self.blueprint_id,
                                node_id=node.id, iteration=iteration, input=node_input))
        try:
            recorded = self.replay.recall(node.id, iteration) if self.replay else None
            if recorded is not None:
                result = await recorded.apply(ctx)
            elif node.kind is None:
                result = await self._call(node, ctx, self._fallbacks[node.index])
            else:
                result = await run_builtin(node, ctx, self)
        except FlowcraftError as exc:
            await self.fail(node, iteration, *failure_of(exc, ctx.attempt))
            return []
        if type(result.output) is Suspended:
            self.suspend(node, iteration, result.output)
            return []
        if bus is None:
            return self._complete_quietly(node, iteration, result)
        return await self.complete(node, iteration, result)

    async def complete(self, node: CompiledNode, iteration: int,
                       result: NodeResult) -> list[Instance]:
        """Record a finished instance's output and route along its edges."""
        bus = self.bus
        if bus is None:
            return self._complete_quietly(node, iteration, result)
        try:
            self._record(node, result)
        except ContextError as exc:
            await self.fail(node, iteration, exc, 1)
            return []
        await bus(NodeFinish(run_id=self.run_id, blueprint_id=self.blueprint_id,
                             node_id=node.id, iteration=iteration, output=result.output,
                             action=result.action))
        if self.failed or self.cancelled or not node.out_edges:
            return []
        return await self._route(node, iteration, result)

    def _complete_quietly(self, node: CompiledNode, iteration: int,
                          result: NodeResult) -> list[Instance]:
        """`complete` when no event bus is attached: nothing to await, so no coroutine."""
        try:
            self._record(node, result)
        except ContextError as exc:
            self._failed(node, exc, 1)
            return []
        if self.failed or self.cancelled or not node.out_edges:
            return []
        edges = self.plan.plain_edges[node.index]
        output = result.output
        if edges is not None:  # every edge taken, carrying the output as it is
            decisions = ([(edges[0], True, output)] if len(edges) == 1
                         else [(e, True, output) for e in edges])
        else:
            evaluator = self.runtime.evaluator
            decisions = [(edge.index, taken,
                          edge_value(edge, output, self.data, evaluator) if taken else None)
                         for edge, taken in self._chosen(node, result)]
        fired = self.book.route(node.index, iteration, decisions).fired
        nodes = self.graph.nodes
        if len(fired) == 1:  # the common case, without a comprehension
            node_index, fired_iteration, value = fired[0]
            return [(nodes[node_index], fired_iteration, value)]
        return [(nodes[f.node], f.iteration, f.input) for f in fired]

    def _record(self, node: CompiledNode, result: NodeResult) -> None:
        """Store a finished instance's output; ContextError if it is not encodable."""
        output = result.output
        key = self.plan.keys[node.index]
        try:
            ensure_encodable(key, output)
        except ContextError as exc:
            raise ContextError(f"run {self.run_id!r}, node {node.id!r}: output {exc}") from None
        data = self.data
        if type(result) is RecoveredResult:
            # as TS Flowcraft records it: the fallback's output under the fallback's id
            data[output_key(result.fallback_id)] = data[result.fallback_id] = output
            data[key] = data[node.id] = None
        else:
            data[key] = data[node.id] = output

    def _chosen(self, node: CompiledNode, result: NodeResult) -> list[tuple[CompiledEdge, bool]]:
        """The edges a finished instance resolves, each with taken or not."""
        if node.is_controller and result.action == CONTINUE:
            return [(e, True) for e in node.out_edges if e.kind == BACK]
        flags = decide_edges(node, result, self.data, self.runtime.evaluator)
        chosen = list(zip(node.out_edges, flags, strict=True))
        if node.is_controller:
            return [(e, taken) for e, taken in chosen if e.kind == EXIT]
        return chosen

    async def _route(self, node: CompiledNode, iteration: int,
                     result: NodeResult) -> list[Instance]:
        evaluator = self.runtime.evaluator
        chosen = self._chosen(node, result)
        bus = self.bus
        decisions = []
        for edge, taken in chosen:
            if bus is not None:
                await bus(EdgeEvaluate(run_id=self.run_id, blueprint_id=self.blueprint_id,
                                       source=node.id, target=edge.target.id, taken=taken,
                                       action=edge.action, condition=edge.condition_source))
            value = edge_value(edge, result.output, self.data, evaluator) if taken else None
            decisions.append((edge.index, taken, value))
        routed = self.book.route(node.index, iteration, decisions)
        nodes = self.graph.nodes
        if bus is not None:
            for skipped, skipped_iteration in routed.skipped:
                await bus(NodeSkipped(run_id=self.run_id, blueprint_id=self.blueprint_id,
                                      node_id=nodes[skipped].id, iteration=skipped_iteration))
        return [(nodes[f.node], f.iteration, f.input) for f in routed.fired]

    def suspend(self, node: CompiledNode, iteration: int, signal: Suspended) -> None:
        self.awaiting[node.id] = Awaiting(node_id=node.id, iteration=iteration,
                                          kind=signal.kind, wake_at=signal.wake_at,
                                          child=signal.child)

    # -- failure and the end of a run -------------------------------------------------------

    async def fail(self, node: CompiledNode, iteration: int, cause: BaseException,
                   attempt: int) -> None:
        """Fail-fast: the run is failed for good and no new node starts (nodes running
        finish); so a failed node's successors, poisoned or cancelled, never run."""
        error = self._failed(node, cause, attempt)
        if self.bus is not None:
            await self.bus(NodeErrorEvent(run_id=self.run_id, blueprint_id=self.blueprint_id,
                                          node_id=node.id, iteration=iteration, error=error))

    def _failed(self, node: CompiledNode, cause: BaseException, attempt: int) -> WorkflowError:
        """Record the failure (`fail` without its event)."""
        error = WorkflowError(node_id=node.id, message=str(cause) or type(cause).__name__,
                              type=type(cause).__name__, attempt=attempt, timestamp=utc_now())
        log.info("run %s: node %s failed: %s", self.run_id, node.id, error.message)
        self.errors.append(error)
        self.failed = True
        return error

    async def finish(self) -> WorkflowResult:
        """The run's result, announced on the event bus."""
        result = self.outcome()
        if self.bus is not None:
            if result.status == "awaiting":
                await self.bus(WorkflowPause(run_id=self.run_id, blueprint_id=self.blueprint_id,
                                             awaiting=list(result.awaiting)))
            else:
                await self.bus(WorkflowFinish(run_id=self.run_id,
                                              blueprint_id=self.blueprint_id,
                                              status=result.status, errors=list(self.errors)))
        return result

    def outcome(self) -> WorkflowResult:
        """The run's result as it stands (`finish` without its event)."""
        status: RunStatus
        if self.cancelled:
            status = "cancelled"
        elif self.failed:
            status = "failed"
        elif self.awaiting:
            status = "awaiting"
        elif self.book.stalled():
            status = "stalled"
        else:
            status = "completed"
        result = WorkflowResult(
            run_id=self.run_id, status=status, context=_plain(self.data),
            errors=list(self.errors),
            awaiting=list(self.awaiting) if status == "awaiting" else [],
            blueprint_id=self.blueprint_id)
        if status == "awaiting":
            result.state = msgspec.to_builtins(PausedState(
                book=self.book.to_dict(), awaiting=list(self.awaiting.values()),
                durable_timers=self.durable_timers))
            result.wake_at = {a.node_id: a.wake_at for a in self.awaiting.values()
                              if a.wake_at is not None}
        return result


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    """The context as JSON-shaped data: what a distributed run would return too."""
    plain: dict[str, Any] = msgspec.to_builtins(data)
    return plain


__all__ = ["Instance", "Lanes", "Run"]
