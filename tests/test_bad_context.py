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


async def test_a_string_with_a_lone_surrogate_is_rejected_at_set_time() -> None:
    async def writer(ctx: NodeContext) -> None:
        await ctx.context.set("text", "broken \ud800 text")

    result = await FlowRuntime().run(Flow("surrogate").node("writer", writer))
    assert result.status == "failed"
    assert result.errors[0].type == "ContextError"
    assert "'text'" in result.errors[0].message


async def test_non_string_context_keys_are_rejected() -> None:
    async def writer(ctx: NodeContext) -> None:
        await ctx.context.set(5, "five")  # type: ignore[arg-type]

    result = await FlowRuntime().run(Flow("intkey").node("writer", writer))
    assert result.status == "failed"
    assert result.errors[0].type == "ContextError"
    assert "strings" in result.errors[0].message
    with pytest.raises(ContextError, match="strings"):
        await FlowRuntime().run(Flow("intkey2").node("w", writer), context={7: 1})  # type: ignore[dict-item]
