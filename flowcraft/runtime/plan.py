"""What the in-memory scheduler works out once per compiled graph instead of once per node run.

A short run spends most of its time on per-node chores (the output key, the fallback node, the
edge decisions); for most nodes these never change, so they are looked up here by node index.
"""

from __future__ import annotations

from flowcraft.context import output_key
from flowcraft.runtime.graph import CompiledNode, Graph, per_graph
from flowcraft.runtime.spec import GraphSpec, graph_spec


class RunPlan:
    """Per node index: its output key, its fallback node, and its plain edges (see below)."""

    __slots__ = ("__weakref__", "fallbacks", "keys", "plain_edges", "spec")

    def __init__(self, graph: Graph) -> None:
        self.spec: GraphSpec = graph_spec(graph)
        self.keys: tuple[str, ...] = tuple(output_key(n.id) for n in graph.nodes)
        self.fallbacks: tuple[CompiledNode | None, ...] = tuple(
            graph.by_id[n.config.fallback] if n.config.fallback else None for n in graph.nodes)
        self.plain_edges: tuple[tuple[int, ...] | None, ...] = tuple(
            _plain_edges(n) for n in graph.nodes)


def _plain_edges(node: CompiledNode) -> tuple[int, ...] | None:
    """The indexes of the edges `node` takes after any result, each carrying the output as it
    is: when no outgoing edge has an action, a condition or a transform (and the node is no
    loop controller). None when routing depends on the result."""
    if node.is_controller or not node.out_edges:
        return None
    for edge in node.out_edges:
        if edge.action is not None or edge.condition is not None or edge.transform is not None:
            return None
    return tuple(edge.index for edge in node.out_edges)


plan_of = per_graph(RunPlan)
"""The (cached) plan of a compiled graph."""


__all__ = ["RunPlan", "plan_of"]
