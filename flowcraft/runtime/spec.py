"""The compact form of a compiled graph that a coordination store needs for its bookkeeping.

Stores only need the shape of the graph: for every node its flags (`any` join, fallback-only,
loop controller) and its incoming (forward / back) and outgoing edge indexes; for every edge its
source, target and kind. Stores that run scripts keep it as one record per node and per edge
(`records`, stored once per graph shape under its `digest`), and each call sends the few records
it will touch (`seeds`), so the cost of a call does not grow with the size of the graph.
"""

from __future__ import annotations

import hashlib
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
    """Shape of one graph, plus its record form for stores that run scripts."""

    __slots__ = ("__weakref__", "_seeds", "blueprint_id", "digest", "edges", "index", "json",
                 "node_ids", "nodes", "start", "version")

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
        self.digest: str = hashlib.sha1(self.json).hexdigest()[:20]
        self._seeds: dict[int, tuple[list[str], bool]] = {}

    def records(self) -> dict[str, bytes]:
        """Every record, by field: `n<i>` a node (`NodeSpec`), `e<j>` an edge (source,
        target, kind, source id)."""
        out = {f"n{i}": msgspec.json.encode(n) for i, n in enumerate(self.nodes)}
        out.update((f"e{j}", self._edge_record(j)) for j in range(len(self.edges)))
        return out

    def _edge_record(self, j: int) -> bytes:
        e = self.edges[j]
        return msgspec.json.encode((e.source, e.target, e.kind, self.node_ids[e.source]))

    def start_seeds(self) -> list[str]:
        """`field, record, ...` of the start nodes."""
        seeds = []
        for i in self.start:
            seeds += [f"n{i}", msgspec.json.encode(self.nodes[i]).decode()]
        return seeds

    def seeds(self, node: int) -> tuple[list[str], bool]:
        """`field, record, ...` of what routing the edges of `node` reads unless it skips
        nodes or completes a large join: the edges, their targets and the incoming edges of
        targets with at most SMALL_JOIN of them. A larger target is sent as a light record
        (counts instead of its edge lists), which keeps the cost of one commit independent of
        the size of the graph; the script reads the rest from the graph's hash when it needs
        it. The flag says whether it may (cached)."""
        seeds = self._seeds.get(node)
        if seeds is None:
            edges: dict[int, None] = {}
            lazy = False
            records: list[str] = []
            for j in self.nodes[node].out:
                edges[j] = None
                target = self.nodes[self.edges[j].target]
                if len(target.forward_in) + len(target.back_in) <= SMALL_JOIN:
                    edges.update(dict.fromkeys(target.forward_in))
                    edges.update(dict.fromkeys(target.back_in))
                    record = msgspec.json.encode(target)
                else:
                    lazy = True
                    record = msgspec.json.encode((target.id, target.flags, len(target.forward_in),
                                                  len(target.back_in), len(target.out)))
                records += [f"n{self.edges[j].target}", record.decode()]
            for j in edges:
                records += [f"e{j}", self._edge_record(j).decode()]
            seeds = self._seeds[node] = (records, lazy)
        return seeds


SMALL_JOIN = 16
"""Targets with at most this many incoming edges travel whole with every commit into them."""


graph_spec = per_graph(GraphSpec)
"""The (cached) spec of a compiled graph."""


__all__ = ["ANY", "CONTROLLER", "FALLBACK_ONLY", "SMALL_JOIN", "EdgeSpec", "GraphSpec", "NodeSpec",
           "graph_spec"]
