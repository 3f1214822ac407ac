"""Where the dashboard gets a run's blueprint: the graph it draws and node index -> node id.

Redis stores node *indexes* (the meta hash's `i:<index>#<iteration>` fields); only the
blueprint says which node an index is. The dashboard takes the blueprints from the `flows=`
given to `create_app` (`--flow module:flow` on the command line), the same flows the workers
serve. A run whose blueprint is not known is still listed and shown (status, context, errors,
events and a node list built from its events), just without the drawn graph.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from flowcraft.blueprint import WorkflowBlueprint
from flowcraft.builder import Flow
from flowcraft.errors import FlowcraftError

log = logging.getLogger("flowcraft.arq.dashboard")


class NodeInfo(msgspec.Struct, frozen=True):
    index: int
    id: str
    kind: str          # task | wait | sleep | batch | subflow | loop
    detail: str        # e.g. "sleep 5s", "batch of items", "subflow billing"


class EdgeInfo(msgspec.Struct, frozen=True):
    source: int
    target: int
    label: str
    back: bool         # a loop's `continue` edge: drawn backwards


class FlowInfo(msgspec.Struct, frozen=True):
    id: str
    version: str
    nodes: tuple[NodeInfo, ...]
    edges: tuple[EdgeInfo, ...]

    def node_id(self, index: int) -> str:
        return self.nodes[index].id if 0 <= index < len(self.nodes) else f"#{index}"

    def index_of(self, node_id: str) -> int | None:
        for node in self.nodes:
            if node.id == node_id:
                return node.index
        return None


_KINDS = {"wait": "wait", "sleep": "sleep", "batch": "batch", "subflow": "subflow",
          "loop-controller": "loop"}


def _detail(uses: str, params: Mapping[str, Any]) -> str:
    if uses == "sleep":
        return f"sleep {params.get('duration', '')}"
    if uses == "subflow":
        return f"subflow {params.get('blueprintId', params.get('blueprint_id', ''))}"
    if uses == "batch":
        return f"batch: {params.get('worker', '')}"
    if uses == "loop-controller":
        return f"loop: {params.get('condition', '')}"
    return uses


def _label(action: str | None, condition: str | None) -> str:
    return f"{action or ''} {condition or ''}".strip()


def _from_graph(flow: Flow | WorkflowBlueprint) -> FlowInfo | None:
    """The compiled graph is what the engine indexes (it may differ from the blueprint's
    node list: a TS-style scatter/gather pair compiles to one batch node)."""
    from flowcraft.distributed import graph_spec
    from flowcraft.runtime.runtime import FlowRuntime

    try:
        graph = FlowRuntime().graph_for(flow)
        spec = graph_spec(graph)
    except FlowcraftError:
        return None
    nodes = []
    for i, node_id in enumerate(spec.node_ids):
        compiled = graph.by_id[node_id]
        uses = str(compiled.uses)
        nodes.append(NodeInfo(i, node_id, _KINDS.get(uses, "task"),
                              _detail(uses, compiled.params)))
    edges = []
    for edge, shape in zip(graph.edges, spec.edges, strict=True):
        edges.append(EdgeInfo(shape.source, shape.target,
                              _label(edge.action, edge.condition_source), shape.kind == 1))
    return FlowInfo(graph.id, graph.blueprint.version or "", tuple(nodes), tuple(edges))


def _from_blueprint(blueprint: WorkflowBlueprint) -> FlowInfo:
    """Without the node code (uses keys not registered here): the blueprint's own order."""
    index = {n.id: i for i, n in enumerate(blueprint.nodes)}
    nodes = tuple(NodeInfo(i, n.id, _KINDS.get(n.uses, "task"), _detail(n.uses, n.params))
                  for i, n in enumerate(blueprint.nodes))
    uses = {n.id: n.uses for n in blueprint.nodes}
    edges = tuple(
        EdgeInfo(index[e.source], index[e.target], _label(e.action, e.condition),
                 uses[e.source] == "loop-controller" and e.action == "continue")
        for e in blueprint.edges if e.source in index and e.target in index)
    return FlowInfo(blueprint.id, blueprint.version or "", nodes, edges)


def describe(flow: Flow | WorkflowBlueprint) -> FlowInfo:
    """The drawable form of a flow or blueprint."""
    info = _from_graph(flow)
    if info is not None:
        return info
    return _from_blueprint(flow.to_blueprint() if isinstance(flow, Flow) else flow)


class Blueprints:
    """Known flows by blueprint id (the newest registration of an id wins)."""

    def __init__(self, flows: Iterable[Flow | WorkflowBlueprint] = ()) -> None:
        self._flows: dict[str, FlowInfo] = {}
        for flow in flows:
            info = describe(flow)
            self._flows[info.id] = info

    def get(self, blueprint_id: str) -> FlowInfo | None:
        return self._flows.get(blueprint_id)

    @property
    def ids(self) -> list[str]:
        return sorted(self._flows)


__all__ = ["Blueprints", "EdgeInfo", "FlowInfo", "NodeInfo", "describe"]
