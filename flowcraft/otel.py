"""OpenTelemetry spans and metrics for flowcraft runs (extra `flowcraft-py[otel]`).

flowcraft never imports this module itself, so the core works without opentelemetry; import it
only where you trace. One object does both jobs, so tracing is switched on in one place:

    tracing = TracingMiddleware()
    runtime = FlowRuntime(middleware=[tracing], event_bus=tracing)   # or tracing.chain(my_bus)

As a middleware it wraps every node execution in a span; as an event sink it learns when runs
start and end (the run span, the run counters) and which taken edges made a node ready, so a
node's span is a child of the span of the node that made it ready (the run span for start
nodes) and a join's span links to every predecessor's span. Without the event sink, node spans
are children of whatever span is current where the run was started, and nothing is linked.
Replayed nodes run no middleware, so they get no span.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.trace.status import Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "flowcraft.otel needs the OpenTelemetry API: pip install 'flowcraft-py[otel]'") from exc

from flowcraft.distributed.jobtrace import CURRENT_JOB, DUE, JobTrace
from flowcraft.errors import NodeExecutionError
from flowcraft.events import Emit, Event, as_emitter
from flowcraft.nodes import NodeContext, NodeResult

SCOPE = "flowcraft"
"""Instrumentation scope name of the tracer and the meter."""

_W3C = TraceContextTextMapPropagator()


def _version() -> str:
    from flowcraft import __version__
    return __version__


class _RunTrace:
    """What the tracer remembers about one live run (dropped when the run ends or pauses)."""

    __slots__ = ("context", "done", "flow_id", "live", "origins", "pending", "span")

    def __init__(self, span: Span, flow_id: str) -> None:
        self.span = span
        self.context: Context = trace.set_span_in_context(span)
        self.flow_id = flow_id
        # node id -> span contexts of the predecessors whose taken edges reach it, in arrival
        # order; moved to `origins` when the node starts (so a loop's next iteration is fresh)
        self.pending: dict[str, list[SpanContext]] = {}
        self.origins: dict[str, list[SpanContext]] = {}
        self.done: dict[str, SpanContext] = {}          # node id -> its latest finished span
        self.live: dict[tuple[str, int], Span] = {}     # (node id, iteration) -> open span


class TracingMiddleware:
    """Spans for runs and node executions, plus node and run metrics.

    `tracer_provider` / `meter_provider` default to the global ones (a no-op until an SDK is
    configured). Metrics: `flowcraft.node.duration` (histogram, s), `flowcraft.runs.started`,
    `flowcraft.runs.completed`, `flowcraft.runs.failed` (counters) and, on distributed workers,
    `flowcraft.queue.wait_time` (histogram, s: from enqueue, or from the deferred time, to the
    start of the node).
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        version = _version()
        self.tracer = trace.get_tracer(SCOPE, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, version, meter_provider=meter_provider)
        self.node_duration = meter.create_histogram(
            "flowcraft.node.duration", unit="s",
            description="Duration of one node execution: all attempts and the fallback.")
        self.runs_started = meter.create_counter(
            "flowcraft.runs.started", unit="{run}", description="Runs started.")
        self.runs_completed = meter.create_counter(
            "flowcraft.runs.completed", unit="{run}", description="Runs that completed.")
        self.runs_failed = meter.create_counter(
            "flowcraft.runs.failed", unit="{run}", description="Runs that failed.")
        self.queue_wait = meter.create_histogram(
            "flowcraft.queue.wait_time", unit="s",
            description="Time a node job spent in the queue before a worker started it.")
        self._runs: dict[str, _RunTrace] = {}
        self._job_spans: dict[tuple[str, str, int], Span] = {}  # open spans of worker jobs
        self._handlers: dict[str, Callable[[Any], None]] = {
            "workflow:start": self._on_start, "workflow:resume": self._on_start,
            "workflow:finish": self._on_end, "workflow:pause": self._on_end,
            "node:start": self._on_node_start, "edge:evaluate": self._on_edge,
            "node:retry": self._on_retry, "node:fallback": self._on_fallback,
            "batch:start": self._on_batch_start, "batch:finish": self._on_batch_end,
            "node:error": self._on_batch_end,
        }

    # -- middleware -------------------------------------------------------------------------

    async def around_node(self, ctx: NodeContext, node_id: str,
                          call_next: Callable[[], Awaitable[NodeResult]]) -> NodeResult:
        job = CURRENT_JOB.get()
        if job is not None:
            return await self._around_job(job, ctx, call_next)
        run = self._runs.get(ctx.run_id)
        parent, links = self._placement(run, ctx.node_id, ctx.iteration)
        flow_id = ctx.blueprint_id
        span = self.tracer.start_span(
            f"node {flow_id}.{ctx.node_id}", context=parent, kind=SpanKind.INTERNAL,
            links=links, attributes=_node_attributes(ctx))
        started = time.perf_counter()
        if not span.is_recording():  # no SDK (or not sampled): only the duration metric
            outcome = "error"
            try:
                result = await call_next()
                outcome = "ok"
                return result
            finally:
                self.node_duration.record(time.perf_counter() - started, {
                    "flowcraft.flow_id": flow_id, "flowcraft.node_id": ctx.node_id,
                    "flowcraft.outcome": outcome})
        key = (ctx.node_id, ctx.iteration)
        if run is not None:
            run.live[key] = span
        outcome = "ok"
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                return await call_next()
        except BaseException as exc:
            outcome = "error" if isinstance(exc, Exception) else "cancelled"
            cause = (exc.cause or exc) if isinstance(exc, NodeExecutionError) else exc
            span.record_exception(cause)
            span.set_status(Status(StatusCode.ERROR, f"{type(cause).__name__}: {cause}"))
            raise
        finally:
            if ctx.attempt != 1:  # the start attributes said 1
                span.set_attribute("flowcraft.attempt", ctx.attempt)
            span.end()
            if run is not None:
                run.live.pop(key, None)
                run.done[ctx.node_id] = span.get_span_context()
            self.node_duration.record(time.perf_counter() - started, {
                "flowcraft.flow_id": flow_id, "flowcraft.node_id": ctx.node_id,
                "flowcraft.outcome": outcome})

    async def _around_job(self, job: JobTrace, ctx: NodeContext,
                          call_next: Callable[[], Awaitable[NodeResult]]) -> NodeResult:
        """A node job on a distributed worker: the span's parent is the span that enqueued
        the job (W3C context in the payload); a join links to each predecessor's span, whose
        context the predecessor left in the run context under `_trace.<node>#<iteration>`."""
        flow_id, node = ctx.blueprint_id, ctx.node_id
        due = job.carrier.get(DUE)
        if due is not None and due.isdigit():
            self.queue_wait.record(max(0.0, time.time() - int(due) / 1000.0), {
                "flowcraft.flow_id": flow_id, "flowcraft.node_id": node,
                "messaging.destination.name": job.queue})
        links: list[Link] = []
        if len(job.predecessors) > 1:
            for predecessor in job.predecessors:
                found = _span_context(await ctx.context.get(trace_key(predecessor,
                                                                      ctx.iteration)))
                if found is not None:
                    links.append(Link(found))
        attributes = _node_attributes(ctx)
        attributes.update({"messaging.system": job.system,
                           "messaging.operation.type": "process",
                           "messaging.operation.name": "process",
                           "messaging.destination.name": job.queue,
                           "messaging.message.id": job.job_id})
        span = self.tracer.start_span(f"node {flow_id}.{node}",
                                      context=extract_context(job.carrier),
                                      kind=SpanKind.CONSUMER, links=links, attributes=attributes)
        started = time.perf_counter()
        outcome = "error"
        key = (ctx.run_id, node, ctx.iteration)
        self._job_spans[key] = span  # for node:retry / node:fallback from the worker's bus
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                result = await call_next()
            outcome = "ok"
        except BaseException as exc:
            cause = (exc.cause or exc) if isinstance(exc, NodeExecutionError) else exc
            span.record_exception(cause)
            span.set_status(Status(StatusCode.ERROR, f"{type(cause).__name__}: {cause}"))
            raise
        finally:
            self._job_spans.pop(key, None)
            if ctx.attempt != 1:  # the start attributes said 1
                span.set_attribute("flowcraft.attempt", ctx.attempt)
            span.end()
            self.node_duration.record(time.perf_counter() - started, {
                "flowcraft.flow_id": flow_id, "flowcraft.node_id": node,
                "flowcraft.outcome": outcome})
        if span.get_span_context().is_valid:
            job.outgoing = inject_context({}, trace.set_span_in_context(span))
            if "[" not in node:  # batch items are never a join's predecessor
                await ctx.context.set(trace_key(node, ctx.iteration),
                                      job.outgoing["traceparent"])
        return result

    def start_run(self, run_id: str, blueprint_id: str, carrier: dict[str, str]) -> None:
        """Distributed start hook (a client, or a worker starting a subflow): a producer span
        `start <flow>` under the current span, whose context the run's start jobs carry."""
        job = CURRENT_JOB.get()  # a subflow's child run: under the job that starts it
        span = self.tracer.start_span(
            f"start {blueprint_id}", kind=SpanKind.PRODUCER,
            context=extract_context(job.carrier) if job is not None else None,
            attributes={"flowcraft.run_id": run_id, "flowcraft.flow_id": blueprint_id,
                        "messaging.operation.type": "send", "messaging.operation.name": "send"})
        span.end()
        inject_context(carrier, trace.set_span_in_context(span))
        self.runs_started.add(1, {"flowcraft.flow_id": blueprint_id})

    def _placement(self, run: _RunTrace | None, node_id: str,
                   iteration: int) -> tuple[Context | None, list[Link]]:
        """The parent context and links of a node span (see the module docstring)."""
        if run is None:
            return None, []
        origins = run.origins.pop(node_id, None)
        if origins:
            links = [Link(o) for o in origins] if len(origins) > 1 else []
            return trace.set_span_in_context(NonRecordingSpan(origins[-1])), links
        base, bracket, _ = node_id.partition("[")
        batch = run.live.get((base, iteration)) if bracket else None
        if batch is not None:  # a batch item: child of its batch's span
            return trace.set_span_in_context(batch), []
        return run.context, []

    # -- event sink -------------------------------------------------------------------------

    async def emit(self, event: Event) -> None:
        handler = self._handlers.get(event.type)
        if handler is not None:
            handler(event)

    def chain(self, bus: Any) -> _Chained:
        """An event bus that feeds this tracer and then `bus` (an object with `emit`, or a
        callable): for runtimes that already have an event bus."""
        return _Chained(self, as_emitter(bus))

    def _on_start(self, event: Any) -> None:
        if CURRENT_JOB.get() is not None:  # a worker starting a subflow: start_run traced it
            return
        run_id, flow_id = event.run_id, event.blueprint_id
        resumed = event.type == "workflow:resume"
        parent = self._child_run_parent(run_id)
        attributes: dict[str, Any] = {"flowcraft.run_id": run_id, "flowcraft.flow_id": flow_id}
        if resumed:
            attributes["flowcraft.resumed_node_id"] = event.node_id
        span = self.tracer.start_span(f"run {flow_id}", context=parent, kind=SpanKind.INTERNAL,
                                      attributes=attributes)
        previous = self._runs.get(run_id)
        if previous is not None:  # a run id reused while the old trace was open
            previous.span.end()
        self._runs[run_id] = _RunTrace(span, flow_id)
        if not resumed:
            self.runs_started.add(1, {"flowcraft.flow_id": flow_id})

    def _child_run_parent(self, run_id: str) -> Context | None:
        """A subflow's run id is `<parent run>/<node>#<iteration>`: put its run span under
        what started the subflow node in the parent run."""
        parent_id, slash, rest = run_id.rpartition("/")
        parent = self._runs.get(parent_id) if slash else None
        if parent is None:
            return None
        origins = parent.origins.get(rest.partition("#")[0])
        if origins:
            return trace.set_span_in_context(NonRecordingSpan(origins[-1]))
        return parent.context

    def _on_end(self, event: Any) -> None:
        run = self._runs.pop(event.run_id, None)
        if run is None:
            if event.type == "workflow:finish" and CURRENT_JOB.get() is not None:
                self._count_end(event.status, event.blueprint_id)  # a worker ended the run
            return
        span = run.span
        for open_span in run.live.values():  # a batch cut short by cancellation
            open_span.end()
        if event.type == "workflow:pause":
            span.set_attribute("flowcraft.status", "awaiting")
            span.set_attribute("flowcraft.awaiting", list(event.awaiting))
        else:
            status = event.status
            span.set_attribute("flowcraft.status", status)
            self._count_end(status, run.flow_id)
            if status != "completed":
                detail = "; ".join(f"{e.node_id}: {e.message}" for e in event.errors)
                span.set_status(Status(StatusCode.ERROR, f"run {status}: {detail}".rstrip(": ")))
        span.end()

    def _count_end(self, status: str, flow_id: str) -> None:
        if status == "completed":
            self.runs_completed.add(1, {"flowcraft.flow_id": flow_id})
        elif status == "failed":
            self.runs_failed.add(1, {"flowcraft.flow_id": flow_id})

    def _on_node_start(self, event: Any) -> None:
        run = self._runs.get(event.run_id)
        if run is not None:
            run.origins[event.node_id] = run.pending.pop(event.node_id, [])
            run.done.pop(event.node_id, None)

    def _on_edge(self, event: Any) -> None:
        run = self._runs.get(event.run_id)
        if run is None or not event.taken:
            return
        finished = run.done.get(event.source)
        # a node without a span of its own (built-ins, replayed nodes) passes its origins on
        sources = [finished] if finished is not None else run.origins.get(event.source, [])
        run.pending.setdefault(event.target, []).extend(sources)

    def _on_retry(self, event: Any) -> None:
        span = self._live(event)
        if span is not None:
            span.add_event("flowcraft.node.retry", {"flowcraft.attempt": event.attempt,
                                                    "exception.message": event.message})

    def _on_fallback(self, event: Any) -> None:
        span = self._live(event)
        if span is not None:
            span.add_event("flowcraft.node.fallback", {"flowcraft.fallback": event.fallback})

    def _live(self, event: Any) -> Span | None:
        run = self._runs.get(event.run_id)
        if run is None:
            return self._job_spans.get((event.run_id, event.node_id, event.iteration))
        return run.live.get((event.node_id, event.iteration))

    def _on_batch_start(self, event: Any) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        parent, links = self._placement(run, event.node_id, event.iteration)
        attributes = {"flowcraft.run_id": event.run_id, "flowcraft.flow_id": event.blueprint_id,
                      "flowcraft.node_id": event.node_id, "flowcraft.iteration": event.iteration,
                      "flowcraft.batch.size": event.size}
        run.live[(event.node_id, event.iteration)] = self.tracer.start_span(
            f"node {event.blueprint_id}.{event.node_id}", context=parent, links=links,
            kind=SpanKind.INTERNAL, attributes=attributes)

    def _on_batch_end(self, event: Any) -> None:
        """batch:finish, or node:error (which also ends a failed batch's span)."""
        run = self._runs.get(event.run_id)
        span = None if run is None else run.live.get((event.node_id, event.iteration))
        if run is None or span is None:
            return
        if event.type == "node:error":
            span.set_status(Status(StatusCode.ERROR, event.error.message))
        span.end()
        del run.live[(event.node_id, event.iteration)]
        run.done[event.node_id] = span.get_span_context()


class _Chained:
    """Feeds the tracer first, then the user's bus."""

    def __init__(self, tracing: TracingMiddleware, then: Emit | None) -> None:
        self._tracing = tracing
        self._then = then

    async def emit(self, event: Event) -> None:
        await self._tracing.emit(event)
        if self._then is not None:
            await self._then(event)


def _node_attributes(ctx: NodeContext) -> dict[str, Any]:
    return {"flowcraft.run_id": ctx.run_id, "flowcraft.flow_id": ctx.blueprint_id,
            "flowcraft.node_id": ctx.node_id, "flowcraft.iteration": ctx.iteration,
            "flowcraft.attempt": ctx.attempt}


def trace_key(node_id: str, iteration: int) -> str:
    """The context key where a distributed node leaves its span's traceparent (for links)."""
    return f"_trace.{node_id}#{iteration}"


def _span_context(traceparent: Any) -> SpanContext | None:
    if not isinstance(traceparent, str):
        return None
    span = trace.get_current_span(_W3C.extract({"traceparent": traceparent}))
    found = span.get_span_context()
    return found if found.is_valid else None


def inject_context(carrier: dict[str, str], context: Context | None = None) -> dict[str, str]:
    """Write W3C `traceparent` (and `tracestate`) of `context` (default: the current one)."""
    _W3C.inject(carrier, context=context)
    return carrier


def extract_context(carrier: Mapping[str, str] | None) -> Context | None:
    """The context a W3C carrier describes, or None when it carries none."""
    if not carrier:
        return None
    return _W3C.extract(dict(carrier))


__all__ = ["SCOPE", "TracingMiddleware", "extract_context", "inject_context", "trace_key"]
