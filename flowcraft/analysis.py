"""Graph facts about a blueprint and a linter that reports every problem at once.

`load_blueprint` stops at the first problem; `lint` keeps going, for people fixing a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from flowcraft.blueprint import WorkflowBlueprint, check_builtin_params, find_cycle
from flowcraft.builtins.kinds import BUILTIN_KINDS, LOOP_CONTROLLER
from flowcraft.errors import BlueprintError, ExpressionError
from flowcraft.expressions import compile_expression
from flowcraft.interop import (
    TS_KINDS,
    check_controller_entries,
    controller_entries,
    normalize,
    uses_keys,
)


class LintIssue(msgspec.Struct, frozen=True):
    """One problem: a short code, a message, and the node it concerns (if any)."""

    code: str
    message: str
    node_id: str | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def fallback_nodes(blueprint: WorkflowBlueprint) -> set[str]:
    return {n.config.fallback for n in blueprint.nodes if n.config.fallback}


def start_nodes(blueprint: WorkflowBlueprint) -> list[str]:
    """Nodes with no incoming edge except loop back edges; fallback-only nodes never start."""
    controllers = {n.id for n in blueprint.nodes if n.uses == LOOP_CONTROLLER}
    targets = {e.target for e in blueprint.edges
               if not (e.source in controllers and e.action == "continue")}
    fallbacks = fallback_nodes(blueprint)
    # a loop entered through its controller starts from the controller, not its start node
    entered = {e.target for c in controller_entries(blueprint) for e in blueprint.edges
               if e.source == c and e.action == "continue"}
    return [n.id for n in blueprint.nodes
            if n.id not in targets and n.id not in fallbacks and n.id not in entered]


def terminal_nodes(blueprint: WorkflowBlueprint) -> list[str]:
    sources = {e.source for e in blueprint.edges}
    return [n.id for n in blueprint.nodes if n.id not in sources]


def predecessors(blueprint: WorkflowBlueprint) -> dict[str, list[str]]:
    preds: dict[str, list[str]] = {n.id: [] for n in blueprint.nodes}
    for e in blueprint.edges:
        preds.setdefault(e.target, []).append(e.source)
    return preds


def successors(blueprint: WorkflowBlueprint) -> dict[str, list[str]]:
    succ: dict[str, list[str]] = {n.id: [] for n in blueprint.nodes}
    for e in blueprint.edges:
        succ.setdefault(e.source, []).append(e.target)
    return succ


def _decode(data: bytes | str | Mapping[str, Any] | WorkflowBlueprint) -> WorkflowBlueprint:
    if isinstance(data, WorkflowBlueprint):
        return data
    try:
        if isinstance(data, bytes | str):
            return msgspec.json.decode(data, type=WorkflowBlueprint, strict=True)
        return msgspec.convert(data, WorkflowBlueprint, strict=True)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BlueprintError(f"invalid blueprint: {exc}") from None
    except RecursionError:
        raise BlueprintError("blueprint is nested too deeply") from None


def lint(data: bytes | str | Mapping[str, Any] | WorkflowBlueprint,
         registry: Mapping[str, Any] | None = None) -> list[LintIssue]:
    """Every problem found; an empty list means the blueprint is fine.

    Raises BlueprintError only when the data is not a blueprint at all (bad JSON or types).
    """
    bp = _decode(data)
    issues: list[LintIssue] = []
    ids: set[str] = set()
    for node in bp.nodes:
        if node.id in ids:
            issues.append(LintIssue("duplicate-id", f"node id {node.id!r} is used twice",
                                    node.id))
        ids.add(node.id)
    for index, node in enumerate(bp.nodes):
        if registry is not None:
            for key in uses_keys(WorkflowBlueprint(id=bp.id, nodes=(node,))):
                if key not in registry and key not in BUILTIN_KINDS and key not in TS_KINDS:
                    issues.append(LintIssue("missing-implementation",
                                            f"node {node.id!r} uses {key!r}, which no registry "
                                            "entry provides", node.id))
        fb = node.config.fallback
        if fb is not None and fb not in ids:
            issues.append(LintIssue("unknown-fallback",
                                    f"node {node.id!r} names unknown fallback {fb!r}", node.id))
        if node.config.max_retries < 1:
            issues.append(LintIssue("bad-config", f"node {node.id!r}: maxRetries must be >= 1",
                                    node.id))
        if node.uses == LOOP_CONTROLLER:
            _lint_expression(issues, node.params.get("condition"), f"loop {node.id!r} condition",
                             node.id)
        elif node.uses in BUILTIN_KINDS:
            try:
                check_builtin_params(node, f"$.nodes[{index}]")
            except BlueprintError as exc:
                issues.append(LintIssue("bad-params", str(exc), node.id))
    for i, edge in enumerate(bp.edges):
        for end in (edge.source, edge.target):
            if end not in ids:
                issues.append(LintIssue("unknown-node",
                                        f"edge {i} ({edge.source} -> {edge.target}) names "
                                        f"unknown node {end!r}"))
        for label, source in (("condition", edge.condition), ("transform", edge.transform)):
            if source is not None:
                _lint_expression(issues, source, f"edge {i} {label}", edge.source)
    connected = {e.source for e in bp.edges} | {e.target for e in bp.edges}
    if len(bp.nodes) > 1:
        for node in bp.nodes:
            if node.id not in connected and node.id not in fallback_nodes(bp):
                issues.append(LintIssue("orphan-node", f"node {node.id!r} has no edges",
                                        node.id))
    if all(e.source in ids and e.target in ids for e in bp.edges):
        cycle = find_cycle(bp)
        if cycle:
            issues.append(LintIssue("cycle", "cycle without a loop controller: "
                                    + " -> ".join(cycle)))
        for code, check in (("ts-shape", normalize),
                            ("loop-entry", check_controller_entries)):
            try:
                check(bp)
            except BlueprintError as exc:
                issues.append(LintIssue(code, str(exc)))
    return issues


def _lint_expression(issues: list[LintIssue], source: Any, where: str,
                     node_id: str | None) -> None:
    if not isinstance(source, str):
        issues.append(LintIssue("bad-expression", f"{where} must be a string", node_id))
        return
    try:
        compile_expression(source)
    except ExpressionError as exc:
        issues.append(LintIssue("bad-expression", f"{where}: {exc}", node_id))


__all__ = [
    "LintIssue",
    "fallback_nodes",
    "lint",
    "predecessors",
    "start_nodes",
    "successors",
    "terminal_nodes",
]
