"""Loops: issue 3 item 1; CONTRACT §3, §8 (loop), §12.1."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from flowcraft import (
    BlueprintError,
    EventRecorder,
    Flow,
    FlowRuntime,
    NodeContext,
    WorkflowBlueprint,
    load_blueprint,
)


class Trace:
    """Counts executions per node and remembers the order in which nodes ran."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.counts: Counter[str] = Counter()
        self.iterations: dict[str, list[int]] = {}
        self.inputs: dict[str, list[Any]] = {}

    def hit(self, ctx: NodeContext) -> None:
        self.order.append(ctx.node_id)
        self.counts[ctx.node_id] += 1
        self.iterations.setdefault(ctx.node_id, []).append(ctx.iteration)
        self.inputs.setdefault(ctx.node_id, []).append(ctx.input)


def counting_loop(trace: Trace, *, rounds: int = 3, max_iterations: int = 1000) -> Flow:
    """prep -> a -> b, loop "lp" (start a, end b) while n < rounds, then "after"."""

    async def prep(ctx: NodeContext) -> str:
        trace.hit(ctx)
        await ctx.context.set("n", 0)
        return "prepared"

    async def a(ctx: NodeContext) -> int:
        trace.hit(ctx)
        n = await ctx.context.get("n") + 1
        await ctx.context.set("n", n)
        return n

    async def b(ctx: NodeContext) -> str:
        trace.hit(ctx)
        n = await ctx.context.get("n")
        out = f"round {n} (iteration {ctx.iteration})"
        await ctx.context.set(f"round_{n}", out)
        return out

    async def after(ctx: NodeContext) -> int:
        trace.hit(ctx)
        return await ctx.context.get("n")

    return (
        Flow("counting-loop")
        .node("prep", prep)
        .node("a", a)
        .node("b", b)
        .node("after", after)
        .edge("prep", "a")
        .edge("a", "b")
        .loop("lp", start="a", end="b", condition=f"n < {rounds}",
              max_iterations=max_iterations)
        .edge("lp", "after")
    )


async def test_three_iteration_loop_runs_body_three_times_with_iteration_outputs() -> None:
    trace = Trace()
    result = await FlowRuntime().run(counting_loop(trace))

    assert result.status == "completed", result.errors
    assert trace.counts["a"] == 3
    assert trace.counts["b"] == 3
    assert trace.counts["prep"] == 1
    assert trace.counts["after"] == 1
    # every iteration is its own instance: ctx.iteration 0, 1, 2
    assert trace.iterations["a"] == [0, 1, 2]
    assert trace.iterations["b"] == [0, 1, 2]
    # iteration-specific keys written by the body
    ctx = result.context
    assert ctx["n"] == 3
    assert ctx["round_1"] == "round 1 (iteration 0)"
    assert ctx["round_2"] == "round 2 (iteration 1)"
    assert ctx["round_3"] == "round 3 (iteration 2)"
    # the node mirrors hold the last iteration's output
    assert ctx["b"] == "round 3 (iteration 2)"
    assert ctx["_outputs.b"] == "round 3 (iteration 2)"
    assert ctx["after"] == 3


async def test_loop_body_order_and_exit_edge_runs_only_after_last_iteration() -> None:
    trace = Trace()
    result = await FlowRuntime().run(counting_loop(trace))

    assert result.status == "completed"
    assert trace.order == ["prep", "a", "b", "a", "b", "a", "b", "after"]


async def test_loop_exit_edge_is_skipped_while_looping_events() -> None:
    """The exit edge is resolved once, after the last iteration: `after` starts exactly once,
    and never before the final `b` finished."""
    trace = Trace()
    recorder = EventRecorder()
    result = await FlowRuntime(event_bus=recorder).run(counting_loop(trace))

    assert result.status == "completed"
    order = recorder.node_order()
    assert order.count("after") == 1
    b_finishes = [i for i, e in enumerate(recorder.events)
                  if e.type == "node:finish" and e.node_id == "b"]
    after_start = next(i for i, e in enumerate(recorder.events)
                       if e.type == "node:start" and e.node_id == "after")
    assert len(b_finishes) == 3
    assert after_start > b_finishes[-1]
    assert not [e for e in recorder.of("node:skipped") if e.node_id == "after"]


async def test_loop_is_do_while_body_runs_once_when_condition_false() -> None:
    trace = Trace()
    result = await FlowRuntime().run(counting_loop(trace, rounds=0))

    assert result.status == "completed"
    assert trace.counts["a"] == 1
    assert trace.counts["b"] == 1
    assert trace.counts["after"] == 1
    assert result.context["n"] == 1


async def test_loop_condition_sees_context_written_by_nodes_before_the_loop() -> None:
    trace = Trace()

    async def setup(ctx: NodeContext) -> None:
        await ctx.context.set("limit", 4)
        await ctx.context.set("n", 0)

    async def body(ctx: NodeContext) -> int:
        trace.hit(ctx)
        n = await ctx.context.get("n") + 1
        await ctx.context.set("n", n)
        return n

    flow = (
        Flow("ctx-cond")
        .node("setup", setup)
        .node("body", body)
        .edge("setup", "body")
        .loop("lp", start="body", end="body", condition="n < limit")
    )
    result = await FlowRuntime().run(flow)

    assert result.status == "completed"
    assert trace.counts["body"] == 4
    assert result.context["n"] == 4


async def test_loop_with_all_join_inside_body_runs_join_once_per_iteration() -> None:
    trace = Trace()

    async def head(ctx: NodeContext) -> int:
        trace.hit(ctx)
        n = await ctx.context.get("n", 0) + 1
        await ctx.context.set("n", n)
        return n

    async def left(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return f"L{ctx.input}"

    async def right(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return f"R{ctx.input}"

    async def join(ctx: NodeContext) -> str:
        trace.hit(ctx)
        merged = f"{ctx.input['left']}+{ctx.input['right']}"
        await ctx.context.set(f"joined_{await ctx.context.get('n')}", merged)
        return merged

    async def done(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return "done"

    flow = (
        Flow("loop-join")
        .node("head", head)
        .node("left", left)
        .node("right", right)
        .node("join", join, join="all")
        .node("done", done)
        .edge("head", "left")
        .edge("head", "right")
        .edge("left", "join")
        .edge("right", "join")
        .loop("lp", start="head", end="join", condition="n < 3")
        .edge("lp", "done")
    )
    result = await FlowRuntime().run(flow)

    assert result.status == "completed", result.errors
    assert trace.counts == Counter(head=3, left=3, right=3, join=3, done=1)
    # the join saw both branches of its own iteration, in edge-declaration order
    assert trace.inputs["join"] == [
        {"left": "L1", "right": "R1"},
        {"left": "L2", "right": "R2"},
        {"left": "L3", "right": "R3"},
    ]
    assert [list(i) for i in trace.inputs["join"]] == [["left", "right"]] * 3
    assert result.context["joined_1"] == "L1+R1"
    assert result.context["joined_3"] == "L3+R3"
    assert trace.order[-1] == "done"


async def test_loop_with_if_else_merging_into_all_join_inside_body() -> None:
    """An if/else inside the body merges into an `all` join once per iteration."""
    trace = Trace()

    async def head(ctx: NodeContext) -> int:
        trace.hit(ctx)
        n = await ctx.context.get("n", 0) + 1
        await ctx.context.set("n", n)
        return n

    async def even(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return "even"

    async def odd(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return "odd"

    async def merge(ctx: NodeContext) -> str:
        trace.hit(ctx)
        (value,) = ctx.input.values()
        seen = await ctx.context.get("seen", [])
        await ctx.context.set("seen", [*seen, value])
        return value

    flow = (
        Flow("loop-if-else")
        .node("head", head)
        .node("even", even)
        .node("odd", odd)
        .node("merge", merge)
        .edge("head", "even", condition="result.output % 2 == 0")
        .edge("head", "odd", condition="result.output % 2 == 1")
        .edge("even", "merge")
        .edge("odd", "merge")
        .loop("lp", start="head", end="merge", condition="n < 4")
    )
    result = await FlowRuntime().run(flow)

    assert result.status == "completed", result.errors
    assert trace.counts == Counter(head=4, even=2, odd=2, merge=4)
    assert result.context["seen"] == ["odd", "even", "odd", "even"]


async def test_nested_loops() -> None:
    trace = Trace()

    async def o1(ctx: NodeContext) -> int:
        trace.hit(ctx)
        outer = await ctx.context.get("outer", 0) + 1
        await ctx.context.set("outer", outer)
        await ctx.context.set("inner", 0)
        return outer

    async def i1(ctx: NodeContext) -> int:
        trace.hit(ctx)
        inner = await ctx.context.get("inner") + 1
        await ctx.context.set("inner", inner)
        return inner

    async def i2(ctx: NodeContext) -> str:
        trace.hit(ctx)
        outer = await ctx.context.get("outer")
        inner = await ctx.context.get("inner")
        pairs = await ctx.context.get("pairs", [])
        await ctx.context.set("pairs", [*pairs, [outer, inner]])
        return f"{outer}.{inner}"

    async def o2(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return f"outer {await ctx.context.get('outer')} done"

    async def after(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return "after"

    flow = (
        Flow("nested")
        .node("o1", o1)
        .node("i1", i1)
        .node("i2", i2)
        .node("o2", o2)
        .node("after", after)
        .edge("o1", "i1")
        .edge("i1", "i2")
        .loop("inner_loop", start="i1", end="i2", condition="inner < 3")
        .edge("inner_loop", "o2")
        .loop("outer_loop", start="o1", end="o2", condition="outer < 2")
        .edge("outer_loop", "after")
    )
    result = await FlowRuntime().run(flow)

    assert result.status == "completed", result.errors
    assert trace.counts == Counter(o1=2, i1=6, i2=6, o2=2, after=1)
    assert result.context["pairs"] == [[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]
    assert trace.order == (["o1"] + ["i1", "i2"] * 3 + ["o2"]) * 2 + ["after"]
    assert result.context["after"] == "after"


async def test_max_iterations_exceeded_fails_run_with_iteration_count() -> None:
    trace = Trace()

    async def spin(ctx: NodeContext) -> int:
        trace.hit(ctx)
        return ctx.iteration

    async def after(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return "after"

    flow = (
        Flow("runaway")
        .node("spin", spin)
        .node("after", after)
        .loop("lp", start="spin", end="spin", condition="true", max_iterations=5)
        .edge("lp", "after")
    )
    result = await FlowRuntime().run(flow)

    assert result.status == "failed"
    assert trace.counts["spin"] == 5
    assert trace.counts["after"] == 0
    assert len(result.errors) == 1
    (error,) = result.errors
    assert (error.node_id, error.type, error.attempt) == ("lp", "LoopLimitError", 1)
    assert error.message == (f"loop 'lp' of run '{result.run_id}' exceeded max_iterations=5: "
                             "5 iterations ran and the condition still held")
    assert isinstance(result.context, dict)


async def test_default_max_iterations_is_1000() -> None:
    trace = Trace()

    async def spin(ctx: NodeContext) -> None:
        trace.hit(ctx)

    flow = Flow("runaway-default").node("spin", spin).loop(
        "lp", start="spin", end="spin", condition="true")
    result = await FlowRuntime().run(flow)

    assert result.status == "failed"
    assert trace.counts["spin"] == 1000
    assert "1000" in result.errors[0].message


def test_loop_blueprint_shape_matches_ts_flowcraft() -> None:
    flow = (
        Flow("shape")
        .node("a", "x:a")
        .node("b", "x:b")
        .node("next", "x:next")
        .edge("a", "b")
        .loop("lp", start="a", end="b", condition="n < 3")
        .edge("lp", "next")
    )
    bp = flow.to_blueprint()
    controller = next(n for n in bp.nodes if n.id == "lp")
    assert controller.uses == "loop-controller"
    assert controller.params["condition"] == "n < 3"
    edges = {(e.source, e.target): e.action for e in bp.edges}
    assert ("b", "lp") in edges
    assert edges[("lp", "a")] == "continue"
    assert edges[("lp", "next")] == "break"
    # round-trips through JSON
    assert load_blueprint(bp.to_json()) == bp


async def test_ts_style_loop_blueprint_runs() -> None:
    """A blueprint written as TS Flowcraft writes loops runs with a runtime registry."""
    seen: list[int] = []

    async def body(ctx: NodeContext) -> int:
        n = await ctx.context.get("n", 0) + 1
        await ctx.context.set("n", n)
        seen.append(n)
        return n

    async def tail(ctx: NodeContext) -> str:
        return "tail"

    bp = load_blueprint({
        "id": "ts-loop",
        "nodes": [
            {"id": "body", "uses": "body"},
            {"id": "ctl", "uses": "loop-controller", "params": {"condition": "n < 2"}},
            {"id": "tail", "uses": "tail"},
        ],
        "edges": [
            {"source": "body", "target": "ctl"},
            {"source": "ctl", "target": "body", "action": "continue"},
            {"source": "ctl", "target": "tail", "action": "break"},
        ],
    })
    assert isinstance(bp, WorkflowBlueprint)
    result = await FlowRuntime(registry={"body": body, "tail": tail}).run(bp)

    assert result.status == "completed", result.errors
    assert seen == [1, 2]
    assert result.context["tail"] == "tail"


def test_cycle_without_loop_controller_is_blueprint_error() -> None:
    flow = (
        Flow("cycle")
        .node("a", "x:a")
        .node("b", "x:b")
        .edge("a", "b")
        .edge("b", "a")
    )
    with pytest.raises(BlueprintError):
        flow.to_blueprint()


def test_loop_rejects_bad_max_iterations() -> None:
    with pytest.raises(BlueprintError):
        Flow("bad").node("a", "x:a").loop("lp", start="a", end="a", condition="true",
                                          max_iterations=0)


async def test_loop_start_with_join_from_outside_does_not_block_later_iterations() -> None:
    """`start` has two incoming edges from outside the loop (an `all` join) and the back edge:
    the first iteration waits for both outside edges, later ones only for the back edge."""
    trace = Trace()

    async def p1(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return "p1"

    async def p2(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return "p2"

    async def start(ctx: NodeContext) -> int:
        trace.hit(ctx)
        n = await ctx.context.get("n", 0) + 1
        await ctx.context.set("n", n)
        return n

    async def end(ctx: NodeContext) -> int:
        trace.hit(ctx)
        return ctx.input

    flow = (
        Flow("entry-join")
        .node("p1", p1)
        .node("p2", p2)
        .node("start", start)
        .node("end", end)
        .edge("p1", "start")
        .edge("p2", "start")
        .edge("start", "end")
        .loop("lp", start="start", end="end", condition="n < 3")
    )
    result = await FlowRuntime().run(flow)

    assert result.status == "completed", result.errors
    assert trace.counts == Counter(p1=1, p2=1, start=3, end=3)
    assert trace.inputs["start"][0] == {"p1": "p1", "p2": "p2"}
    assert trace.order.index("start") > max(trace.order.index("p1"), trace.order.index("p2"))


async def test_skipped_loop_entry_skips_the_loop_and_its_exit() -> None:
    trace = Trace()

    async def gate(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return "closed"

    async def body(ctx: NodeContext) -> None:
        trace.hit(ctx)

    async def after(ctx: NodeContext) -> None:
        trace.hit(ctx)

    async def other(ctx: NodeContext) -> str:
        trace.hit(ctx)
        return "other"

    flow = (
        Flow("skip-loop")
        .node("gate", gate)
        .node("body", body)
        .node("after", after)
        .node("other", other)
        .edge("gate", "body", condition="result.output == 'open'")
        .edge("gate", "other", condition="result.output == 'closed'")
        .loop("lp", start="body", end="body", condition="true")
        .edge("lp", "after")
    )
    result = await FlowRuntime().run(flow)

    assert result.status == "completed", result.errors
    assert trace.counts == Counter(gate=1, other=1)


async def test_idempotency_key_differs_per_iteration() -> None:
    keys: list[str] = []

    async def body(ctx: NodeContext) -> int:
        keys.append(ctx.idempotency_key)
        n = await ctx.context.get("n", 0) + 1
        await ctx.context.set("n", n)
        return n

    flow = Flow("keys").node("body", body).loop("lp", start="body", end="body",
                                                 condition="n < 3")
    result = await FlowRuntime().run(flow, run_id="run-1")

    assert result.status == "completed"
    assert len(keys) == 3
    assert len(set(keys)) == 3
    assert all(key.startswith("run-1:body:") for key in keys)
