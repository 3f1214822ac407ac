"""A persistent event log: events as JSON lines, for `flowcraft inspect` and for replay."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import msgspec

from flowcraft.errors import FlowcraftError
from flowcraft.events import (
    Event,
    NodeErrorEvent,
    NodeFinish,
    NodeRetry,
    NodeSkipped,
    NodeStart,
    WorkflowPause,
    decode_event,
    encode_event,
)


class JsonlEventStore:
    """An event bus that appends each event to a file as one JSON line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[bytes] | None = None

    async def emit(self, event: Event) -> None:
        if self._file is None:
            self._file = self.path.open("ab")
        self._file.write(encode_event(event) + b"\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> JsonlEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def read(path: str | Path) -> list[Event]:
        """All events of a log; a malformed line raises FlowcraftError naming its number."""
        events: list[Event] = []
        with Path(path).open("rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    events.append(decode_event(line))
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise FlowcraftError(f"{path}:{number}: not an event: {exc}") from None
        return events


class NodeSummary(msgspec.Struct):
    """One row of `flowcraft inspect`: a node's last status and its totals over the log."""

    node_id: str
    status: str = "pending"
    runs: int = 0
    attempts: int = 0
    ms: float = 0.0


def summarize(events: list[Event]) -> list[NodeSummary]:
    """Per-node rows in first-seen order: started/finished/failed/skipped/awaiting."""
    rows: dict[str, NodeSummary] = {}
    started: dict[str, float] = {}

    def row(node_id: str) -> NodeSummary:
        if node_id not in rows:
            rows[node_id] = NodeSummary(node_id)
        return rows[node_id]

    for event in events:
        if isinstance(event, NodeStart):
            r = row(event.node_id)
            r.status, r.runs, r.attempts = "running", r.runs + 1, r.attempts + 1
            started[event.node_id] = event.timestamp.timestamp()
        elif isinstance(event, NodeRetry):
            row(event.node_id).attempts += 1
        elif isinstance(event, NodeFinish | NodeErrorEvent):
            r = row(event.node_id)
            r.status = "finished" if isinstance(event, NodeFinish) else "failed"
            begin = started.pop(event.node_id, None)
            if begin is not None:
                r.ms += (event.timestamp.timestamp() - begin) * 1000.0
        elif isinstance(event, NodeSkipped):
            row(event.node_id).status = "skipped"
        elif isinstance(event, WorkflowPause):
            for node_id in event.awaiting:
                row(node_id).status = "awaiting"
    return list(rows.values())


__all__ = ["JsonlEventStore", "NodeSummary", "summarize"]
