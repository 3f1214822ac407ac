"""The compact form of a compiled graph that a coordination store needs for its bookkeeping.

Stores only need the shape of the graph: for every node its flags (`any` join, fallback-only,
loop controller) and its incoming (forward / back) and outgoing edge indexes; for every edge its
source, target and kind. The JSON form is what the Redis scripts decode (once per call, it is a
few hundred bytes), so it is computed once per graph and cached.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from flowcraft.runtime.graph import Graph, per_graph

ANY, FALLBACK_ONLY, CONTROLLER = 1, 2, 4


class NodeSpec(msgspec.Struct, frozen=True, array_like=True):
    id: str
    flags: int
    forward_in: tuple[int, ...]
    back_in: tuple[int, ...]
    out: tuple[int, ...]


class EdgeSpec(msgspec.Struct, frozen=True, array_like=True):
    source: int
    target: int
    kind: int


class _Wire(msgspec.Struct, frozen=True):
    n: tuple[NodeSpec, ...]
    e: tuple[EdgeSpec, ...]
    s: tuple[int, ...]


class GraphSpec:
    """Shape of one graph, plus its JSON form for stores that run scripts."""

    __slots__ = ("__weakref__", "blueprint_id", "edges", "index", "json", "node_ids", "nodes",
                 "start", "version")

    def __init__(self, graph: Graph) -> None:
        self.blueprint_id = graph.id
        self.version: str | None = graph.blueprint.version
        nodes = []
        for node in graph.nodes:
            flags = ((ANY if node.join_any else 0) | (FALLBACK_ONLY if node.is_fallback_only else 0)
                     | (CONTROLLER if node.is_controller else 0))
            nodes.append(NodeSpec(node.id, flags, tuple(e.index for e in node.forward_in),
                                  tuple(e.index for e in node.back_in),
                                  tuple(e.index for e in node.out_edges)))
        self.nodes: tuple[NodeSpec, ...] = tuple(nodes)
        self.edges: tuple[EdgeSpec, ...] = tuple(
            EdgeSpec(e.source.index, e.target.index, e.kind) for e in graph.edges)
        self.start: tuple[int, ...] = tuple(n.index for n in graph.start_nodes)
        self.node_ids: Sequence[str] = tuple(n.id for n in self.nodes)
        self.index: dict[str, int] = {n.id: i for i, n in enumerate(self.nodes)}
        self.json: bytes = msgspec.json.encode(_Wire(self.nodes, self.edges, self.start))


graph_spec = per_graph(GraphSpec)
"""The (cached) spec of a compiled graph."""


__all__ = ["ANY", "CONTROLLER", "FALLBACK_ONLY", "EdgeSpec", "GraphSpec", "NodeSpec",
           "graph_spec"]
