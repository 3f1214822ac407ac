"""Replay and time travel from a recorded event log.

`replay_context` folds events into the final result without running anything. A `ReplayPlan`
lets a new run reuse recorded outputs (and context writes) of every node that is not a
descendant of the chosen node, so only that node and what follows it run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from flowcraft.context import output_key
from flowcraft.errors import FlowcraftError
from flowcraft.events import (
    ContextChange,
    Event,
    NodeFinish,
    WorkflowFinish,
    WorkflowPause,
    WorkflowStart,
)
from flowcraft.nodes import NodeContext, NodeResult
from flowcraft.result import RunStatus, WorkflowError, WorkflowResult

if TYPE_CHECKING:
    from flowcraft.runtime.graph import Graph


def _root_run(events: Sequence[Event]) -> str:
    """The recorded run (subflow children share the bus but have their own run ids)."""
    for event in events:
        if isinstance(event, WorkflowStart):
            return event.run_id
    if events:
        return events[0].run_id
    raise FlowcraftError("cannot replay an empty event log")


def replay_context(blueprint_id: str, events: Sequence[Event]) -> WorkflowResult:
    run_id = _root_run(events)
    context: dict[str, Any] = {}
    status: RunStatus = "completed"
    errors: list[WorkflowError] = []
    awaiting: list[str] = []
    for event in events:
        if event.run_id != run_id:
            continue
        if isinstance(event, WorkflowStart):
            context = dict(event.context)
        elif isinstance(event, ContextChange):
            if event.op == "delete":
                context.pop(event.key, None)
            else:
                context[event.key] = event.value
        elif isinstance(event, NodeFinish):
            context[output_key(event.node_id)] = event.output
            context[event.node_id] = event.output
        elif isinstance(event, WorkflowFinish):
            status, errors, awaiting = event.status, list(event.errors), []
        elif isinstance(event, WorkflowPause):
            status, awaiting = "awaiting", list(event.awaiting)
    return WorkflowResult(run_id=run_id, status=status, context=msgspec.to_builtins(context),
                          errors=errors, awaiting=awaiting, blueprint_id=blueprint_id)


class Recorded:
    """One recorded node execution: its result and the context writes it made, in order."""

    __slots__ = ("changes", "result")

    def __init__(self, result: NodeResult) -> None:
        self.result = result
        self.changes: list[tuple[str, str, Any]] = []

    async def apply(self, ctx: NodeContext) -> NodeResult:
        for key, op, value in self.changes:
            if op == "delete":
                await ctx.context.delete(key)
            else:
                await ctx.context.set(key, value)
        return self.result


class ReplayPlan:
    """Recorded executions of the nodes that are not re-run."""

    def __init__(self, initial_context: dict[str, Any],
                 recorded: dict[tuple[str, int], Recorded]) -> None:
        self.initial_context = initial_context
        self.recorded = recorded

    def recall(self, node_id: str, iteration: int) -> Recorded | None:
        return self.recorded.get((node_id, iteration))

    @classmethod
    def from_events(cls, graph: Graph, events: Sequence[Event], node_id: str) -> ReplayPlan:
        rerun = _descendants(graph, node_id)
        run_id = _root_run(events)
        initial: dict[str, Any] = {}
        recorded: dict[tuple[str, int], Recorded] = {}
        pending_changes: dict[tuple[str, int], list[tuple[str, str, Any]]] = {}
        for event in events:
            if event.run_id != run_id:
                continue
            if isinstance(event, WorkflowStart):
                initial = dict(event.context)
            elif isinstance(event, ContextChange) and event.node_id is not None:
                pending_changes.setdefault((event.node_id, event.iteration), []).append(
                    (event.key, event.op, event.value))
            elif isinstance(event, NodeFinish) and event.node_id not in rerun:
                key = (event.node_id, event.iteration)
                entry = Recorded(NodeResult(event.output, event.action))
                entry.changes = pending_changes.pop(key, [])
                recorded[key] = entry
        return cls(initial, recorded)


def _descendants(graph: Graph, node_id: str) -> set[str]:
    seen = {node_id}
    stack = [graph.by_id[node_id]]
    while stack:
        node = stack.pop()
        for edge in node.out_edges:
            if edge.target.id not in seen:
                seen.add(edge.target.id)
                stack.append(edge.target)
    return seen


__all__ = ["Recorded", "ReplayPlan", "replay_context"]
