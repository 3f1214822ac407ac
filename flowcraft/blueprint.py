"""The blueprint: a workflow as plain, immutable, JSON-compatible data.

JSON keys are camelCase exactly as TS Flowcraft writes them, so its exported blueprints load
unchanged; Python attributes are snake_case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from flowcraft.builtins.kinds import BATCH, LOOP_CONTROLLER, SLEEP, SUBFLOW, parse_duration
from flowcraft.errors import BlueprintError, ExpressionError
from flowcraft.expressions import compile_expression

JoinStrategy = Literal["all", "any"]


class NodeConfig(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """Per-node execution policy. `retry_delay` and `timeout` are milliseconds."""

    max_retries: int = 1
    retry_delay: float = 0
    backoff: float = 2.0
    timeout: float | None = None
    fallback: str | None = None
    join_strategy: JoinStrategy = "all"


class NodeDefinition(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One node: which implementation it `uses`, with what params and input mapping."""

    id: str
    uses: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    inputs: str | dict[str, str] | None = None
    config: NodeConfig = NodeConfig()


class EdgeDefinition(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """A directed edge, optionally routed by an action and/or a condition expression."""

    source: str
    target: str
    action: str | None = None
    condition: str | None = None
    transform: str | None = None


class WorkflowBlueprint(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """A whole workflow. `metadata["version"]` drives version checks in distributed mode."""

    id: str
    nodes: tuple[NodeDefinition, ...] = ()
    edges: tuple[EdgeDefinition, ...] = ()
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    def node(self, node_id: str) -> NodeDefinition:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    @property
    def version(self) -> str | None:
        version = self.metadata.get("version")
        return None if version is None else str(version)




def _known_keys(struct: type[msgspec.Struct]) -> frozenset[str]:
    return frozenset(f.encode_name for f in msgspec.structs.fields(struct))


def _check_unknown_keys(data: Any) -> None:
    """Strict mode: every key must be a field the contract names."""
    if not isinstance(data, Mapping):
        return
    _reject_extra(data, WorkflowBlueprint, "$")
    for i, node in enumerate(data.get("nodes") or ()):
        if isinstance(node, Mapping):
            _reject_extra(node, NodeDefinition, f"$.nodes[{i}]")
            if isinstance(node.get("config"), Mapping):
                _reject_extra(node["config"], NodeConfig, f"$.nodes[{i}].config")
    for i, edge in enumerate(data.get("edges") or ()):
        if isinstance(edge, Mapping):
            _reject_extra(edge, EdgeDefinition, f"$.edges[{i}]")


def _reject_extra(obj: Mapping[str, Any], struct: type[msgspec.Struct], path: str) -> None:
    extra = sorted(set(obj) - _known_keys(struct))
    if extra:
        raise BlueprintError(f"unknown field {extra[0]!r} at `{path}` (strict mode)")


def load_blueprint(data: bytes | str | Mapping[str, Any] | WorkflowBlueprint, *,
                   strict: bool = False) -> WorkflowBlueprint:
    """Decode and validate a blueprint; raise BlueprintError naming the offending path."""
    if isinstance(data, WorkflowBlueprint):
        validate_blueprint(data)
        return data
    raw: Any
    if isinstance(data, bytes | str):
        try:
            raw = msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise BlueprintError(f"blueprint is not valid JSON: {exc}") from None
        except RecursionError:
            raise BlueprintError("blueprint JSON is nested too deeply") from None
    else:
        raw = data
    if not isinstance(raw, Mapping):
        raise BlueprintError(f"blueprint must be a JSON object at `$`, got {type(raw).__name__}")
    if strict:
        _check_unknown_keys(raw)
    try:
        blueprint = msgspec.convert(raw, WorkflowBlueprint, strict=True)
    except msgspec.ValidationError as exc:
        raise BlueprintError(f"invalid blueprint: {exc}") from None
    except RecursionError:
        raise BlueprintError("blueprint is nested too deeply") from None
    validate_blueprint(blueprint)
    return blueprint


def _check_finite(value: Any, path: str) -> None:
    """JSON has no infinity or NaN (msgspec would write null), so a blueprint holding one
    would not survive `to_json`; reject it where it loads."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise BlueprintError(f"non-finite number {item!r} at `{where}` (not valid JSON)")
        if isinstance(item, dict):
            stack.extend((v, f"{where}.{k}") for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{where}[{n}]") for n, v in enumerate(item))


def validate_blueprint(blueprint: WorkflowBlueprint) -> None:
    """Structural checks that a schema cannot express; each error names the offending path."""
    _check_finite(blueprint.metadata, "$.metadata")
    ids: set[str] = set()
    for i, node in enumerate(blueprint.nodes):
        path = f"$.nodes[{i}]"
        _check_finite(node.params, f"{path}.params")
        _check_finite(msgspec.structs.astuple(node.config), f"{path}.config")
        if not node.id:
            raise BlueprintError(f"empty node id at `{path}.id`")
        if node.id in ids:
            raise BlueprintError(f"duplicate node id {node.id!r} at `{path}.id`")
        ids.add(node.id)
        cfg = node.config
        if cfg.max_retries < 1:
            raise BlueprintError(
                f"maxRetries must be >= 1 (total attempts), got {cfg.max_retries} "
                f"at `{path}.config.maxRetries` (node {node.id!r})")
        if cfg.retry_delay < 0:
            raise BlueprintError(f"negative retryDelay at `{path}.config.retryDelay` "
                                 f"(node {node.id!r})")
        if cfg.backoff < 0:
            raise BlueprintError(f"negative backoff at `{path}.config.backoff` (node {node.id!r})")
        if cfg.timeout is not None and cfg.timeout <= 0:
            raise BlueprintError(f"timeout must be > 0 ms at `{path}.config.timeout` "
                                 f"(node {node.id!r})")
        check_builtin_params(node, path)
    for i, node in enumerate(blueprint.nodes):
        fallback = node.config.fallback
        if fallback is not None and (fallback not in ids or fallback == node.id):
            raise BlueprintError(f"fallback {fallback!r} of node {node.id!r} is not another node "
                                 f"of the blueprint at `$.nodes[{i}].config.fallback`")
    for i, edge in enumerate(blueprint.edges):
        for end in ("source", "target"):
            if getattr(edge, end) not in ids:
                raise BlueprintError(f"edge {end} {getattr(edge, end)!r} is not a node "
                                     f"at `$.edges[{i}].{end}`")
        for field in ("condition", "transform"):
            source = getattr(edge, field)
            if source is not None:
                _check_expression(source, f"$.edges[{i}].{field}")
    cycle = find_cycle(blueprint)
    if cycle:
        raise BlueprintError("cycle without a loop controller: " + " -> ".join(cycle))
    # TS shapes (batch pairs, built-in class names, loops entered through the controller):
    # imported here because interop builds on this module.
    from flowcraft.interop import check_controller_entries, normalize

    normalize(blueprint)
    check_controller_entries(blueprint)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_builtin_params(node: NodeDefinition, path: str) -> None:
    """Built-in kinds carry their settings in `params`; check them where the blueprint loads."""
    params = node.params
    where = f"`{path}.params` (node {node.id!r})"
    if node.uses == LOOP_CONTROLLER:
        condition = params.get("condition")
        if not isinstance(condition, str):
            raise BlueprintError(f"loop controller needs a string condition at {where}")
        _check_expression(condition, f"{path}.params.condition")
        if "maxIterations" in params and not _positive_int(params["maxIterations"]):
            raise BlueprintError(f"maxIterations must be an integer >= 1 at {where}")
    elif node.uses == SLEEP:
        try:
            parse_duration(params.get("duration"))
        except BlueprintError as exc:
            raise BlueprintError(f"{exc} at {where}") from None
    elif node.uses == SUBFLOW:
        if not isinstance(params.get("blueprintId"), str):
            raise BlueprintError(f"subflow needs a string blueprintId at {where}")
        for key in ("inputs", "outputs"):
            mapping = params.get(key, {})
            if not isinstance(mapping, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
                raise BlueprintError(f"subflow {key} must map strings to strings at {where}")
    elif node.uses == BATCH:
        if not isinstance(params.get("worker"), str):
            raise BlueprintError(f"batch needs a string worker (a uses key) at {where}")
        if not isinstance(params.get("inputKey"), str):
            raise BlueprintError(f"batch needs a string inputKey at {where}")
        concurrency = params.get("concurrency")
        if concurrency is not None and not _positive_int(concurrency):
            raise BlueprintError(f"batch concurrency must be an integer >= 1 at {where}")


def _check_expression(source: str, path: str) -> None:
    try:
        compile_expression(source)
    except ExpressionError as exc:
        raise ExpressionError(f"{exc} at `{path}`") from None


def find_cycle(blueprint: WorkflowBlueprint) -> list[str]:
    """A cycle that does not pass through a loop controller, as a node path; [] if none."""
    controllers = {n.id for n in blueprint.nodes if n.uses == LOOP_CONTROLLER}
    successors: dict[str, list[str]] = {n.id: [] for n in blueprint.nodes}
    for edge in blueprint.edges:
        if edge.source not in controllers and edge.target not in controllers:
            successors.setdefault(edge.source, []).append(edge.target)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = finished
    for root in successors:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            nexts = successors.get(node, [])
            if i < len(nexts):
                stack[-1] = (node, i + 1)
                nxt = nexts[i]
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt):], nxt]
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return []


__all__ = [
    "EdgeDefinition",
    "JoinStrategy",
    "NodeConfig",
    "NodeDefinition",
    "WorkflowBlueprint",
    "check_builtin_params",
    "find_cycle",
    "load_blueprint",
    "validate_blueprint",
]
