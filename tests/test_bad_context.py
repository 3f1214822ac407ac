"""Hostile context values fail where they are written, with a ContextError naming the key."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flowcraft import ContextError, Flow, FlowRuntime, NodeContext

deep: Any = 1
for _ in range(100_000):
    deep = [deep]

HOSTILE = {
    "object": object(),
    "lock": threading.Lock(),
    "function": print,
    "set-of-objects": {object()},
    "deeply-nested": deep,
    "generator": (i for i in range(3)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_initial_context_rejects_hostile_values(name: str) -> None:
    flow = Flow("ctx").node("a", lambda ctx: None)
    with pytest.raises(ContextError, match="'evil'"):
        await FlowRuntime().run(flow, context={"evil": HOSTILE[name]})


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_a_node_writing_a_hostile_value_fails_and_other_runs_are_unaffected(
        name: str) -> None:
    async def writer(ctx: NodeContext) -> str:
        await ctx.context.set("evil", HOSTILE[name])
        return "unreachable"

    async def healthy(ctx: NodeContext) -> int:
        return 42

    runtime = FlowRuntime()
    bad = await runtime.run(Flow("bad").node("writer", writer))
    assert bad.status == "failed"
    assert bad.errors[0].type == "ContextError"
    assert "'evil'" in bad.errors[0].message and "'writer'" in bad.errors[0].message
    assert "evil" not in bad.context
    good = await runtime.run(Flow("good").node("healthy", healthy))
    assert good.status == "completed" and good.context["healthy"] == 42


async def test_a_hostile_output_fails_the_node_naming_it() -> None:
    async def returns_lock(ctx: NodeContext) -> Any:
        return threading.Lock()

    result = await FlowRuntime().run(Flow("out").node("locky", returns_lock))
    assert result.status == "failed"
    assert result.errors[0].type == "ContextError"
    assert "locky" in result.errors[0].message
