"""Edge decisions: which outgoing edges a finished node takes, and what flows along them.

This is the one implementation of routing; the in-memory scheduler and the distributed worker
both call it and only differ in how they record the decisions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from flowcraft.context import OUTPUTS_PREFIX
from flowcraft.expressions import ExpressionEvaluator, compile_expression
from flowcraft.nodes import NodeResult
from flowcraft.runtime.graph import CompiledEdge, CompiledNode


class ConditionScope(Mapping[str, Any]):
    """The context plus `result`, without copying the context."""

    __slots__ = ("_context", "_result")

    def __init__(self, context: Mapping[str, Any], result: NodeResult) -> None:
        self._context = context
        self._result = {"output": result.output, "action": result.action}

    def __getitem__(self, key: str) -> Any:
        if key == "result":
            return self._result
        return self._context[key]

    def get(self, key: str, default: Any = None) -> Any:
        if key == "result":
            return self._result
        return self._context.get(key, default)

    def __iter__(self) -> Iterator[str]:
        yield "result"
        yield from (k for k in self._context if k != "result")

    def __len__(self) -> int:
        return len(self._context) + (0 if "result" in self._context else 1)


def _holds(edge: CompiledEdge, scope: Mapping[str, Any] | None,
           evaluator: ExpressionEvaluator | None) -> bool:
    if edge.condition is None:
        return True
    assert scope is not None
    if evaluator is not None:
        return bool(evaluator.evaluate(edge.condition.source, scope))
    return bool(edge.condition.evaluate(scope))


def decide_edges(node: CompiledNode, result: NodeResult, context: Mapping[str, Any],
                 evaluator: ExpressionEvaluator | None = None) -> list[bool]:
    """One taken/skipped flag per outgoing edge, in declaration order.

    Edges with `action == result.action` whose condition holds are taken; if none match, the
    action-less edges whose condition holds are. An unmatched action never takes action edges.
    """
    edges = node.out_edges
    scope = ConditionScope(context, result) if any(e.condition for e in edges) else None
    action = result.action
    if action is not None:
        taken = [e.action == action and _holds(e, scope, evaluator) for e in edges]
        if any(taken):
            return taken
    return [e.action is None and _holds(e, scope, evaluator) for e in edges]


def edge_value(edge: CompiledEdge, output: Any, context: Mapping[str, Any],
               evaluator: ExpressionEvaluator | None = None) -> Any:
    """What flows along a taken edge: the source's output, after the edge's transform."""
    if edge.transform is None:
        return output
    scope = {"input": output, "context": context}
    if evaluator is not None:
        return evaluator.evaluate(edge.transform.source, scope)
    return edge.transform.evaluate(scope)


_MISSING = object()


def _step(value: Any, part: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(part)
    if isinstance(value, list | tuple):
        try:
            return value[int(part)]
        except (ValueError, IndexError):
            return None
    if part.startswith("_"):
        return None
    return getattr(value, part, None)


def resolve_input_path(path: str, context: Mapping[str, Any], node_ids: Mapping[str, Any]) -> Any:
    """`"x"` is node x's output if x is a node, else the context key; `"x.a.b"` walks on;
    a key starting with `_` is read verbatim."""
    if path.startswith("_"):
        value = context.get(path, _MISSING)
        if value is not _MISSING:
            return value
    head, _, rest = path.partition(".")
    if path.startswith(OUTPUTS_PREFIX):
        head, _, rest = path[len(OUTPUTS_PREFIX):].partition(".")
        value = context.get(OUTPUTS_PREFIX + head)
    elif head in node_ids:
        value = context.get(OUTPUTS_PREFIX + head)
    else:
        value = context.get(head)
    if rest:
        for part in rest.split("."):
            if value is None:
                return None
            value = _step(value, part)
    return value


def resolve_inputs(spec: str | Mapping[str, str], context: Mapping[str, Any],
                   node_ids: Mapping[str, Any]) -> Any:
    if isinstance(spec, str):
        return resolve_input_path(spec, context, node_ids)
    return {key: resolve_input_path(path, context, node_ids) for key, path in spec.items()}


__all__ = [
    "ConditionScope",
    "ExpressionEvaluator",
    "decide_edges",
    "edge_value",
    "loop_continues",
    "resolve_input_path",
    "resolve_inputs",
]


def loop_continues(node: CompiledNode, context: Mapping[str, Any],
                   evaluator: ExpressionEvaluator | None = None) -> bool:
    """A loop controller's decision: does the body run again? The condition sees the context."""
    source = node.params["condition"]
    if evaluator is not None:
        return bool(evaluator.evaluate(source, context))
    return bool(compile_expression(source).evaluate(context))
