"""Subflows: issue 3 item 3; CONTRACT §3, §8 (subflow), §12.11."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from flowcraft import Flow, FlowRuntime, NodeContext


def child_flow(counts: Counter[str]) -> Flow:
    """double: reads `x`, writes `doubled`; note: returns a label."""

    async def double(ctx: NodeContext) -> int:
        counts["double"] += 1
        value = await ctx.context.get("x") * 2
        await ctx.context.set("doubled", value)
        return value

    async def note(ctx: NodeContext) -> str:
        counts["note"] += 1
        return f"doubled to {ctx.input}"

    return (
        Flow("child")
        .node("double", double)
        .node("note", note)
        .edge("double", "note")
    )


def parent_flow(counts: Counter[str], blueprint_id: str = "child") -> Flow:
    async def prep(ctx: NodeContext) -> int:
        counts["prep"] += 1
        await ctx.context.set("value", 21)
        return 21

    async def after(ctx: NodeContext) -> Any:
        counts["after"] += 1
        return {"got": ctx.input, "result": await ctx.context.get("result")}

    return (
        Flow("parent")
        .node("prep", prep)
        .subflow("sub", blueprint_id=blueprint_id, inputs={"x": "value"},
                 outputs={"result": "doubled"})
        .node("after", after)
        .edge("prep", "sub")
        .edge("sub", "after")
    )


async def test_subflow_input_and_output_mapping() -> None:
    counts: Counter[str] = Counter()
    runtime = FlowRuntime(blueprints={"child": child_flow(counts)})
    result = await runtime.run(parent_flow(counts))

    assert result.status == "completed", result.errors
    assert counts == Counter(prep=1, double=1, note=1, after=1)
    # outputs={parent_key: child_key}
    assert result.context["result"] == 42
    # the node's output is the child's final context without `_` keys
    output = result.context["sub"]
    assert output == {"x": 21, "doubled": 42, "double": 42, "note": "doubled to 42"}
    assert not [k for k in output if k.startswith("_")]
    assert result.context["_outputs.sub"] == output
    assert result.context["after"] == {"got": output, "result": 42}


async def test_subflow_child_context_only_gets_mapped_inputs() -> None:
    seen: dict[str, Any] = {}

    async def peek(ctx: NodeContext) -> None:
        seen.update(await ctx.context.to_dict())

    child = Flow("peek-child").node("peek", peek)

    async def prep(ctx: NodeContext) -> None:
        await ctx.context.set("secret", "parent only")
        await ctx.context.set("shared", "passed")

    parent = (
        Flow("peek-parent")
        .node("prep", prep)
        .subflow("sub", blueprint_id="peek-child", inputs={"given": "shared"})
        .edge("prep", "sub")
    )
    runtime = FlowRuntime(blueprints={"peek-child": child})
    result = await runtime.run(parent)

    assert result.status == "completed", result.errors
    assert seen.get("given") == "passed"
    assert "secret" not in seen
    assert "shared" not in seen


async def test_subflow_registered_with_register_and_blueprint() -> None:
    counts: Counter[str] = Counter()
    child = child_flow(counts)
    runtime = FlowRuntime(registry=dict(child.registry))
    runtime.register(child.to_blueprint())
    result = await runtime.run(parent_flow(counts))

    assert result.status == "completed", result.errors
    assert result.context["result"] == 42


async def test_subflow_failure_propagates_with_child_error() -> None:
    counts: Counter[str] = Counter()

    async def fine(ctx: NodeContext) -> str:
        counts["fine"] += 1
        return "fine"

    async def boom(ctx: NodeContext) -> None:
        counts["boom"] += 1
        raise ValueError("kaput in the child")

    child = Flow("bad-child").node("fine", fine).node("boom", boom).edge("fine", "boom")
    runtime = FlowRuntime(blueprints={"bad-child": child})
    result = await runtime.run(parent_flow(counts, blueprint_id="bad-child"))

    assert result.status == "failed"
    assert counts["after"] == 0
    assert counts["boom"] == 1
    assert len(result.errors) == 1
    error = result.errors[0]
    assert error.node_id == "sub"
    assert "boom" in error.message
    assert "kaput in the child" in error.message
    assert "after" not in result.context


async def test_wait_inside_child_makes_parent_await_and_resume_completes() -> None:
    counts: Counter[str] = Counter()

    async def c1(ctx: NodeContext) -> str:
        counts["c1"] += 1
        return "c1"

    async def c2(ctx: NodeContext) -> str:
        counts["c2"] += 1
        await ctx.context.set("approved_by", ctx.input["by"])
        return f"approved by {ctx.input['by']}"

    child = (
        Flow("hitl-child")
        .node("c1", c1)
        .wait("approve")
        .node("c2", c2)
        .edge("c1", "approve")
        .edge("approve", "c2")
    )

    async def after(ctx: NodeContext) -> Any:
        counts["after"] += 1
        return ctx.input

    parent = (
        Flow("hitl-parent")
        .subflow("sub", blueprint_id="hitl-child", outputs={"who": "approved_by"})
        .node("after", after)
        .edge("sub", "after")
    )
    runtime = FlowRuntime(blueprints={"hitl-child": child})
    paused = await runtime.run(parent)

    assert paused.status == "awaiting"
    assert paused.awaiting == ["sub"]
    assert counts == Counter(c1=1)

    # through JSON, as a different process would
    resumed = await FlowRuntime(blueprints={"hitl-child": child}).resume(
        parent, paused.to_json(), node_id="sub", output={"by": "ann"})

    assert resumed.status == "completed", resumed.errors
    assert resumed.awaiting == []
    assert counts == Counter(c1=1, c2=1, after=1)
    assert resumed.context["who"] == "ann"
    assert resumed.context["sub"]["c2"] == "approved by ann"
    assert resumed.context["sub"]["approve"] == {"by": "ann"}
    assert resumed.context["after"] == resumed.context["sub"]
    assert resumed.run_id == paused.run_id


async def test_resume_parent_routes_action_inside_child() -> None:
    async def yes(ctx: NodeContext) -> str:
        return "yes"

    async def no(ctx: NodeContext) -> str:
        return "no"

    child = (
        Flow("route-child")
        .wait("gate")
        .node("yes", yes)
        .node("no", no)
        .edge("gate", "yes", action="ok")
        .edge("gate", "no", action="deny")
    )
    parent = Flow("route-parent").subflow("sub", blueprint_id="route-child")
    runtime = FlowRuntime(blueprints={"route-child": child})
    paused = await runtime.run(parent)
    assert paused.status == "awaiting"

    resumed = await runtime.resume(parent, paused, node_id="sub", action="deny")

    assert resumed.status == "completed", resumed.errors
    assert resumed.context["sub"]["no"] == "no"
    assert "yes" not in resumed.context["sub"]



async def test_durable_sleep_inside_child_makes_parent_await() -> None:
    counts: Counter[str] = Counter()

    async def wake(ctx: NodeContext) -> str:
        counts["wake"] += 1
        return "awake"

    child = (
        Flow("sleepy-child")
        .sleep("nap", duration="20ms")
        .node("wake", wake)
        .edge("nap", "wake")
    )
    parent = Flow("sleepy-parent").subflow("sub", blueprint_id="sleepy-child")
    runtime = FlowRuntime(blueprints={"sleepy-child": child})

    paused = await runtime.run(parent, durable_timers=True)
    assert paused.status == "awaiting"
    assert paused.awaiting == ["sub"]
    assert counts["wake"] == 0

    await asyncio.sleep(0.06)
    resumed = await runtime.resume(parent, paused.to_json(), node_id="sub")
    assert resumed.status == "completed", resumed.errors
    assert resumed.context["sub"]["wake"] == "awake"
    assert counts["wake"] == 1
