"""Stepper: issue 3 item 7 — `Stepper(runtime, flow)`, `await step.next()`, `step.state`,
`step.done`."""

from __future__ import annotations

from collections import Counter

import flowcraft
from flowcraft import Flow, FlowRuntime, NodeContext, Stepper


def wave_flow(counts: Counter[str]) -> Flow:
    """a, b (two start nodes) -> c (all join) -> d."""

    async def a(ctx: NodeContext) -> str:
        counts["a"] += 1
        return "A"

    async def b(ctx: NodeContext) -> str:
        counts["b"] += 1
        return "B"

    async def c(ctx: NodeContext) -> str:
        counts["c"] += 1
        return ctx.input["a"] + ctx.input["b"]

    async def d(ctx: NodeContext) -> str:
        counts["d"] += 1
        return ctx.input + "!"

    return (
        Flow("waves")
        .node("a", a)
        .node("b", b)
        .node("c", c)
        .node("d", d)
        .edge("a", "c")
        .edge("b", "c")
        .edge("c", "d")
    )


def test_stepper_is_exported() -> None:
    assert flowcraft.Stepper is Stepper
    assert "Stepper" in flowcraft.__all__


async def test_stepper_runs_one_wave_per_next() -> None:
    counts: Counter[str] = Counter()
    step = Stepper(FlowRuntime(), wave_flow(counts))

    assert step.done is False
    assert counts == Counter()  # nothing runs before the first next()
    assert sorted(step.state.ready) == ["a", "b"]

    first = await step.next()
    assert sorted(first) == ["a", "b"]
    assert counts == Counter(a=1, b=1)
    assert step.done is False
    assert step.state.ready == ["c"]
    assert step.state.context["a"] == "A"
    assert step.state.context["b"] == "B"
    assert "c" not in step.state.context

    second = await step.next()
    assert second == ["c"]
    assert counts == Counter(a=1, b=1, c=1)
    assert step.state.ready == ["d"]
    assert step.state.context["c"] == "AB"
    assert step.done is False

    third = await step.next()
    assert third == ["d"]
    assert step.done is True
    assert step.state.ready == []
    assert step.result is not None
    assert step.result.status == "completed"
    assert step.result.context["d"] == "AB!"
    assert counts == Counter(a=1, b=1, c=1, d=1)

    # stepping a finished run does nothing
    assert await step.next() == []
    assert counts == Counter(a=1, b=1, c=1, d=1)


async def test_stepper_result_matches_a_normal_run() -> None:
    counts: Counter[str] = Counter()
    flow = wave_flow(counts)
    normal = await FlowRuntime().run(flow)

    step = Stepper(FlowRuntime(), flow)
    steps = 0
    while not step.done:
        await step.next()
        steps += 1
    assert steps == 3
    assert step.result is not None
    assert step.result.status == normal.status == "completed"
    assert step.result.context == normal.context


async def test_stepper_with_initial_context() -> None:
    async def read(ctx: NodeContext) -> int:
        return await ctx.context.get("x") + 1

    step = Stepper(FlowRuntime(), Flow("ctx").node("read", read), context={"x": 41})
    assert await step.next() == ["read"]
    assert step.done
    assert step.result is not None
    assert step.result.context["read"] == 42


async def test_stepper_stops_on_failure() -> None:
    ran: list[str] = []

    async def ok(ctx: NodeContext) -> str:
        ran.append("ok")
        return "ok"

    async def bad(ctx: NodeContext) -> None:
        ran.append("bad")
        raise ValueError("step failure")

    async def never(ctx: NodeContext) -> None:
        ran.append("never")

    flow = (
        Flow("step-fail")
        .node("ok", ok)
        .node("bad", bad)
        .node("never", never)
        .edge("ok", "bad")
        .edge("bad", "never")
    )
    step = Stepper(FlowRuntime(), flow)
    await step.next()
    assert not step.done
    await step.next()
    assert step.done
    assert step.result is not None
    assert step.result.status == "failed"
    assert step.result.errors[0].node_id == "bad"
    assert ran == ["ok", "bad"]


async def test_stepper_steps_through_loop_iterations() -> None:
    async def body(ctx: NodeContext) -> int:
        n = await ctx.context.get("n", 0) + 1
        await ctx.context.set("n", n)
        return n

    async def tail(ctx: NodeContext) -> str:
        return "tail"

    flow = (
        Flow("step-loop")
        .node("body", body)
        .node("tail", tail)
        .loop("lp", start="body", end="body", condition="n < 2")
        .edge("lp", "tail")
    )
    step = Stepper(FlowRuntime(), flow)
    waves: list[list[str]] = []
    while not step.done:
        waves.append(await step.next())
        assert len(waves) < 20

    ran = [node for wave in waves for node in wave]
    assert ran.count("body") == 2
    assert ran.count("tail") == 1
    assert ran.index("tail") > max(i for i, n in enumerate(ran) if n == "body")
    assert step.result is not None
    assert step.result.status == "completed"
    assert step.result.context["n"] == 2
