"""The fluent `Flow` builder: code in, blueprint (data) plus registry (code) out."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from flowcraft.blueprint import (
    EdgeDefinition,
    JoinStrategy,
    NodeConfig,
    NodeDefinition,
    WorkflowBlueprint,
    load_blueprint,
)
from flowcraft.builtins.kinds import LOOP_CONTROLLER, SLEEP, SUBFLOW, WAIT, parse_duration
from flowcraft.errors import BlueprintError
from flowcraft.interop import BATCH_GATHER, BATCH_SCATTER, GATHER_SUFFIX, SCATTER_SUFFIX
from flowcraft.nodes import Implementation


def uses_key(impl: object, flow_id: str, node_id: str) -> str:
    """A key that is the same in every process: `module:qualname`, or `flow:node` for locals."""
    module = getattr(impl, "__module__", None)
    qualname = getattr(impl, "__qualname__", None)
    is_global = (
        (inspect.isfunction(impl) or inspect.isclass(impl))
        and isinstance(module, str) and isinstance(qualname, str)
        and "<locals>" not in qualname and "<lambda>" not in qualname
    )
    if is_global:
        return f"{module}:{qualname}"
    return f"{flow_id}:{node_id}"


class _Loop(msgspec.Struct, frozen=True):
    start: str
    end: str


class Flow:
    """Builds a WorkflowBlueprint and the registry of implementations it `uses`.

    Loops and batches are written in the shape the TypeScript Flowcraft builder writes and its
    runtime runs (docs/interop.md): a loop's controller is an `any` join whose continue and break
    edges carry `context["<end>"]` as transform, and a batch is a `<id>_scatter` /
    `<id>_gather` node pair that edges drawn to and from the batch id are rewired to.
    """

    def __init__(self, id: str, version: str | None = None) -> None:
        if not isinstance(id, str) or not id:
            raise BlueprintError("a flow needs a non-empty string id")
        self.id = id
        self.version = version
        self._nodes: list[NodeDefinition] = []
        self._edges: list[EdgeDefinition] = []
        self._registry: dict[str, Any] = {}
        self._blueprint: WorkflowBlueprint | None = None
        self._loops: dict[str, _Loop] = {}
        self._batches: dict[str, str] = {}  # batch id -> its output key

    # -- nodes and edges -------------------------------------------------------------------

    def node(
        self,
        id: str,
        impl: Implementation | str,
        *,
        uses: str | None = None,
        params: Mapping[str, Any] | None = None,
        inputs: str | Mapping[str, str] | None = None,
        config: NodeConfig | None = None,
        max_retries: int | None = None,
        retry_delay: float | None = None,
        backoff: float | None = None,
        timeout: float | None = None,
        fallback: str | None = None,
        join: JoinStrategy | None = None,
    ) -> Flow:
        """Add a node. `impl` is a function, a Node subclass, or a `uses` key already known."""
        if isinstance(impl, str):
            key = uses or impl
        else:
            if not callable(impl):
                raise BlueprintError(f"node {id!r}: implementation must be callable, got "
                                     f"{type(impl).__name__}")
            key = uses or uses_key(impl, self.id, id)
            self._register(id, key, impl)
        shortcuts = {
            name: value for name, value in (
                ("max_retries", max_retries), ("retry_delay", retry_delay),
                ("backoff", backoff), ("timeout", timeout), ("fallback", fallback),
                ("join_strategy", join),
            ) if value is not None
        }
        cfg = config or NodeConfig()
        if shortcuts:
            cfg = msgspec.structs.replace(cfg, **shortcuts)
        node = NodeDefinition(id=id, uses=key, params=dict(params or {}),
                              inputs=dict(inputs) if isinstance(inputs, Mapping) else inputs)
        if cfg != node.config:  # the shared default is left out of the JSON, as TS writes it
            node = msgspec.structs.replace(node, config=cfg)
        self._nodes.append(node)
        self._blueprint = None
        return self

    def edge(self, source: str, target: str, *, action: str | None = None,
             condition: str | None = None, transform: str | None = None) -> Flow:
        """Connect two nodes. An edge leaving a loop id is the loop's exit (action "break");
        an edge to or from a batch id connects to its scatter or gather node."""
        self._edges.append(EdgeDefinition(source=source, target=target, action=action,
                                          condition=condition, transform=transform))
        self._blueprint = None
        return self

    # -- built-in constructs ---------------------------------------------------------------

    def loop(self, id: str, *, start: str, end: str, condition: str,
             max_iterations: int = 1000) -> Flow:
        """A do-while loop: after `end`, `condition` (over the context) decides whether `start`
        runs again. Leave the loop with `flow.edge(id, "next")`."""
        if not isinstance(max_iterations, int) or max_iterations < 1:
            raise BlueprintError(f"loop {id!r}: max_iterations must be an integer >= 1")
        self._builtin(id, LOOP_CONTROLLER,
                      {"condition": condition, "maxIterations": max_iterations}, join="any")
        self._loops[id] = _Loop(start, end)
        self._edges.append(EdgeDefinition(source=end, target=id))
        self._edges.append(EdgeDefinition(source=id, target=start, action="continue"))
        return self

    def batch(self, id: str, worker: Implementation | str, *, input_key: str,
              output_key: str | None = None, concurrency: int | None = None,
              uses: str | None = None, config: NodeConfig | None = None,
              max_retries: int | None = None, retry_delay: float | None = None,
              timeout: float | None = None) -> Flow:
        """Run `worker` once per item of the list at `input_key`; outputs, in item order, go to
        `output_key` (default: the batch id). Retry/timeout settings apply per item."""
        if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
            raise BlueprintError(f"batch {id!r}: concurrency must be an integer >= 1 or None")
        if isinstance(worker, str):
            key = worker
        else:
            key = uses or uses_key(worker, self.id, f"{id}.worker")
            self._register(id, key, worker)
        out = output_key or id
        scatter, gather = id + SCATTER_SUFFIX, id + GATHER_SUFFIX
        params: dict[str, Any] = {"workerUsesKey": key, "outputKey": out,
                                  "gatherNodeId": gather}
        if concurrency is not None:
            # not TS's chunkSize: its runtime cannot run more than one chunk
            params["concurrency"] = concurrency
        self.node(scatter, BATCH_SCATTER, params=params, inputs=input_key, config=config,
                  max_retries=max_retries, retry_delay=retry_delay, timeout=timeout)
        self.node(gather, BATCH_GATHER, params={"outputKey": out, "gatherNodeId": gather})
        self._edges.append(EdgeDefinition(source=scatter, target=gather))
        self._batches[id] = out
        return self

    def sleep(self, id: str, *, duration: float | str) -> Flow:
        """Pause this branch: a number of ms or "500ms"/"5s"/"2m"/"1h"/"1d"."""
        try:
            parse_duration(duration)
        except BlueprintError as exc:
            raise BlueprintError(f"sleep {id!r}: {exc}") from None
        return self._builtin(id, SLEEP, {"duration": duration})

    def wait(self, id: str) -> Flow:
        """Pause this branch until `resume(..., node_id=id)` (human in the loop)."""
        return self._builtin(id, WAIT, {})

    def subflow(self, id: str, *, blueprint_id: str, inputs: Mapping[str, str] | None = None,
                outputs: Mapping[str, str] | None = None) -> Flow:
        """Run another registered blueprint as one node. `inputs={child_key: parent_key}`,
        `outputs={parent_key: child_key}`."""
        return self._builtin(id, SUBFLOW, {"blueprintId": blueprint_id,
                                           "inputs": dict(inputs or {}),
                                           "outputs": dict(outputs or {})})

    def _builtin(self, id: str, kind: str, params: dict[str, Any], **config: Any) -> Flow:
        if id in self._batches:
            raise BlueprintError(f"node id {id!r} is already a batch")
        return self.node(id, kind, params=params, **config)

    def _register(self, node_id: str, key: str, impl: object) -> None:
        known = self._registry.get(key)
        if known is not None and known is not impl:
            raise BlueprintError(f"node {node_id!r}: uses key {key!r} already names another "
                                 "implementation; pass uses= to disambiguate")
        self._registry[key] = impl

    # -- outputs ---------------------------------------------------------------------------

    @property
    def registry(self) -> Mapping[str, Any]:
        return self._registry

    def to_blueprint(self) -> WorkflowBlueprint:
        """The validated blueprint; raises BlueprintError on bad wiring. Cached until changed."""
        if self._blueprint is None:
            metadata: dict[str, Any] = {}
            if self.version is not None:
                metadata["version"] = self.version
            nodes, edges = self._ts_shape()
            self._blueprint = load_blueprint(WorkflowBlueprint(
                id=self.id, nodes=nodes, edges=edges, metadata=metadata,
            ))
        return self._blueprint

    def _ts_shape(self) -> tuple[tuple[NodeDefinition, ...], tuple[EdgeDefinition, ...]]:
        """Edges rewired to batch pairs, loop exits marked, loop starts made `any` joins."""
        def into(node_id: str) -> str:
            return node_id + SCATTER_SUFFIX if node_id in self._batches else node_id

        def out_of(node_id: str) -> str:
            return node_id + GATHER_SUFFIX if node_id in self._batches else node_id

        def value_of(node_id: str) -> str:
            # the key holding a node's output in both runtimes (a batch's: its output key)
            return self._batches.get(node_id, node_id)

        edges: list[EdgeDefinition] = []
        for e in self._edges:
            loop = self._loops.get(e.source)
            edge = msgspec.structs.replace(e, source=out_of(e.source), target=into(e.target))
            if loop is not None:
                edge = msgspec.structs.replace(
                    edge, action=edge.action or "break",
                    transform=edge.transform or f'context["{value_of(loop.end)}"]')
            edges.append(edge)
        starts = {into(loop.start): loop_id for loop_id, loop in self._loops.items()}
        nodes: list[NodeDefinition] = []
        for node in self._nodes:
            if node.config.fallback in self._batches:
                node = msgspec.structs.replace(node, config=msgspec.structs.replace(
                    node.config, fallback=into(node.config.fallback)))
            loop_id = starts.get(node.id)
            entries = [e for e in edges if e.target == node.id and e.source != loop_id]
            if loop_id is not None and len(entries) == 1:
                # The TS runtime runs a start node as an `all` join over its entry and the
                # back edge, which never starts; as an `any` join it runs (a one-edge entry
                # is the same join either way here).
                node = msgspec.structs.replace(node, config=msgspec.structs.replace(
                    node.config, join_strategy="any"))
            nodes.append(node)
        return tuple(nodes), tuple(edges)

    def to_mermaid(self) -> str:
        return blueprint_to_mermaid(self.to_blueprint())

    def __repr__(self) -> str:
        return f"Flow({self.id!r}, nodes={len(self._nodes)}, edges={len(self._edges)})"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


_MERMAID_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MERMAID_RESERVED = frozenset({"end", "graph", "subgraph", "flowchart", "style", "class",
                               "classDef", "click", "linkStyle", "direction"})


def _mermaid_name(node_id: str, index: int) -> str:
    """The node id itself where Mermaid accepts it, else a stable synthetic name."""
    if _MERMAID_ID.match(node_id) and node_id not in _MERMAID_RESERVED:
        return node_id
    return f"n{index}_"


def blueprint_to_mermaid(blueprint: WorkflowBlueprint) -> str:
    """A Mermaid `flowchart TD`; labels always show the real node ids."""
    names = {node.id: _mermaid_name(node.id, i) for i, node in enumerate(blueprint.nodes)}
    lines = ["flowchart TD"]
    for node in blueprint.nodes:
        label = _mermaid_text(node.id)
        shape = f'{{"{label}"}}' if node.uses == "loop-controller" else f'["{label}"]'
        lines.append(f"    {names[node.id]}{shape}")
    for edge in blueprint.edges:
        parts = [p for p in (edge.action, edge.condition) if p]
        arrow = f' -- "{_mermaid_text(" | ".join(parts))}" --> ' if parts else " --> "
        lines.append(f"    {names[edge.source]}{arrow}{names[edge.target]}")
    for node in blueprint.nodes:
        if node.config.fallback:
            lines.append(f'    {names[node.id]} -. "fallback" .-> {names[node.config.fallback]}')
    return "\n".join(lines) + "\n"


__all__ = ["Flow", "blueprint_to_mermaid", "uses_key"]
