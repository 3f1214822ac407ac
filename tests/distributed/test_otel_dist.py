"""flowcraft.otel across real arq workers (issue 11 item 2): the W3C context in the job payload
makes a worker's node span a child of the span that enqueued its job; joins link to every
predecessor. Two in-process arq workers and the client share one SDK TracerProvider with an
in-memory exporter, so the test sees every span of the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from flowcraft import Flow, NodeContext
from flowcraft.otel import TracingMiddleware


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.tracing = TracingMiddleware(tracer_provider=self.provider,
                                         meter_provider=self.meters)

    def by_name(self) -> dict[str, ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        named = {s.name: s for s in spans}
        assert len(named) == len(spans), sorted(s.name for s in spans)
        return named

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [p for rm in data.resource_metrics for sm in rm.scope_metrics
                for m in sm.metrics if m.name == name for p in m.data.data_points]


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    yield t
    t.provider.shutdown()
    t.meters.shutdown()


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def sid(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def quick(ctx: NodeContext) -> str:
    return ctx.node_id


async def slow(ctx: NodeContext) -> str:
    await anyio.sleep(0.3)
    return ctx.node_id


def diamond() -> Flow:
    return (Flow("otel-diamond").node("a", quick).node("b", quick).node("c", slow)
            .node("d", quick).edge("a", "b").edge("a", "c").edge("b", "d").edge("c", "d"))


def fan_out() -> Flow:
    flow = Flow("otel-fan").node("src", quick).node("gather", quick)
    for i in range(4):  # w3 is slow: its commit is the one that fires the gather
        flow.node(f"w{i}", slow if i == 3 else quick).edge("src", f"w{i}").edge(f"w{i}",
                                                                                "gather")
    return flow


async def run_traced(traced: Traced, flow: Flow, arq_worker: Any, flowcraft_client: Any,
                     fc_queue: str) -> tuple[str, Any]:
    tracer = traced.provider.get_tracer("test")
    async with arq_worker([flow], middleware=[traced.tracing]), \
            arq_worker([flow], middleware=[traced.tracing]), \
            flowcraft_client([flow], middleware=[traced.tracing]) as client:
        with tracer.start_as_current_span("request"):
            run_id = await client.start(flow.id)
        result = await client.wait(run_id, timeout=30)
    return run_id, result


async def test_distributed_diamond_span_tree(traced: Traced, arq_worker: Any,
                                             flowcraft_client: Any, fc_queue: str) -> None:
    run_id, result = await run_traced(traced, diamond(), arq_worker, flowcraft_client,
                                      fc_queue)
    assert result.status == "completed"
    spans = traced.by_name()
    assert sorted(spans) == ["node otel-diamond.a", "node otel-diamond.b",
                             "node otel-diamond.c", "node otel-diamond.d", "request",
                             "start otel-diamond"]
    request, start = spans["request"], spans["start otel-diamond"]
    a, b, c, d = (spans[f"node otel-diamond.{n}"] for n in "abcd")
    tree = {name: parent_of(s) for name, s in spans.items()}
    print("\nspan tree:", {n: next((m for m, s in spans.items() if sid(s) == p), None)
                           for n, p in tree.items()},
          "links of d:", [next(m for m, s in spans.items() if sid(s) == link.context.span_id)
                          for link in d.links])
    assert parent_of(request) is None
    assert parent_of(start) == sid(request)
    assert parent_of(a) == sid(start)
    assert (parent_of(b), parent_of(c)) == (sid(a), sid(a))
    assert parent_of(d) == sid(c)   # c finished last: its commit fired d and enqueued it
    assert [link.context.span_id for link in d.links] == [sid(b), sid(c)]
    assert {s.context.trace_id for s in spans.values() if s.context} == {
        request.context.trace_id if request.context else 0}
    assert start.kind is SpanKind.PRODUCER
    assert [s.kind for s in (a, b, c, d)] == [SpanKind.CONSUMER] * 4
    attrs = dict(d.attributes or {})
    assert attrs == {"flowcraft.run_id": run_id, "flowcraft.flow_id": "otel-diamond",
                     "flowcraft.node_id": "d", "flowcraft.iteration": 0,
                     "flowcraft.attempt": 1, "messaging.system": "arq",
                     "messaging.operation.type": "process",
                     "messaging.operation.name": "process",
                     "messaging.destination.name": fc_queue,
                     "messaging.message.id": f"{run_id}:d:0:0"}
    waits = {p.attributes["flowcraft.node_id"]: p.count
             for p in traced.points("flowcraft.queue.wait_time")}
    assert waits == {"a": 1, "b": 1, "c": 1, "d": 1}
    started = [p.value for p in traced.points("flowcraft.runs.started")]
    assert started == [1]


async def test_distributed_fan_out_span_tree(traced: Traced, arq_worker: Any,
                                             flowcraft_client: Any, fc_queue: str) -> None:
    _, result = await run_traced(traced, fan_out(), arq_worker, flowcraft_client, fc_queue)
    assert result.status == "completed"
    spans = traced.by_name()
    src, gather = spans["node otel-fan.src"], spans["node otel-fan.gather"]
    workers = [spans[f"node otel-fan.w{i}"] for i in range(4)]
    assert parent_of(src) == sid(spans["start otel-fan"])
    assert [parent_of(w) for w in workers] == [sid(src)] * 4
    assert [link.context.span_id for link in gather.links] == [sid(w) for w in workers]
    assert parent_of(gather) == sid(workers[3])


async def flaky(ctx: NodeContext) -> int:
    if ctx.attempt < 3:
        raise RuntimeError(f"try {ctx.attempt}")
    return ctx.attempt


async def test_distributed_retries_are_events_of_the_node_span(
        traced: Traced, arq_worker: Any, flowcraft_client: Any) -> None:
    flow = Flow("otel-retry").node("flaky", flaky, max_retries=3)
    tracing = traced.tracing
    async with arq_worker([flow], middleware=[tracing], event_bus=tracing), \
            flowcraft_client([flow], middleware=[tracing]) as client:
        result = await client.wait(await client.start(flow.id), timeout=30)
    assert result.status == "completed"
    span = traced.by_name()["node otel-retry.flaky"]
    assert (span.attributes or {})["flowcraft.attempt"] == 3
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("flowcraft.node.retry", {"flowcraft.attempt": 2, "exception.message": "try 1"}),
        ("flowcraft.node.retry", {"flowcraft.attempt": 3, "exception.message": "try 2"}),
    ]


async def test_distributed_subflow_trace_follows_the_child_run(
        traced: Traced, arq_worker: Any, flowcraft_client: Any) -> None:
    child = Flow("otel-child").node("inner", quick)
    parent = (Flow("otel-parent").node("before", quick)
              .subflow("sub", blueprint_id="otel-child").node("after", quick)
              .edge("before", "sub").edge("sub", "after"))
    tracing = traced.tracing
    async with arq_worker([parent, child], middleware=[tracing]), \
            flowcraft_client([parent, child], middleware=[tracing]) as client:
        result = await client.wait(await client.start(parent.id), timeout=30)
    assert result.status == "completed"
    spans = traced.by_name()
    assert sorted(spans) == ["node otel-child.inner", "node otel-parent.after",
                             "node otel-parent.before", "start otel-child",
                             "start otel-parent"]
    before, inner = spans["node otel-parent.before"], spans["node otel-child.inner"]
    assert parent_of(spans["node otel-parent.before"]) == sid(spans["start otel-parent"])
    # the subflow node opens no span: the child run starts under what enqueued it
    assert parent_of(spans["start otel-child"]) == sid(before)
    assert parent_of(inner) == sid(spans["start otel-child"])
    # the child's last node ended the child and completed the subflow node, enqueuing `after`
    assert parent_of(spans["node otel-parent.after"]) == sid(inner)
