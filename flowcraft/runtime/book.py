"""The scheduling rules of one run, pure and synchronous: joins, dead paths, loops, firing.

`Book` is the one Python implementation of the engine's bookkeeping. The in-memory runtime
keeps one per run; the in-memory coordination store (`flowcraft.distributed.memory`) keeps one
per stored run; the Redis Lua scripts of `flowcraft_arq` are its only other copy, held equal by
a property test. It knows nothing of node code, contexts or time: it is told which edges a
finished instance took (with the value each carries) and answers which instances became ready
and which were skipped.

Iterations: every instance is `(node index, iteration)`. A loop's first pass runs at the
iteration it was entered with (its *entry*); each `continue` allocates a fresh run-wide
iteration id whose parent is `(controller, entry)`, so the loop's exit edges continue at the
entry and a nested loop re-entered by an outer pass starts counting from zero again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from flowcraft.runtime.spec import ANY, CONTROLLER, FALLBACK_ONLY, GraphSpec

BACK, EXIT = 1, 2  # edge kinds (see runtime/graph.py)

V = TypeVar("V")

Merge = Callable[[list[tuple[str, Any]]], Any]
"""Builds a join's input from `(source node id, value)` pairs in edge order."""


class Fired(NamedTuple):
    """An instance that became ready, with its input."""

    node: int
    iteration: int
    input: Any


class Join:
    """Resolutions collected for one instance of a node with several required edges."""

    __slots__ = ("fired", "resolved", "taken")

    def __init__(self) -> None:
        self.resolved = 0
        self.taken: dict[int, Any] = {}
        self.fired = False


class Routed(NamedTuple):
    """What one routing step decided: instances now ready, instances now skipped (in order)."""

    fired: list[Fired]
    skipped: list[tuple[int, int]]


# Build the named tuples from a tuple without the Python-level __new__ (hot path).
_fired: Callable[[tuple[int, int, Any]], Fired] = partial(tuple.__new__, Fired)
_routed: Callable[[tuple[list[Fired], list[tuple[int, int]]]], Routed] = partial(
    tuple.__new__, Routed)


class Book(Generic[V]):
    """Bookkeeping of one run over a `GraphSpec`; values are opaque (objects or JSON bytes)."""

    __slots__ = ("fired", "joins", "loops", "merge", "next_iteration", "parent", "spec")

    def __init__(self, spec: GraphSpec, merge: Merge) -> None:
        self.spec = spec
        self.merge = merge
        self.joins: dict[tuple[int, int], Join] = {}
        self.fired: set[tuple[int, int]] = set()
        self.loops: dict[tuple[int, int], int] = {}
        self.parent: dict[int, tuple[int, int]] = {}
        self.next_iteration = 0

    # -- loops ------------------------------------------------------------------------------

    def entry_of(self, controller: int, iteration: int) -> int:
        """The iteration at which `controller`'s loop was entered, seen from `iteration`."""
        parent = self.parent.get(iteration)
        if parent is not None and parent[0] == controller:
            return parent[1]
        return iteration

    def loop_count(self, controller: int, iteration: int) -> int:
        """How many times the loop of `controller` continued since it was entered."""
        return self.loops.get((controller, self.entry_of(controller, iteration)), 0)

    # -- firing -----------------------------------------------------------------------------

    def start(self, value: V) -> list[Fired]:
        """The start instances of a new run, each with input `value`."""
        fired: list[Fired] = []
        for node in self.spec.start:
            self._fire(node, 0, value, fired)
        return fired

    def route(self, node: int, iteration: int,
              decisions: Sequence[tuple[int, bool, V]]) -> Routed:
        """Record the edge decisions `(edge index, taken, value)` of a finished instance.

        A loop controller passes only its BACK edges (continue: they resolve at a fresh
        iteration) or only its EXIT edges (break: they resolve at the loop's entry).
        """
        fired: list[Fired] = []
        skips: list[tuple[int, int]] = []
        edges = self.spec.edges
        resolve = self._resolve
        fresh = -1
        for edge_index, taken, value in decisions:
            kind = edges[edge_index].kind
            if kind == BACK:
                if fresh < 0:
                    fresh = self._fresh(node, iteration)
                resolve(edge_index, fresh, taken, value, fired, skips)
            elif kind == EXIT:
                resolve(edge_index, self.entry_of(node, iteration), taken, value, fired, skips)
            else:
                resolve(edge_index, iteration, taken, value, fired, skips)
        return _routed((fired, self._propagate(skips, fired) if skips else []))

    def stalled(self) -> bool:
        """A join waits for edges that will never resolve (only possible on bad wiring)."""
        return bool(self.joins) and any(not j.fired for j in self.joins.values())

    def _fresh(self, controller: int, iteration: int) -> int:
        entry = self.entry_of(controller, iteration)
        self.next_iteration += 1
        fresh = self.next_iteration
        self.parent[fresh] = (controller, entry)
        key = (controller, entry)
        self.loops[key] = self.loops.get(key, 0) + 1
        return fresh

    def _fire(self, node: int, iteration: int, value: Any, fired: list[Fired]) -> None:
        key = (node, iteration)
        if key in self.fired:
            return
        self.fired.add(key)
        fired.append(_fired((node, iteration, value)))

    def _resolve(self, edge_index: int, iteration: int, taken: bool, value: Any,
                 fired: list[Fired], skips: list[tuple[int, int]]) -> None:
        spec = self.spec
        edge = spec.edges[edge_index]
        target_index = edge.target
        target = spec.nodes[target_index]
        if target.flags & FALLBACK_ONLY:
            return
        required = target.back_in if edge.kind == BACK else target.forward_in
        if len(required) == 1:
            key = (target_index, iteration)
            if not taken:
                skips.append(key)
            elif key not in self.fired:  # what _fire does, inline on the hot path
                self.fired.add(key)
                fired.append(_fired((target_index, iteration, value)))
            return
        key = (target_index, iteration)
        join = self.joins.get(key)
        if join is None:
            join = self.joins[key] = Join()
        join.resolved += 1
        is_any = target.flags & ANY
        if taken:
            join.taken[edge_index] = value
            if is_any and not join.fired:
                join.fired = True
                source_id = spec.nodes[edge.source].id
                self._fire(target_index, iteration, self.merge([(source_id, value)]), fired)
        if join.resolved < len(required):
            return
        del self.joins[key]
        if is_any:
            if not join.fired:
                skips.append(key)
        elif join.taken:
            parts = [(spec.nodes[spec.edges[e].source].id, join.taken[e])
                     for e in sorted(join.taken)]
            self._fire(target_index, iteration, self.merge(parts), fired)
        else:
            skips.append(key)

    def _propagate(self, skips: list[tuple[int, int]], fired: list[Fired]) -> list[tuple[int, int]]:
        """Dead-path elimination: a skipped instance resolves its outgoing edges as skipped."""
        spec = self.spec
        skipped: list[tuple[int, int]] = []
        while skips:
            node_index, iteration = skips.pop()
            skipped.append((node_index, iteration))
            node = spec.nodes[node_index]
            controller = node.flags & CONTROLLER
            for edge_index in node.out:
                kind = spec.edges[edge_index].kind
                if kind == EXIT:
                    self._resolve(edge_index, self.entry_of(node_index, iteration), False, None,
                                  fired, skips)
                elif not controller:
                    self._resolve(edge_index, iteration, False, None, fired, skips)
        return skipped

    # -- serialised form (a paused in-memory run) -------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = _BookData(
            joins=[_JoinData(n, it, j.resolved, j.fired, sorted(j.taken.items()))
                   for (n, it), j in self.joins.items()],
            fired=sorted(self.fired),
            loops=[(c, e, n) for (c, e), n in self.loops.items()],
            parent=[(it, c, e) for it, (c, e) in sorted(self.parent.items())],
            next_iteration=self.next_iteration)
        plain: dict[str, Any] = msgspec.to_builtins(data)
        return plain

    def load(self, raw: dict[str, Any]) -> None:
        data = msgspec.convert(raw, _BookData, strict=False)
        for jd in data.joins:
            join = Join()
            join.resolved, join.fired = jd.resolved, jd.fired
            join.taken = dict(jd.taken)
            self.joins[(jd.node, jd.iteration)] = join
        self.fired = {(n, it) for n, it in data.fired}
        self.loops = {(c, e): n for c, e, n in data.loops}
        self.parent = {it: (c, e) for it, c, e in data.parent}
        self.next_iteration = data.next_iteration


class _JoinData(msgspec.Struct, array_like=True):
    node: int
    iteration: int
    resolved: int
    fired: bool
    taken: list[tuple[int, Any]]


class _BookData(msgspec.Struct, kw_only=True):
    joins: list[_JoinData] = msgspec.field(default_factory=list)
    fired: list[tuple[int, int]] = msgspec.field(default_factory=list)
    loops: list[tuple[int, int, int]] = msgspec.field(default_factory=list)
    parent: list[tuple[int, int, int]] = msgspec.field(default_factory=list)
    next_iteration: int = 0


__all__ = ["BACK", "EXIT", "Book", "Fired", "Join", "Merge", "Routed"]
