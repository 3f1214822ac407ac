"""A blueprint compiled once into index-based lookups, shared by every run of it.

Routing, the in-memory scheduler and the distributed adapter all read this structure, so no
code path scans the blueprint per node. The graph is built from `interop.normalize(blueprint)`:
TS shapes (scatter/gather pairs) become our constructs here, once, for every host.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flowcraft.blueprint import NodeConfig, WorkflowBlueprint
from flowcraft.builtins.kinds import BATCH, BUILTIN_KINDS, LOOP_CONTROLLER
from flowcraft.errors import BlueprintError
from flowcraft.expressions import Expression, compile_expression
from flowcraft.interop import controller_entries, normalize

CONTINUE = "continue"
BREAK = "break"

# Edge kinds: loops make two kinds of edge special.
NORMAL, BACK, EXIT = 0, 1, 2


class CompiledEdge:
    """One edge. BACK edges re-enter a loop; EXIT edges leave it (from the controller)."""

    __slots__ = ("action", "condition", "condition_source", "index", "kind", "source", "target",
                 "transform", "transform_source")

    def __init__(self, index: int, source: CompiledNode, target: CompiledNode, action: str | None,
                 condition: str | None, transform: str | None, kind: int) -> None:
        self.index, self.source, self.target, self.action = index, source, target, action
        self.condition_source, self.transform_source = condition, transform
        self.condition: Expression | None = compile_expression(condition) if condition else None
        self.transform: Expression | None = compile_expression(transform) if transform else None
        self.kind = kind

    def __repr__(self) -> str:
        return f"<edge {self.index}: {self.source.id} -> {self.target.id}>"


class CompiledNode:
    """One node with its edges split the way joins need them."""

    __slots__ = ("back_in", "batch_worker", "config", "forward_in", "id", "impl", "in_edges",
                 "index", "inputs", "is_controller", "is_fallback_only", "join_any", "kind",
                 "out_edges", "params", "uses")

    def __init__(self, index: int, node_id: str, uses: str, params: Mapping[str, Any],
                 inputs: str | dict[str, str] | None, config: NodeConfig, impl: Any) -> None:
        self.index, self.id, self.uses, self.impl = index, node_id, uses, impl
        self.params, self.inputs, self.config = params, inputs, config
        self.join_any = config.join_strategy == "any"
        self.is_controller = uses == LOOP_CONTROLLER
        self.kind: str | None = uses if uses in BUILTIN_KINDS else None
        self.batch_worker: CompiledNode | None = None
        self.is_fallback_only = False
        self.out_edges: tuple[CompiledEdge, ...] = ()
        self.in_edges: tuple[CompiledEdge, ...] = ()
        self.forward_in: tuple[CompiledEdge, ...] = ()
        self.back_in: tuple[CompiledEdge, ...] = ()

    @property
    def is_join(self) -> bool:
        return len(self.in_edges) >= 2

    def __repr__(self) -> str:
        return f"<node {self.id}>"


class Graph:
    """The compiled form of one blueprint with one registry."""

    def __init__(self, blueprint: WorkflowBlueprint, registry: Mapping[str, Any],
                 builtins: Mapping[str, Any] | None = None, *, code: bool = True) -> None:
        """`code=False` compiles the shape and the expressions only, for processes that
        start, resume and route runs but never execute node code (clients)."""
        self.source = blueprint
        blueprint = normalize(blueprint)
        self.blueprint = blueprint
        self.id = blueprint.id
        impls = {**(builtins or {}), **registry}
        nodes: list[CompiledNode] = []
        for i, nd in enumerate(blueprint.nodes):
            impl = impls.get(nd.uses)
            if impl is None and code:
                raise BlueprintError(
                    f"blueprint {blueprint.id!r}: node {nd.id!r} uses {nd.uses!r}, which is not "
                    "in the registry")
            node = CompiledNode(i, nd.id, nd.uses, nd.params, nd.inputs, nd.config, impl)
            if node.kind == BATCH:
                worker = impls.get(nd.params["worker"])
                if worker is None and code:
                    raise BlueprintError(
                        f"blueprint {blueprint.id!r}: batch {nd.id!r} worker "
                        f"{nd.params['worker']!r} is not in the registry")
                node.batch_worker = CompiledNode(-1, nd.id, nd.params["worker"], nd.params,
                                                 None, nd.config, worker)
            nodes.append(node)
        self.nodes: tuple[CompiledNode, ...] = tuple(nodes)
        self.by_id: dict[str, CompiledNode] = {n.id: n for n in nodes}
        outs: dict[int, list[CompiledEdge]] = {n.index: [] for n in nodes}
        ins: dict[int, list[CompiledEdge]] = {n.index: [] for n in nodes}
        edges: list[CompiledEdge] = []
        for i, ed in enumerate(blueprint.edges):
            source, target = self.by_id[ed.source], self.by_id[ed.target]
            kind = NORMAL
            if source.is_controller:
                kind = BACK if ed.action == CONTINUE else EXIT
            edge = CompiledEdge(i, source, target, ed.action, ed.condition, ed.transform, kind)
            edges.append(edge)
            outs[source.index].append(edge)
            ins[target.index].append(edge)
        self.edges: tuple[CompiledEdge, ...] = tuple(edges)
        for node in nodes:
            node.out_edges = tuple(outs[node.index])
            node.in_edges = tuple(ins[node.index])
            node.forward_in = tuple(e for e in node.in_edges if e.kind != BACK)
            node.back_in = tuple(e for e in node.in_edges if e.kind == BACK)
        for nd in blueprint.nodes:
            if nd.config.fallback:
                self.by_id[nd.config.fallback].is_fallback_only = True
        # A loop entered through its controller (an `any` join, checked at load) starts its body
        # from the controller: the body's start node, whose only way in is the back edge, is
        # not a start node of the flow.
        entered = {e.target.id for c in controller_entries(blueprint)
                   for e in self.by_id[c].out_edges if e.kind == BACK}
        self.start_nodes: tuple[CompiledNode, ...] = tuple(
            n for n in nodes
            if not n.forward_in and not n.is_fallback_only and n.id not in entered)
        self.condition_names: dict[int, frozenset[str]] = {
            n.index: frozenset().union(*(e.condition.names for e in n.out_edges if e.condition))
            for n in nodes
        }


T = TypeVar("T")


def per_graph(build: Callable[[Graph], T]) -> Callable[[Graph], T]:
    """`build(graph)`, computed once per compiled graph (cached weakly, so it goes with it)."""
    cache: weakref.WeakKeyDictionary[Graph, T] = weakref.WeakKeyDictionary()

    def cached(graph: Graph) -> T:
        value = cache.get(graph)
        if value is None:
            value = cache[graph] = build(graph)
        return value

    return cached


__all__ = ["BACK", "BREAK", "CONTINUE", "EXIT", "NORMAL", "CompiledEdge", "CompiledNode", "Graph",
           "per_graph"]
