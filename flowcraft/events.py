"""Lifecycle events: msgspec Structs tagged by `type`, delivered to any `emit`-able bus.

Events are built only when a bus is attached, so an unobserved run pays nothing for them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import msgspec

from flowcraft.result import RunStatus, WorkflowError, utc_now


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of all events; `type` is the event name, e.g. "node:finish"."""

    run_id: str
    blueprint_id: str
    timestamp: datetime = msgspec.field(default_factory=utc_now)

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


class WorkflowStart(Event, frozen=True, kw_only=True, tag="workflow:start"):
    context: dict[str, Any] = msgspec.field(default_factory=dict)


class WorkflowFinish(Event, frozen=True, kw_only=True, tag="workflow:finish"):
    status: RunStatus
    errors: list[WorkflowError] = msgspec.field(default_factory=list)


class WorkflowPause(Event, frozen=True, kw_only=True, tag="workflow:pause"):
    awaiting: list[str] = msgspec.field(default_factory=list)


class WorkflowResume(Event, frozen=True, kw_only=True, tag="workflow:resume"):
    node_id: str


class NodeEvent(Event, frozen=True, kw_only=True):
    node_id: str
    iteration: int = 0


class NodeStart(NodeEvent, frozen=True, kw_only=True, tag="node:start"):
    input: Any = None


class NodeFinish(NodeEvent, frozen=True, kw_only=True, tag="node:finish"):
    output: Any = None
    action: str | None = None


class NodeErrorEvent(NodeEvent, frozen=True, kw_only=True, tag="node:error"):
    error: WorkflowError


class NodeRetry(NodeEvent, frozen=True, kw_only=True, tag="node:retry"):
    attempt: int
    message: str = ""


class NodeFallback(NodeEvent, frozen=True, kw_only=True, tag="node:fallback"):
    fallback: str


class NodeSkipped(NodeEvent, frozen=True, kw_only=True, tag="node:skipped"):
    pass


class EdgeEvaluate(Event, frozen=True, kw_only=True, tag="edge:evaluate"):
    source: str
    target: str
    taken: bool
    action: str | None = None
    condition: str | None = None


class ContextChange(Event, frozen=True, kw_only=True, tag="context:change"):
    key: str
    op: str
    node_id: str | None = None
    iteration: int = 0
    value: Any = None


class BatchStart(NodeEvent, frozen=True, kw_only=True, tag="batch:start"):
    size: int


class BatchFinish(NodeEvent, frozen=True, kw_only=True, tag="batch:finish"):
    size: int


class JobEnqueued(NodeEvent, frozen=True, kw_only=True, tag="job:enqueued"):
    job_id: str = ""


class JobProcessed(NodeEvent, frozen=True, kw_only=True, tag="job:processed"):
    job_id: str = ""


class JobFailed(NodeEvent, frozen=True, kw_only=True, tag="job:failed"):
    job_id: str = ""
    message: str = ""


AnyEvent = (
    WorkflowStart | WorkflowFinish | WorkflowPause | WorkflowResume | NodeStart | NodeFinish
    | NodeErrorEvent | NodeRetry | NodeFallback | NodeSkipped | EdgeEvaluate | ContextChange
    | BatchStart | BatchFinish | JobEnqueued | JobProcessed | JobFailed
)

_event_encoder = msgspec.json.Encoder()
_event_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    return _event_encoder.encode(event)


def decode_event(data: bytes | str) -> Event:
    event: Event = _event_decoder.decode(data)
    return event


@runtime_checkable
class EventBus(Protocol):
    async def emit(self, event: Event) -> None: ...


Emit = Callable[[Event], Awaitable[None]]


def as_emitter(bus: object | None) -> Emit | None:
    """Normalise a bus (an object with `emit`, or a plain/async callable) to one async call."""
    if bus is None:
        return None
    target = getattr(bus, "emit", bus)
    if not callable(target):
        raise TypeError(f"event_bus must have an emit method or be callable, got {bus!r}")
    if inspect.iscoroutinefunction(target):
        emit: Emit = target
        return emit

    async def call(event: Event) -> None:
        outcome = target(event)
        if inspect.isawaitable(outcome):
            await outcome

    return call


class EventRecorder:
    """Collects events in order; the pytest fixtures attach one to every runtime."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, event_type: str) -> list[Any]:
        return [e for e in self.events if e.type == event_type]

    def node_order(self) -> list[str]:
        """Node ids in the order they started."""
        return [e.node_id for e in self.events if isinstance(e, NodeStart)]

    def clear(self) -> None:
        self.events.clear()


class Fact(msgspec.Struct, frozen=True, kw_only=True):
    """What a store script records instead of an event: the event is built here, once."""

    fact: str
    ts: datetime
    status: str = ""
    node_id: str = ""
    iteration: int = 0
    awaiting: list[str] | dict[str, Any] = msgspec.field(default_factory=list)


def event_of_fact(raw: bytes | str, run_id: str, blueprint_id: str,
                  errors: Callable[[], list[WorkflowError]]) -> Event:
    """The event a store fact stands for (`errors` is asked only for a run's finish)."""
    fact = msgspec.json.decode(raw, type=Fact)
    if fact.fact == "skipped":
        return NodeSkipped(run_id=run_id, blueprint_id=blueprint_id, timestamp=fact.ts,
                           node_id=fact.node_id, iteration=fact.iteration)
    if fact.fact == "pause":
        # an empty Lua table encodes as {}: no awaiting ids
        awaiting = fact.awaiting if isinstance(fact.awaiting, list) else []
        return WorkflowPause(run_id=run_id, blueprint_id=blueprint_id, timestamp=fact.ts,
                             awaiting=awaiting)
    if fact.fact == "finish":
        return WorkflowFinish(run_id=run_id, blueprint_id=blueprint_id, timestamp=fact.ts,
                              status=msgspec.convert(fact.status, RunStatus), errors=errors())
    raise ValueError(f"unknown fact {fact.fact!r} in the event log of run {run_id!r}")


__all__ = [
    "AnyEvent", "BatchFinish", "BatchStart", "ContextChange", "EdgeEvaluate", "Emit", "Event",
    "EventBus", "EventRecorder", "JobEnqueued", "JobFailed", "JobProcessed", "NodeErrorEvent",
    "NodeEvent", "NodeFallback", "NodeFinish", "NodeRetry", "NodeSkipped", "NodeStart",
    "WorkflowFinish", "WorkflowPause", "WorkflowResume", "WorkflowStart", "as_emitter",
    "Fact", "decode_event", "encode_event", "event_of_fact",
]
