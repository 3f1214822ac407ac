"""The trace context a node job carries, for tracing middleware (no OpenTelemetry here).

A job payload's `trace` is a W3C carrier (`traceparent`, maybe `tracestate`) plus `due`, the
epoch ms at which the job became due (enqueued, or woken from a durable sleep), for the queue
wait metric. While a worker handles a job, `CURRENT_JOB` holds its `JobTrace`: a tracing
middleware takes its node span's parent from `carrier` and writes `outgoing`, which every job
this job enqueues then carries. A job whose node opens no span (a built-in) passes its own
carrier on. Where no job runs (a client starting a run), `start_carrier` asks each middleware
with a `start_run(run_id, blueprint_id, carrier)` method to fill the start jobs' carrier.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

DUE = "due"


@dataclass(slots=True)
class JobTrace:
    """The job being handled: its incoming carrier, and what its successors will carry."""

    carrier: Mapping[str, str]
    job_id: str = ""
    queue: str = ""
    system: str = "flowcraft"  # the queue technology (messaging.system), e.g. "arq"
    predecessors: tuple[str, ...] = ()
    outgoing: dict[str, str] | None = field(default=None)


CURRENT_JOB: ContextVar[JobTrace | None] = ContextVar("flowcraft_current_job", default=None)


def outgoing_carrier(defer_until_ms: int | None = None) -> dict[str, str]:
    """The carrier for a job enqueued now from the current job ({} when nothing traces)."""
    job = CURRENT_JOB.get()
    if job is None:
        return {}
    base = job.outgoing if job.outgoing is not None else job.carrier
    if not base:
        return {}
    carrier = {key: value for key, value in base.items() if key != DUE}
    carrier[DUE] = str(defer_until_ms or int(time.time() * 1000))
    return carrier


def start_carrier(middleware: Sequence[Any], run_id: str, blueprint_id: str) -> JobTrace | None:
    """A JobTrace whose `outgoing` the middlewares' `start_run` hooks filled (None if none
    has the hook): set it as CURRENT_JOB while the run's start jobs are enqueued."""
    hooks = [m.start_run for m in middleware if hasattr(m, "start_run")]
    if not hooks:
        return None
    carrier: dict[str, str] = {}
    for hook in hooks:
        hook(run_id, blueprint_id, carrier)
    return JobTrace(carrier={}, outgoing=carrier)


__all__ = ["CURRENT_JOB", "DUE", "JobTrace", "outgoing_carrier", "start_carrier"]
