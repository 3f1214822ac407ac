"""The scheduler's bookkeeping for one run, and its JSON form for `resume` in another process.

Only what `resume` needs survives a pause: open joins, awaiting instances, loop iteration
parents and counters. Everything in it is plain JSON data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Join:
    """Edge resolutions collected for one instance of a node with several required edges."""

    __slots__ = ("fired", "resolved", "taken")

    def __init__(self) -> None:
        self.resolved = 0
        self.taken: dict[int, tuple[str, Any]] = {}
        self.fired = False


class Awaiting(msgspec.Struct, kw_only=True):
    """An instance paused by wait, durable sleep, or a subflow that is itself awaiting."""

    node_id: str
    iteration: int
    kind: str
    wake_at: datetime | None = None
    child: dict[str, Any] | None = None


class _JoinData(msgspec.Struct, array_like=True):
    node: int
    iteration: int
    resolved: int
    fired: bool
    taken: list[tuple[int, str, Any]]


class _StateData(msgspec.Struct, kw_only=True):
    joins: list[_JoinData] = msgspec.field(default_factory=list)
    awaiting: list[Awaiting] = msgspec.field(default_factory=list)
    parent: list[tuple[int, int]] = msgspec.field(default_factory=list)
    loops: list[tuple[int, int, int]] = msgspec.field(default_factory=list)
    next_iteration: int = 0


class RunState:
    """Joins keyed by (node index, iteration); loop parents; awaiting instances by node id."""

    __slots__ = ("awaiting", "joins", "loop_counts", "next_iteration", "parent")

    def __init__(self) -> None:
        self.joins: dict[tuple[int, int], Join] = {}
        self.awaiting: dict[str, Awaiting] = {}
        self.parent: dict[int, int] = {}
        self.loop_counts: dict[tuple[int, int], int] = {}
        self.next_iteration = 0

    def entry_of(self, iteration: int) -> int:
        """The iteration a loop was entered with; exits continue at that iteration."""
        return self.parent.get(iteration, iteration)

    def fresh_iteration(self, current: int) -> int:
        """Allocate the id of a loop's next iteration, remembering where the loop was entered."""
        self.next_iteration += 1
        fresh = self.next_iteration
        self.parent[fresh] = self.entry_of(current)
        return fresh

    def to_dict(self) -> dict[str, Any]:
        data = _StateData(
            joins=[_JoinData(node, it, j.resolved, j.fired,
                             [(edge, src, value) for edge, (src, value) in j.taken.items()])
                   for (node, it), j in self.joins.items()],
            awaiting=list(self.awaiting.values()),
            parent=sorted(self.parent.items()),
            loops=[(c, e, n) for (c, e), n in self.loop_counts.items()],
            next_iteration=self.next_iteration,
        )
        plain: dict[str, Any] = msgspec.to_builtins(data)
        return plain

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunState:
        data = msgspec.convert(raw, _StateData, strict=False)
        state = cls()
        for jd in data.joins:
            join = Join()
            join.resolved, join.fired = jd.resolved, jd.fired
            join.taken = {edge: (src, value) for edge, src, value in jd.taken}
            state.joins[(jd.node, jd.iteration)] = join
        state.awaiting = {a.node_id: a for a in data.awaiting}
        state.parent = dict(data.parent)
        state.loop_counts = {(c, e): n for c, e, n in data.loops}
        state.next_iteration = data.next_iteration
        return state


__all__ = ["Awaiting", "Join", "RunState"]
