"""FlowRuntime behaviour beyond the contract's sections: guards and caching."""

from __future__ import annotations

import asyncio

import pytest

from flowcraft import Flow, FlowcraftError, FlowRuntime, NodeContext


async def slow(ctx: NodeContext) -> str:
    await asyncio.sleep(0.05)
    return "done"


async def test_the_same_run_id_cannot_run_twice_at_once() -> None:
    runtime = FlowRuntime()
    flow = Flow("dup").node("slow", slow)
    first = asyncio.create_task(runtime.run(flow, run_id="r-1"))
    await asyncio.sleep(0.01)
    with pytest.raises(FlowcraftError) as info:
        await runtime.run(flow, run_id="r-1")
    assert str(info.value) == "run 'r-1' is already running on this runtime"
    assert (await first).status == "completed"
    # once finished, the id is free again
    assert (await runtime.run(flow, run_id="r-1")).status == "completed"


async def test_a_blueprint_is_compiled_once_per_runtime() -> None:
    runtime = FlowRuntime()
    flow = Flow("cached").node("slow", slow)
    assert runtime.graph_for(flow) is runtime.graph_for(flow)
    flow.node("more", slow).edge("slow", "more")
    assert runtime.graph_for(flow).by_id.keys() == {"slow", "more"}


async def test_cancel_of_an_unknown_run_returns_false() -> None:
    assert FlowRuntime().cancel("nope") is False
