"""Replay and time travel, JSON-lines event log: issue 3 item 6; CONTRACT §12.14."""

from __future__ import annotations

import inspect
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowcraft import (
    BlueprintError,
    Event,
    EventRecorder,
    Flow,
    FlowRuntime,
    JsonlEventStore,
    NodeContext,
    NodeResult,
    WorkflowResult,
)


async def replay(runtime: FlowRuntime, flow: Any, events: list[Any]) -> WorkflowResult:
    """`runtime.replay` runs nothing, so it may be sync or async; accept both spellings."""
    result = runtime.replay(flow, events)
    if inspect.isawaitable(result):
        result = await result
    assert isinstance(result, WorkflowResult)
    return result


class Fanout:
    def __init__(self, *buses: Any) -> None:
        self.buses = buses

    async def emit(self, event: Event) -> None:
        for bus in self.buses:
            await bus.emit(event)


def diamond(counts: Counter[str]) -> Flow:
    """a -> b -> c -> d, a -> e; b and e -> j (all join). c reads the context key `factor`."""

    async def a(ctx: NodeContext) -> int:
        counts["a"] += 1
        await ctx.context.set("seed", await ctx.context.get("start", 1))
        return 1

    async def b(ctx: NodeContext) -> NodeResult:
        counts["b"] += 1
        await ctx.context.set("b_note", "from b")
        await ctx.context.set("temp", "to delete")
        return NodeResult(output=ctx.input + 1, action="go")

    async def c(ctx: NodeContext) -> int:
        counts["c"] += 1
        factor = await ctx.context.get("factor", 10)
        await ctx.context.delete("temp")
        return ctx.input * factor

    async def d(ctx: NodeContext) -> str:
        counts["d"] += 1
        await ctx.context.set("d_note", f"d saw {ctx.input}")
        return f"d:{ctx.input}"

    async def e(ctx: NodeContext) -> str:
        counts["e"] += 1
        return "e"

    async def j(ctx: NodeContext) -> dict[str, Any]:
        counts["j"] += 1
        return dict(ctx.input)

    return (
        Flow("diamond")
        .node("a", a)
        .node("b", b)
        .node("c", c)
        .node("d", d)
        .node("e", e)
        .node("j", j)
        .edge("a", "b")
        .edge("b", "c", action="go")
        .edge("c", "d")
        .edge("a", "e")
        .edge("b", "j", action="go")
        .edge("e", "j")
    )


async def recorded_run(counts: Counter[str], context: dict[str, Any] | None = None,
                       ) -> tuple[Flow, FlowRuntime, EventRecorder, WorkflowResult]:
    recorder = EventRecorder()
    runtime = FlowRuntime(event_bus=recorder)
    flow = diamond(counts)
    result = await runtime.run(flow, context=context or {"start": 5})
    assert result.status == "completed", result.errors
    return flow, runtime, recorder, result


async def test_replay_equals_original_context_without_running_nodes() -> None:
    counts: Counter[str] = Counter()
    flow, _, recorder, original = await recorded_run(counts)
    before = Counter(counts)

    replayed = await replay(FlowRuntime(), flow, list(recorder.events))

    assert counts == before  # nothing ran
    assert replayed.status == "completed"
    assert replayed.context == original.context
    assert replayed.errors == []
    assert "temp" not in replayed.context  # deletes replay too
    assert replayed.context["c"] == 20
    assert replayed.context["d_note"] == "d saw 20"


async def test_replay_of_loop_run_equals_original() -> None:
    async def body(ctx: NodeContext) -> int:
        n = await ctx.context.get("n", 0) + 1
        await ctx.context.set("n", n)
        await ctx.context.set(f"k{n}", n * n)
        return n

    async def tail(ctx: NodeContext) -> str:
        return "tail"

    flow = (
        Flow("loop-replay")
        .node("body", body)
        .node("tail", tail)
        .loop("lp", start="body", end="body", condition="n < 3")
        .edge("lp", "tail")
    )
    recorder = EventRecorder()
    runtime = FlowRuntime(event_bus=recorder)
    original = await runtime.run(flow)
    assert original.status == "completed"

    replayed = await replay(runtime, flow, list(recorder.events))
    assert replayed.context == original.context
    assert replayed.context["k3"] == 9


async def test_replay_of_failed_run_reports_failure() -> None:
    async def ok(ctx: NodeContext) -> str:
        return "ok"

    async def bad(ctx: NodeContext) -> None:
        raise ValueError("broken")

    flow = Flow("fails").node("ok", ok).node("bad", bad).edge("ok", "bad")
    recorder = EventRecorder()
    original = await FlowRuntime(event_bus=recorder).run(flow)
    assert original.status == "failed"

    replayed = await replay(FlowRuntime(), flow, list(recorder.events))
    assert replayed.status == "failed"
    assert replayed.context == original.context
    assert [e.node_id for e in replayed.errors] == ["bad"]
    assert "broken" in replayed.errors[0].message


async def test_replay_from_reruns_only_node_and_descendants() -> None:
    counts: Counter[str] = Counter()
    flow, runtime, recorder, original = await recorded_run(counts)
    assert counts == Counter(a=1, b=1, c=1, d=1, e=1, j=1)

    again = await runtime.replay_from(flow, list(recorder.events), "c")

    assert again.status == "completed", again.errors
    # upstream and unrelated nodes reuse their recorded outputs
    assert counts["a"] == 1
    assert counts["b"] == 1
    assert counts["e"] == 1
    assert counts["j"] == 1
    # c and its descendants ran again
    assert counts["c"] == 2
    assert counts["d"] == 2
    assert again.context == original.context


async def test_replay_from_join_descendants() -> None:
    """Re-running b re-runs c, d and the join j (b's descendants), not a or e; j still gets
    e's recorded output."""
    counts: Counter[str] = Counter()
    flow, runtime, recorder, original = await recorded_run(counts)

    again = await runtime.replay_from(flow, list(recorder.events), "b")

    assert again.status == "completed", again.errors
    assert counts == Counter(a=1, e=1, b=2, c=2, d=2, j=2)
    assert again.context["j"] == {"b": 2, "e": "e"}
    assert again.context == original.context


async def test_replay_from_with_overrides_changes_the_rerun() -> None:
    counts: Counter[str] = Counter()
    flow, runtime, recorder, original = await recorded_run(counts)
    assert original.context["c"] == 20

    again = await runtime.replay_from(flow, list(recorder.events), "c",
                                      overrides={"factor": 3})

    assert again.status == "completed", again.errors
    assert counts == Counter(a=1, b=1, e=1, j=1, c=2, d=2)
    assert again.context["c"] == 6
    assert again.context["d"] == "d:6"
    assert again.context["d_note"] == "d saw 6"
    # the rest is the recording
    assert again.context["b"] == original.context["b"]
    assert again.context["seed"] == 5
    assert again.context["b_note"] == "from b"


async def test_replay_from_start_node_reruns_everything() -> None:
    counts: Counter[str] = Counter()
    flow, runtime, recorder, original = await recorded_run(counts)

    again = await runtime.replay_from(flow, list(recorder.events), "a")
    assert counts == Counter(a=2, b=2, c=2, d=2, e=2, j=2)
    assert again.context == original.context


async def test_replay_from_unknown_node_raises() -> None:
    counts: Counter[str] = Counter()
    flow, runtime, recorder, _ = await recorded_run(counts)
    with pytest.raises(BlueprintError) as info:
        await runtime.replay_from(flow, list(recorder.events), "nope")
    assert str(info.value) == "node 'nope' is not in blueprint 'diamond'"
    assert counts == Counter(a=1, b=1, c=1, d=1, e=1, j=1)  # nothing ran again


async def test_jsonl_event_store_round_trip(tmp_path: Path) -> None:
    counts: Counter[str] = Counter()
    path = tmp_path / "run.jsonl"
    recorder = EventRecorder()
    store = JsonlEventStore(path)
    runtime = FlowRuntime(event_bus=Fanout(recorder, store))
    flow = diamond(counts)
    original = await runtime.run(flow, context={"start": 5})
    store.close()

    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert len(lines) == len(recorder.events)

    events = JsonlEventStore.read(path)
    assert [e.type for e in events] == recorder.types()
    assert [getattr(e, "node_id", None) for e in events] == \
        [getattr(e, "node_id", None) for e in recorder.events]
    assert all(e.run_id == original.run_id for e in events)
    finishes = {e.node_id: e.output for e in events if e.type == "node:finish"}
    assert finishes["c"] == 20
    assert finishes["j"] == {"b": 2, "e": "e"} == original.context["j"]

    # the persisted log replays to the same result
    replayed = await replay(FlowRuntime(), flow, events)
    assert replayed.context == original.context
    assert replayed.status == "completed"

    # and supports time travel
    again = await FlowRuntime().replay_from(flow, events, "d")
    assert counts == Counter(a=1, b=1, c=1, e=1, j=1, d=2)
    assert again.context == original.context


async def test_jsonl_event_store_as_context_manager_appends(tmp_path: Path) -> None:
    async def one(ctx: NodeContext) -> int:
        return 1

    flow = Flow("tiny").node("one", one)
    path = tmp_path / "log.jsonl"
    with JsonlEventStore(path) as store:
        first = await FlowRuntime(event_bus=store).run(flow)
    with JsonlEventStore(path) as store:
        second = await FlowRuntime(event_bus=store).run(flow)

    events = JsonlEventStore.read(path)
    run_ids = {e.run_id for e in events}
    assert run_ids == {first.run_id, second.run_id}
    assert [e.type for e in events].count("workflow:finish") == 2


async def test_replay_from_after_a_loop_reuses_recorded_iterations() -> None:
    counts: Counter[str] = Counter()

    async def prep(ctx: NodeContext) -> str:
        counts["prep"] += 1
        return "prep"

    async def body(ctx: NodeContext) -> int:
        counts["body"] += 1
        n = await ctx.context.get("n", 0) + 1
        await ctx.context.set("n", n)
        return n

    async def after(ctx: NodeContext) -> str:
        counts["after"] += 1
        return f"after {await ctx.context.get('n')} rounds, suffix {ctx.input}"

    flow = (
        Flow("loop-time-travel")
        .node("prep", prep)
        .node("body", body)
        .node("after", after)
        .edge("prep", "body")
        .loop("lp", start="body", end="body", condition="n < 3")
        .edge("lp", "after")
    )
    recorder = EventRecorder()
    runtime = FlowRuntime(event_bus=recorder)
    original = await runtime.run(flow)
    assert original.status == "completed", original.errors
    assert counts == Counter(prep=1, body=3, after=1)

    again = await runtime.replay_from(flow, list(recorder.events), "after")

    assert again.status == "completed", again.errors
    assert counts == Counter(prep=1, body=3, after=2)
    assert again.context == original.context


async def test_replay_and_replay_from_with_a_subflow() -> None:
    counts: Counter[str] = Counter()

    async def inner(ctx: NodeContext) -> int:
        counts["inner"] += 1
        return await ctx.context.get("x") + 1

    async def head(ctx: NodeContext) -> int:
        counts["head"] += 1
        await ctx.context.set("x", 1)
        return 1

    async def tail(ctx: NodeContext) -> str:
        counts["tail"] += 1
        return f"tail saw {ctx.input['inner']}"

    child = Flow("replay-child").node("inner", inner)
    parent = (
        Flow("replay-parent")
        .node("head", head)
        .subflow("sub", blueprint_id="replay-child", inputs={"x": "x"})
        .node("tail", tail)
        .edge("head", "sub")
        .edge("sub", "tail")
    )
    recorder = EventRecorder()
    runtime = FlowRuntime(blueprints={"replay-child": child}, event_bus=recorder)
    original = await runtime.run(parent)
    assert original.status == "completed", original.errors
    assert counts == Counter(head=1, inner=1, tail=1)

    replayed = await replay(runtime, parent, list(recorder.events))
    assert replayed.context == original.context
    assert replayed.run_id == original.run_id

    again = await runtime.replay_from(parent, list(recorder.events), "tail")
    assert again.context == original.context
    assert counts == Counter(head=1, inner=1, tail=2)
