"""What the TypeScript Flowcraft writes, read as our constructs.

A blueprint keeps the shape it was written in (loading never rewrites it); the compiled graph
runs `normalize(blueprint)` instead, so the in-memory runtime and the distributed worker both
read TS shapes through this one module:

- a `batch-scatter` / `batch-gather` pair (what the TS builder writes for a batch, and what ours
  writes too) becomes one `batch` node named by the pair's base id (`work` for `work_scatter`
  and `work_gather`, as the TS runtime's own batch events name it);
- the TS built-in class names used as `uses` keys (`SubflowNode`, `WaitNode`, `SleepNode`) are
  our built-in kinds.

It also finds loops entered through their controller (the reference's own loop tests wire them
so), which the graph supports when the controller is an `any` join.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from flowcraft.blueprint import (
    EdgeDefinition,
    NodeDefinition,
    WorkflowBlueprint,
    check_builtin_params,
)
from flowcraft.builtins.kinds import BATCH, LOOP_CONTROLLER, SLEEP, SUBFLOW, WAIT
from flowcraft.errors import BlueprintError

BATCH_SCATTER = "batch-scatter"
BATCH_GATHER = "batch-gather"
SCATTER_SUFFIX = "_scatter"
GATHER_SUFFIX = "_gather"
TS_CLASS_KINDS = {"SubflowNode": SUBFLOW, "WaitNode": WAIT, "SleepNode": SLEEP}
TS_KINDS = frozenset({BATCH_SCATTER, BATCH_GATHER, *TS_CLASS_KINDS})


class BatchPair:
    """One scatter/gather pair and the batch node it stands for."""

    def __init__(self, scatter: NodeDefinition, gather: NodeDefinition, batch_id: str,
                 node: NodeDefinition) -> None:
        self.scatter = scatter
        self.gather = gather
        self.batch_id = batch_id
        self.node = node


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def batch_pairs(blueprint: WorkflowBlueprint) -> list[BatchPair]:
    """Every scatter/gather pair; BlueprintError (naming the path) for a pair we cannot read."""
    index = {node.id: i for i, node in enumerate(blueprint.nodes)}
    pairs: list[BatchPair] = []
    gathers: set[str] = set()
    for i, scatter in enumerate(blueprint.nodes):
        if scatter.uses != BATCH_SCATTER:
            continue
        where = f"at `$.nodes[{i}]` (batch-scatter {scatter.id!r})"
        params = scatter.params
        gather_id = params.get("gatherNodeId")
        if not isinstance(gather_id, str) or gather_id not in index \
                or blueprint.nodes[index[gather_id]].uses != BATCH_GATHER:
            raise BlueprintError(f"params.gatherNodeId must name a batch-gather node {where}")
        if gather_id in gathers:
            raise BlueprintError(f"batch-gather {gather_id!r} has two scatter nodes {where}")
        gathers.add(gather_id)
        gather = blueprint.nodes[index[gather_id]]
        worker = params.get("workerUsesKey")
        if not isinstance(worker, str) or not worker:
            raise BlueprintError(f"params.workerUsesKey must be a uses key {where}")
        if not isinstance(scatter.inputs, str):
            raise BlueprintError(f"inputs must be the context key of the item list {where}")
        output_key = params.get("outputKey", gather.params.get("outputKey"))
        if output_key is not None and not isinstance(output_key, str):
            raise BlueprintError(f"params.outputKey must be a string {where}")
        concurrency = params.get("concurrency", params.get("chunkSize"))
        if concurrency is not None and not _positive_int(concurrency):
            raise BlueprintError(f"params.concurrency/chunkSize must be an integer >= 1 {where}")
        out_of_scatter = [e for e in blueprint.edges if e.source == scatter.id]
        into_gather = [e for e in blueprint.edges if e.target == gather.id]
        plain = [(gather.id, None, None)]
        if [(e.target, e.action, e.condition) for e in out_of_scatter] != plain \
                or len(into_gather) != 1:
            raise BlueprintError(
                f"a batch pair is wired scatter -> gather only: {scatter.id!r} must have exactly "
                f"one outgoing edge, to {gather.id!r}, and {gather.id!r} no other incoming edge "
                f"{where}; draw edges into the scatter and out of the gather")
        batch_id = _batch_id(scatter.id, gather.id, index)
        batch_params: dict[str, Any] = {"worker": worker, "inputKey": scatter.inputs,
                                        "outputKey": output_key or batch_id}
        if concurrency is not None:
            batch_params["concurrency"] = concurrency
        node = NodeDefinition(id=batch_id, uses=BATCH, params=batch_params,
                              config=scatter.config)
        pairs.append(BatchPair(scatter, gather, batch_id, node))
    for i, node in enumerate(blueprint.nodes):
        if node.uses == BATCH_GATHER and node.id not in gathers:
            raise BlueprintError(f"batch-gather {node.id!r} at `$.nodes[{i}]` has no "
                                 "batch-scatter naming it in params.gatherNodeId")
    return pairs


def _batch_id(scatter_id: str, gather_id: str, index: dict[str, int]) -> str:
    """The base id the TS builder derived both ids from, or the gather's id if that is taken."""
    if scatter_id.endswith(SCATTER_SUFFIX):
        base = scatter_id[: -len(SCATTER_SUFFIX)]
        if base and base not in index:
            return base
    return gather_id


def normalize(blueprint: WorkflowBlueprint) -> WorkflowBlueprint:
    """The blueprint in our constructs; the same object when it holds no TS-only shape."""
    if not any(node.uses in TS_KINDS for node in blueprint.nodes):
        return blueprint
    pairs = batch_pairs(blueprint)
    by_scatter = {p.scatter.id: p for p in pairs}
    renamed = {p.scatter.id: p.batch_id for p in pairs}
    renamed.update({p.gather.id: p.batch_id for p in pairs})
    inner = {(p.scatter.id, p.gather.id) for p in pairs}
    nodes: list[NodeDefinition] = []
    for i, node in enumerate(blueprint.nodes):
        if node.uses == BATCH_GATHER:
            continue
        if node.id in by_scatter:
            node = by_scatter[node.id].node
            check_builtin_params(node, f"$.nodes[{i}]")
        elif node.uses in TS_CLASS_KINDS:
            node = NodeDefinition(id=node.id, uses=TS_CLASS_KINDS[node.uses],
                                  params=node.params, inputs=node.inputs, config=node.config)
            check_builtin_params(node, f"$.nodes[{i}]")
        fallback = node.config.fallback
        if fallback is not None and fallback in renamed:
            node = msgspec.structs.replace(node, config=msgspec.structs.replace(
                node.config, fallback=renamed[fallback]))
        nodes.append(node)
    edges = tuple(
        EdgeDefinition(source=renamed.get(e.source, e.source),
                       target=renamed.get(e.target, e.target), action=e.action,
                       condition=e.condition, transform=e.transform)
        for e in blueprint.edges if (e.source, e.target) not in inner)
    return WorkflowBlueprint(id=blueprint.id, nodes=tuple(nodes), edges=edges,
                             metadata=blueprint.metadata)


def loop_body(blueprint: WorkflowBlueprint, controller: str) -> set[str]:
    """Nodes reachable from the controller's `continue` target without passing the controller
    itself (inner loops, controllers included, are part of an outer loop's body)."""
    succ: dict[str, list[str]] = {}
    for e in blueprint.edges:
        succ.setdefault(e.source, []).append(e.target)
    body: set[str] = set()
    stack = [e.target for e in blueprint.edges
             if e.source == controller and e.action == "continue" and e.target != controller]
    while stack:
        node = stack.pop()
        if node in body:
            continue
        body.add(node)
        stack.extend(t for t in succ.get(node, ()) if t != controller and t not in body)
    return body


def controller_entries(blueprint: WorkflowBlueprint) -> dict[str, list[int]]:
    """Per loop controller, the indexes of its incoming edges from outside its loop body."""
    entries: dict[str, list[int]] = {}
    for node in blueprint.nodes:
        if node.uses != LOOP_CONTROLLER:
            continue
        body = loop_body(blueprint, node.id)
        found = [i for i, e in enumerate(blueprint.edges)
                 if e.target == node.id and e.source not in body]
        if found:
            entries[node.id] = found
    return entries


def check_controller_entries(blueprint: WorkflowBlueprint) -> None:
    """A loop entered through its controller runs as a while loop (the condition is checked
    before the first pass, as in the reference) only when the controller is an `any` join and
    the body has no other way in; anything else would run wrong, so it is refused here."""
    nodes = {n.id: n for n in blueprint.nodes}
    for controller, found in controller_entries(blueprint).items():
        edge = blueprint.edges[found[0]]
        where = (f"loop controller {controller!r} is entered from {edge.source!r} "
                 f"(`$.edges[{found[0]}]`)")
        if nodes[controller].config.join_strategy != "any":
            raise BlueprintError(
                f"{where} but is an `all` join, so it would wait for its own body and the run "
                "would stall: give the controller config.joinStrategy \"any\" (as the TS "
                "builder writes it), or enter the loop through its start node")
        body = loop_body(blueprint, controller)
        starts = {e.target for e in blueprint.edges
                  if e.source == controller and e.action == "continue"}
        for i, e in enumerate(blueprint.edges):
            if e.target in starts and e.source not in body and e.source != controller:
                raise BlueprintError(
                    f"{where} and its start node {e.target!r} also from {e.source!r} "
                    f"(`$.edges[{i}]`): enter the loop one way, through the controller or "
                    "through the start node")


def uses_keys(blueprint: WorkflowBlueprint) -> Iterable[str]:
    """Every implementation key a blueprint needs, including batch workers in either shape."""
    for node in blueprint.nodes:
        yield node.uses
        if node.uses == BATCH_SCATTER and isinstance(node.params.get("workerUsesKey"), str):
            yield node.params["workerUsesKey"]
        if node.uses == BATCH and isinstance(node.params.get("worker"), str):
            yield node.params["worker"]


__all__ = [
    "BATCH_GATHER",
    "BATCH_SCATTER",
    "TS_CLASS_KINDS",
    "TS_KINDS",
    "BatchPair",
    "batch_pairs",
    "check_controller_entries",
    "controller_entries",
    "loop_body",
    "normalize",
    "uses_keys",
]
