"""What a paused in-memory run keeps, as plain JSON data, so another process can resume it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Awaiting(msgspec.Struct, kw_only=True):
    """An instance paused by wait, durable sleep, or a subflow that is itself awaiting."""

    node_id: str
    iteration: int
    kind: str
    wake_at: datetime | None = None
    child: dict[str, Any] | None = None


class PausedState(msgspec.Struct, kw_only=True):
    """`WorkflowResult.state` of an awaiting run: its bookkeeping (`Book.to_dict`), the
    awaiting instances, and whether sleeps are durable."""

    book: dict[str, Any] = msgspec.field(default_factory=dict)
    awaiting: list[Awaiting] = msgspec.field(default_factory=list)
    durable_timers: bool = False


__all__ = ["Awaiting", "PausedState"]
