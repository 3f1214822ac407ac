"""What a run returns: its status, its final context and its errors, all JSON round-trippable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, cast

import msgspec

RunStatus = Literal["completed", "failed", "awaiting", "cancelled", "stalled"]


def utc_now() -> datetime:
    return datetime.now(UTC)


class WorkflowError(msgspec.Struct, frozen=True, kw_only=True):
    """One node failure. `type` is the exception class name, e.g. "NodeTimeoutError"."""

    node_id: str
    message: str
    type: str
    attempt: int = 0
    timestamp: datetime = msgspec.field(default_factory=utc_now)


class WorkflowResult(msgspec.Struct, kw_only=True):
    """The outcome of `run` or `resume`. `context` is always present, also for failed runs.

    `wake_at` maps each awaiting durable sleep to the time it is due.
    `state` is the engine's private bookkeeping that `resume` needs (which edges resolved, which
    nodes finished); it is JSON like the rest, so a result can be resumed in another process.
    """

    run_id: str
    status: RunStatus
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    errors: list[WorkflowError] = msgspec.field(default_factory=list)
    awaiting: list[str] = msgspec.field(default_factory=list)
    wake_at: dict[str, datetime] = msgspec.field(default_factory=dict)
    blueprint_id: str = ""
    state: dict[str, Any] = msgspec.field(default_factory=dict)

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> WorkflowResult:
        return msgspec.json.decode(data, type=cls)


def result_of(run_id: str, status: str, blueprint_id: str, context: Mapping[str, bytes],
              errors: Sequence[bytes], awaiting: Sequence[str]) -> WorkflowResult:
    """A distributed run's result, built from the facts a store keeps: its status, its
    context and errors as stored JSON values, its awaiting node ids."""
    decode = msgspec.json.decode
    return WorkflowResult(
        run_id=run_id, status=cast(RunStatus, status), blueprint_id=blueprint_id,
        context={key: decode(raw) for key, raw in context.items()},
        errors=[decode(raw, type=WorkflowError) for raw in errors], awaiting=list(awaiting))


__all__ = ["RunStatus", "WorkflowError", "WorkflowResult", "result_of", "utc_now"]
