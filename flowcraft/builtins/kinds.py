"""The names and parameters of the built-in node kinds, and duration parsing."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import msgspec

from flowcraft.errors import BlueprintError

LOOP_CONTROLLER = "loop-controller"
BATCH = "batch"
SLEEP = "sleep"
WAIT = "wait"
SUBFLOW = "subflow"
BUILTIN_KINDS = frozenset({LOOP_CONTROLLER, BATCH, SLEEP, WAIT, SUBFLOW})

_UNITS_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0, "d": 86_400_000.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: Any) -> float:
    """Milliseconds from a number (ms) or "500ms" / "5s" / "2m" / "1h" / "1d"."""
    if isinstance(value, bool) or value is None:
        raise BlueprintError(f"invalid duration {value!r}: expected ms or a string like '5s'")
    if isinstance(value, int | float):
        if value < 0 or value != value or value == float("inf"):
            raise BlueprintError(f"invalid duration {value!r}: must be a finite number >= 0")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS_MS[match.group(2) or "ms"]
    raise BlueprintError(f"invalid duration {value!r}: expected ms or '500ms'/'5s'/'2m'/'1h'/'1d'")


class Suspended(msgspec.Struct, frozen=True):
    """Returned (as a node output) by wait and durable sleep: the instance awaits a resume."""

    kind: str
    wake_at: datetime | None = None
    child: dict[str, Any] | None = None


class Handoff(msgspec.Struct, frozen=True):
    """Returned (as a node output) by batch and subflow when the host handed the work to the
    queue: the instance stays open and is completed when its items or child run end."""


HANDOFF = Handoff()

__all__ = [
    "BATCH",
    "BUILTIN_KINDS",
    "HANDOFF",
    "LOOP_CONTROLLER",
    "SLEEP",
    "SUBFLOW",
    "WAIT",
    "Handoff",
    "Suspended",
    "parse_duration",
]
