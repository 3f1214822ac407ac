"""flowcraft.otel in memory: span tree, links, retries, replay, metrics (issue 11 item 2)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flowcraft import EventRecorder, Flow, FlowRuntime, NodeContext
from flowcraft.otel import TracingMiddleware


class Traced:
    """A TracingMiddleware on private SDK providers with in-memory exporters."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.tracing = TracingMiddleware(tracer_provider=self.provider,
                                         meter_provider=self.meters)

    def runtime(self, **kwargs: Any) -> FlowRuntime:
        return FlowRuntime(middleware=[self.tracing], event_bus=self.tracing, **kwargs)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def by_name(self) -> dict[str, ReadableSpan]:
        spans = self.spans()
        named = {s.name: s for s in spans}
        assert len(named) == len(spans), [s.name for s in spans]
        return named

    def metric_points(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        points: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points[metric.name] = list(metric.data.data_points)
        return points


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
    await anyio.sleep(0.2)
    return ctx.node_id


def diamond() -> Flow:
    """a -> b, a -> c, b -> d, c -> d; c is slow, so c's edge is the one that makes d ready."""
    return (Flow("diamond").node("a", quick).node("b", quick).node("c", slow).node("d", quick)
            .edge("a", "b").edge("a", "c").edge("b", "d").edge("c", "d"))


async def test_diamond_span_tree_and_join_links(traced: Traced) -> None:
    result = await traced.runtime().run(diamond(), run_id="r-diamond")
    assert result.status == "completed"
    spans = traced.by_name()
    assert sorted(spans) == ["node diamond.a", "node diamond.b", "node diamond.c",
                             "node diamond.d", "run diamond"]
    run, a, b, c, d = (spans[n] for n in ("run diamond", "node diamond.a", "node diamond.b",
                                          "node diamond.c", "node diamond.d"))
    assert parent_of(run) is None
    assert parent_of(a) == sid(run)
    assert parent_of(b) == sid(a)
    assert parent_of(c) == sid(a)
    assert parent_of(d) == sid(c)          # the last predecessor to finish made d ready
    assert [link.context.span_id for link in d.links] == [sid(b), sid(c)]
    assert [len(s.links) for s in (run, a, b, c)] == [0, 0, 0, 0]
    assert {s.context.trace_id for s in spans.values() if s.context} == {run.context.trace_id}
    assert dict(run.attributes or {}) == {"flowcraft.run_id": "r-diamond",
                                          "flowcraft.flow_id": "diamond",
                                          "flowcraft.status": "completed"}
    assert dict(d.attributes or {}) == {"flowcraft.run_id": "r-diamond",
                                        "flowcraft.flow_id": "diamond",
                                        "flowcraft.node_id": "d", "flowcraft.iteration": 0,
                                        "flowcraft.attempt": 1}
    assert [s.status.status_code for s in spans.values()] == [StatusCode.UNSET] * 5


async def test_fan_out_children_and_gather_links(traced: Traced) -> None:
    flow = Flow("fan").node("src", quick).node("gather", quick)
    for i in range(5):  # w4 is slow: its edge is the one that makes the gather ready
        flow.node(f"w{i}", slow if i == 4 else quick).edge("src", f"w{i}").edge(f"w{i}",
                                                                                "gather")
    result = await traced.runtime().run(flow)
    assert result.status == "completed"
    spans = traced.by_name()
    src, gather = spans["node fan.src"], spans["node fan.gather"]
    workers = [spans[f"node fan.w{i}"] for i in range(5)]
    assert parent_of(src) == sid(spans["run fan"])
    assert [parent_of(w) for w in workers] == [sid(src)] * 5
    links = [link.context.span_id for link in gather.links]
    assert sorted(links) == sorted(map(sid, workers))
    assert len(links) == 5
    assert links[-1] == sid(workers[4])
    assert parent_of(gather) == sid(workers[4])


async def test_retries_are_span_events_and_attempt_is_the_last(traced: Traced) -> None:
    calls: list[int] = []

    async def flaky(ctx: NodeContext) -> int:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"boom {ctx.attempt}")
        return 7

    flow = Flow("retry").node("flaky", flaky, max_retries=3)
    result = await traced.runtime().run(flow)
    assert result.status == "completed"
    span = traced.by_name()["node retry.flaky"]
    assert calls == [1, 2, 3]
    assert (span.attributes or {})["flowcraft.attempt"] == 3
    assert [(e.name, dict(e.attributes or {})) for e in span.events] == [
        ("flowcraft.node.retry", {"flowcraft.attempt": 2, "exception.message": "boom 1"}),
        ("flowcraft.node.retry", {"flowcraft.attempt": 3, "exception.message": "boom 2"}),
    ]


async def test_failure_marks_node_and_run_spans_and_counts(traced: Traced) -> None:
    async def broken(ctx: NodeContext) -> int:
        raise ValueError("bad input")

    flow = Flow("fails").node("ok", quick).node("broken", broken).edge("ok", "broken")
    runtime = traced.runtime()
    assert (await runtime.run(flow)).status == "failed"
    assert (await runtime.run(diamond())).status == "completed"
    spans = traced.by_name()
    node, run = spans["node fails.broken"], spans["run fails"]
    assert node.status.status_code is StatusCode.ERROR
    assert node.status.description == "ValueError: bad input"
    assert [(e.name, (e.attributes or {})["exception.type"]) for e in node.events] == [
        ("exception", "ValueError")]
    assert run.status.status_code is StatusCode.ERROR
    assert (run.attributes or {})["flowcraft.status"] == "failed"
    points = traced.metric_points()
    by_flow = {name: {p.attributes["flowcraft.flow_id"]: p.value for p in pts}
               for name, pts in points.items() if name.startswith("flowcraft.runs.")}
    assert by_flow == {"flowcraft.runs.started": {"fails": 1, "diamond": 1},
                       "flowcraft.runs.completed": {"diamond": 1},
                       "flowcraft.runs.failed": {"fails": 1}}
    durations = {(p.attributes["flowcraft.node_id"], p.attributes["flowcraft.outcome"]): p.count
                 for p in points["flowcraft.node.duration"]}
    assert durations == {("ok", "ok"): 1, ("broken", "error"): 1, ("a", "ok"): 1,
                         ("b", "ok"): 1, ("c", "ok"): 1, ("d", "ok"): 1}


async def test_replay_from_traces_only_the_nodes_it_runs(traced: Traced) -> None:
    recorder = EventRecorder()
    runtime = FlowRuntime(middleware=[traced.tracing], event_bus=traced.tracing.chain(recorder))
    first = await runtime.run(diamond())
    assert first.status == "completed"
    assert "node:finish" in recorder.types()
    traced.exporter.clear()
    again = await runtime.replay_from(diamond(), recorder.events, "c")
    assert again.status == "completed"
    spans = traced.by_name()
    assert sorted(spans) == ["node diamond.c", "node diamond.d", "run diamond"]
    c, d = spans["node diamond.c"], spans["node diamond.d"]
    # a and b are recalled, not run: c hangs off the run span; b has no span to link to
    assert parent_of(c) == sid(spans["run diamond"])
    assert parent_of(d) == sid(c)
    assert list(d.links) == []
    assert runtime.replay(diamond(), recorder.events).status == "completed"
    assert len(traced.spans()) == 3


async def test_middleware_alone_nests_under_the_current_span(traced: Traced) -> None:
    runtime = FlowRuntime(middleware=[traced.tracing])
    tracer = traced.provider.get_tracer("test")
    with tracer.start_as_current_span("request") as outer:
        assert (await runtime.run(diamond())).status == "completed"
    spans = traced.by_name()
    assert sorted(spans) == ["node diamond.a", "node diamond.b", "node diamond.c",
                             "node diamond.d", "request"]
    outer_id = outer.get_span_context().span_id
    assert [parent_of(spans[f"node diamond.{n}"]) for n in "abcd"] == [outer_id] * 4


async def test_user_spans_inside_a_node_are_its_children(traced: Traced) -> None:
    tracer = traced.provider.get_tracer("test")

    async def inner(ctx: NodeContext) -> int:
        with tracer.start_as_current_span("db query"):
            return 1

    assert (await traced.runtime().run(Flow("inner").node("q", inner))).status == "completed"
    spans = traced.by_name()
    assert parent_of(spans["db query"]) == sid(spans["node inner.q"])


async def test_batch_items_hang_off_the_batch_span(traced: Traced) -> None:
    async def double(ctx: NodeContext) -> int:
        return int(ctx.input) * 2

    flow = (Flow("batchy").node("load", quick)
            .batch("items", double, input_key="xs").edge("load", "items"))
    result = await traced.runtime().run(flow, context={"xs": [1, 2, 3]})
    assert result.status == "completed"
    spans = traced.by_name()
    batch = spans["node batchy.items"]
    assert parent_of(batch) == sid(spans["node batchy.load"])
    assert (batch.attributes or {})["flowcraft.batch.size"] == 3
    assert [parent_of(spans[f"node batchy.items[{i}]"]) for i in range(3)] == [sid(batch)] * 3


async def test_awaiting_run_ends_its_span_and_resume_starts_another(traced: Traced) -> None:
    flow = Flow("hitl").node("ask", quick).wait("approval").node("after", quick)
    flow.edge("ask", "approval").edge("approval", "after")
    runtime = traced.runtime()
    paused = await runtime.run(flow)
    assert paused.status == "awaiting"
    resumed = await runtime.resume(flow, paused, node_id="approval", output="yes")
    assert resumed.status == "completed"
    runs = [s for s in traced.spans() if s.name == "run hitl"]
    assert [(s.attributes or {})["flowcraft.status"] for s in runs] == ["awaiting", "completed"]
    assert (runs[1].attributes or {})["flowcraft.resumed_node_id"] == "approval"
    node_after = next(s for s in traced.spans() if s.name == "node hitl.after")
    assert parent_of(node_after) == sid(runs[1])


def test_flowcraft_imports_without_opentelemetry() -> None:
    script = textwrap.dedent("""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError("blocked " + name)
                return None

        sys.meta_path.insert(0, Block())
        import flowcraft
        import flowcraft.cli
        assert not any(m.startswith("opentelemetry") for m in sys.modules)
        try:
            import flowcraft.otel
        except ImportError as exc:
            print("otel:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("otel: flowcraft.otel needs the OpenTelemetry API: "
                                   "pip install 'flowcraft-py[otel]'")


async def test_subflow_run_span_hangs_off_what_started_the_subflow(traced: Traced) -> None:
    child = Flow("child").node("inner", quick)
    parent = (Flow("parent").node("before", quick).subflow("sub", blueprint_id="child")
              .node("after", quick).edge("before", "sub").edge("sub", "after"))
    runtime = traced.runtime(blueprints={"child": child})
    assert (await runtime.run(parent, run_id="p1")).status == "completed"
    spans = traced.by_name()
    assert sorted(spans) == ["node child.inner", "node parent.after", "node parent.before",
                             "run child", "run parent"]
    before = spans["node parent.before"]
    assert parent_of(spans["run child"]) == sid(before)
    assert (spans["run child"].attributes or {})["flowcraft.run_id"] == "p1/sub#0"
    assert parent_of(spans["node child.inner"]) == sid(spans["run child"])
    # the subflow node has no span of its own: `after` hangs off what made `sub` ready
    assert parent_of(spans["node parent.after"]) == sid(before)


async def test_loop_iterations_are_separate_spans(traced: Traced) -> None:
    async def count(ctx: NodeContext) -> int:
        n = int(await ctx.context.get("n", 0)) + 1
        await ctx.context.set("n", n)
        return n

    flow = (Flow("looped").node("init", quick).node("body", count)
            .loop("again", start="body", end="body", condition="n < 3")
            .node("done", quick).edge("init", "body").edge("again", "done"))
    assert (await traced.runtime().run(flow)).status == "completed"
    bodies = [s for s in traced.spans() if s.name == "node looped.body"]
    assert [(s.attributes or {})["flowcraft.iteration"] for s in bodies] == [0, 1, 2]
    init = next(s for s in traced.spans() if s.name == "node looped.init")
    # each iteration's body hangs off the previous one (through the loop controller)
    assert [parent_of(s) for s in bodies] == [sid(init), sid(bodies[0]), sid(bodies[1])]
    done = next(s for s in traced.spans() if s.name == "node looped.done")
    assert parent_of(done) == sid(bodies[2])
