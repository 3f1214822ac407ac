"""The pytest plugin's fixtures are registered through the pytest11 entry point."""

from __future__ import annotations

from flowcraft import EventRecorder, Flow, FlowRuntime, NodeContext


async def double(ctx: NodeContext) -> int:
    return int(await ctx.context.get("n")) * 2


async def show(ctx: NodeContext) -> str:
    return f"got {ctx.input}"


FLOW = Flow("plugin").node("double", double).node("show", show).edge("double", "show")


async def test_run_flow_fixture_runs_and_records(run_flow, event_recorder) -> None:
    result = await run_flow(FLOW, context={"n": 21})
    assert result.status == "completed"
    assert result.context["show"] == "got 42"
    assert event_recorder.node_order() == ["double", "show"]
    assert event_recorder.types()[0] == "workflow:start"
    assert event_recorder.types()[-1] == "workflow:finish"
    finishes = event_recorder.of("node:finish")
    assert [e.output for e in finishes] == [42, "got 42"]


def test_fixtures_are_wired_together(flow_runtime, event_recorder) -> None:
    assert isinstance(flow_runtime, FlowRuntime)
    assert isinstance(event_recorder, EventRecorder)
    assert flow_runtime.event_bus is event_recorder


def test_plugin_is_registered_as_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("flowcraft") == "flowcraft.testing.plugin"
