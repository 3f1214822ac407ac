"""The one place where the dashboard reads Redis' raw run layout (see lua/lib.lua's header).

Everything else in the dashboard works on the small typed views built here, so a change of the
meta hash's field names or instance encodings touches this module only. Reads that have a public
API (`RedisRunStore.meta`, `get_context`, `status`, `result`) go through it; this module only
interprets what those return.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from flowcraft.events import Event, decode_event

ROW_FIELDS = ("status", "blueprint_id", "version", "created", "parent_run")
"""Meta fields one row of the runs table needs (read with one HMGET per run)."""

ACTIVE = frozenset({"running", "awaiting"})
TERMINAL = frozenset({"completed", "failed", "cancelled"})


def text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


class Instance(msgspec.Struct, frozen=True):
    """One execution slot of a node: (node index, iteration[, batch item])."""

    node_index: int
    iteration: int
    item: int
    state: str          # queued | running | completed | failed | cancelled | batch | subflow
    epoch: int = 0
    fired_ms: int = 0
    lease_until_ms: int = 0


class RunRow(msgspec.Struct, frozen=True):
    """What the runs table shows of one run."""

    run_id: str
    status: str
    blueprint_id: str
    version: str
    created_ms: int
    parent_run: str


class RunMeta(msgspec.Struct, frozen=True):
    """A run's meta hash, interpreted."""

    run_id: str
    status: str
    blueprint_id: str
    version: str
    created_ms: int
    parent: tuple[str, int, int] | None
    instances: tuple[Instance, ...]
    awaiting: dict[str, str]            # "n#it" -> node id
    batch_total: dict[str, int]         # "n#it" -> number of items
    batch_left: dict[str, int]          # "n#it" -> items still running

    def latest(self) -> dict[int, Instance]:
        """Per node index, its instance of the highest iteration (items excluded)."""
        out: dict[int, Instance] = {}
        for inst in self.instances:
            if inst.item >= 0:
                continue
            seen = out.get(inst.node_index)
            if seen is None or inst.iteration > seen.iteration:
                out[inst.node_index] = inst
        return out

    def iterations(self) -> dict[int, int]:
        """Per node index, how many iterations it was fired in."""
        counts: dict[int, int] = {}
        for inst in self.instances:
            if inst.item < 0:
                counts[inst.node_index] = counts.get(inst.node_index, 0) + 1
        return counts

    def items(self, node_index: int, iteration: int) -> list[Instance]:
        return [i for i in self.instances
                if i.node_index == node_index and i.iteration == iteration and i.item >= 0]

    def awaiting_at(self, node_index: int, iteration: int) -> bool:
        return f"{node_index}#{iteration}" in self.awaiting

    def awaiting_ids(self) -> list[str]:
        return sorted(set(self.awaiting.values()))


def _int(value: str, default: int = 0) -> int:
    try:
        return int(value)
    except ValueError:
        return default


def _instance(key: str, value: str, now_ms: int) -> Instance | None:
    head, _, item_part = key.partition("/")
    node, sep, iteration = head.partition("#")
    if not sep:
        return None
    n, it = _int(node, -1), _int(iteration, -1)
    if n < 0 or it < 0:
        return None
    item = _int(item_part, -1) if item_part else -1
    kind = value[:1]
    simple = {"D": "completed", "X": "failed", "C": "cancelled", "B": "batch", "S": "subflow",
              "H": "queued"}
    if kind in simple:
        return Instance(n, it, item, simple[kind])
    if kind in ("F", "G"):
        # "F<epoch>|<token>|<lease expiry ms>|<fired ms>|<input>"
        parts = value[1:].split("|", 4)
        if len(parts) < 4:
            return None
        epoch, token, expiry, fired = parts[0], parts[1], _int(parts[2]), _int(parts[3])
        state = "batch" if kind == "G" else "running" if token and expiry > now_ms else "queued"
        return Instance(n, it, item, state, _int(epoch), fired, expiry)
    return None


def parse_meta(run_id: str, raw: Mapping[str, str], now_ms: int | None = None) -> RunMeta | None:
    """Interpret a meta hash (as `RedisRunStore.meta` returns it); None when it is empty."""
    if not raw:
        return None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    instances: list[Instance] = []
    awaiting: dict[str, str] = {}
    total: dict[str, int] = {}
    left: dict[str, int] = {}
    for key, value in raw.items():
        tag, sep, rest = key.partition(":")
        if not sep:
            continue
        if tag == "i":
            inst = _instance(rest, value, now)
            if inst is not None:
                instances.append(inst)
        elif tag == "w":
            awaiting[rest] = value
        elif tag == "bn":
            total[rest] = _int(value)
        elif tag == "b":
            left[rest] = _int(value)
    parent = None
    if raw.get("parent_run"):
        parent = (raw["parent_run"], _int(raw.get("parent_node", "0")),
                  _int(raw.get("parent_it", "0")))
    instances.sort(key=lambda i: (i.node_index, i.iteration, i.item))
    return RunMeta(run_id, raw.get("status", ""), raw.get("blueprint_id", ""),
                   raw.get("version", ""), _int(raw.get("created", "0")), parent,
                   tuple(instances), awaiting, total, left)


def parse_row(run_id: str, values: Sequence[bytes | str | None]) -> RunRow | None:
    """A runs-table row from an HMGET of `ROW_FIELDS`; None when the run's keys are gone."""
    if all(v is None for v in values):
        return None
    status, bp, version, created, parent = (text(v) for v in values)
    return RunRow(run_id, status, bp, version, _int(created), parent)


def stream_ms(entry_id: bytes | str) -> int:
    """The ms timestamp of a stream entry id ("<ms>-<seq>")."""
    return _int(text(entry_id).partition("-")[0])


def decode_entries(entries: Iterable[tuple[Any, Mapping[Any, Any]]]) -> list[Event]:
    """Events of XRANGE entries: each entry holds fields e1..eN (one commit's events)."""
    out: list[Event] = []
    for _entry_id, fields in entries:
        for name in sorted(fields, key=lambda f: _int(text(f)[1:])):
            try:
                out.append(decode_event(fields[name]))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
    return out


__all__ = ["ACTIVE", "ROW_FIELDS", "TERMINAL", "Instance", "RunMeta", "RunRow",
           "decode_entries", "parse_meta", "parse_row", "stream_ms", "text"]
