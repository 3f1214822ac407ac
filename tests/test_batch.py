"""Batch (scatter/gather): issue 3 item 2; CONTRACT §3, §8 (batch), §12.12."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from flowcraft import (
    BlueprintError,
    EventRecorder,
    Flow,
    FlowRuntime,
    Node,
    NodeConfig,
    NodeContext,
)


async def load_items(ctx: NodeContext) -> None:
    """Nothing: the items come from the initial context."""


def batch_flow(worker: Any, **batch_kw: Any) -> Flow:
    return (
        Flow("batch-flow")
        .node("start", load_items)
        .batch("work", worker, input_key="items", **batch_kw)
        .edge("start", "work")
    )


async def test_thousand_items_concurrency_ten_never_exceeds_ten_in_flight() -> None:
    in_flight = 0
    peak = 0
    calls = 0

    async def worker(ctx: NodeContext) -> int:
        nonlocal in_flight, peak, calls
        in_flight += 1
        calls += 1
        peak = max(peak, in_flight)
        try:
            # uneven tiny pauses, so items finish out of order
            for _ in range(ctx.input % 3 + 1):
                await asyncio.sleep(0)
            return ctx.input * 2
        finally:
            in_flight -= 1

    items = list(range(1000))
    flow = batch_flow(worker, output_key="doubled", concurrency=10)
    result = await FlowRuntime().run(flow, context={"items": items})

    assert result.status == "completed", result.errors
    assert calls == 1000
    assert peak <= 10
    assert peak == 10  # the bound is reached, so the measurement means something
    assert result.context["doubled"] == [i * 2 for i in items]


async def test_outputs_are_in_item_order_not_completion_order() -> None:
    finished: list[int] = []

    async def worker(ctx: NodeContext) -> str:
        # later items finish first
        await asyncio.sleep((10 - ctx.input) * 0.002)
        finished.append(ctx.input)
        return f"item-{ctx.input}"

    result = await FlowRuntime().run(batch_flow(worker), context={"items": list(range(10))})

    assert result.status == "completed", result.errors
    assert finished != sorted(finished)
    assert result.context["work"] == [f"item-{i}" for i in range(10)]


async def test_default_output_key_is_batch_id_and_successor_gets_list() -> None:
    async def worker(ctx: NodeContext) -> int:
        return ctx.input + 1

    async def total(ctx: NodeContext) -> int:
        return sum(ctx.input)

    flow = batch_flow(worker).node("total", total).edge("work", "total")
    result = await FlowRuntime().run(flow, context={"items": [1, 2, 3]})

    assert result.status == "completed", result.errors
    assert result.context["work"] == [2, 3, 4]
    assert result.context["_outputs.work"] == [2, 3, 4]
    assert result.context["total"] == 9


async def test_explicit_output_key() -> None:
    async def worker(ctx: NodeContext) -> str:
        return ctx.input.upper()

    flow = batch_flow(worker, output_key="shouted")
    result = await FlowRuntime().run(flow, context={"items": ["a", "b"]})

    assert result.status == "completed", result.errors
    assert result.context["shouted"] == ["A", "B"]


async def test_empty_list_gives_empty_list() -> None:
    calls = 0

    async def worker(ctx: NodeContext) -> int:
        nonlocal calls
        calls += 1
        return 1

    async def after(ctx: NodeContext) -> Any:
        return ctx.input

    flow = batch_flow(worker, output_key="out", concurrency=3).node("after", after).edge(
        "work", "after")
    result = await FlowRuntime().run(flow, context={"items": []})

    assert result.status == "completed", result.errors
    assert calls == 0
    assert result.context["out"] == []
    assert result.context["after"] == []


@pytest.mark.parametrize("value", ["not a list", {"a": 1}, 42, None])
async def test_non_list_input_fails_with_message_naming_the_key(value: Any) -> None:
    calls = 0

    async def worker(ctx: NodeContext) -> int:
        nonlocal calls
        calls += 1
        return 1

    context = {"items": value} if value is not None else {}
    result = await FlowRuntime().run(batch_flow(worker), context=context)

    assert result.status == "failed"
    assert calls == 0
    assert len(result.errors) == 1
    error = result.errors[0]
    assert error.node_id == "work"
    assert "items" in error.message
    assert "list" in error.message


async def test_one_worker_failure_fails_the_batch_node() -> None:
    after_calls = 0

    async def worker(ctx: NodeContext) -> int:
        if ctx.input == 3:
            raise ValueError("item three is broken")
        return ctx.input

    async def after(ctx: NodeContext) -> None:
        nonlocal after_calls
        after_calls += 1

    flow = batch_flow(worker, concurrency=2).node("after", after).edge("work", "after")
    result = await FlowRuntime().run(flow, context={"items": list(range(6))})

    assert result.status == "failed"
    assert after_calls == 0
    assert [e.node_id for e in result.errors] == ["work"]
    assert "item three is broken" in result.errors[0].message
    assert "after" not in result.context


async def test_retries_apply_per_item() -> None:
    attempts: Counter[int] = Counter()

    async def worker(ctx: NodeContext) -> str:
        attempts[ctx.input] += 1
        if ctx.attempt == 1:
            raise ConnectionError(f"flaky on item {ctx.input}")
        return f"ok {ctx.input} on attempt {ctx.attempt}"

    flow = batch_flow(worker, max_retries=2, concurrency=3)
    result = await FlowRuntime().run(flow, context={"items": [10, 20, 30, 40]})

    assert result.status == "completed", result.errors
    assert attempts == Counter({10: 2, 20: 2, 30: 2, 40: 2})
    assert result.context["work"] == [f"ok {i} on attempt 2" for i in (10, 20, 30, 40)]


async def test_retries_exhausted_per_item_fail_the_batch() -> None:
    attempts: Counter[int] = Counter()

    async def worker(ctx: NodeContext) -> str:
        attempts[ctx.input] += 1
        if ctx.input == 2:
            raise ConnectionError("always down")
        return "ok"

    flow = batch_flow(worker, config=NodeConfig(max_retries=3))
    result = await FlowRuntime().run(flow, context={"items": [1, 2]})

    assert result.status == "failed"
    assert attempts[2] == 3
    assert attempts[1] == 1
    assert result.errors[0].node_id == "work"


async def test_fallback_applies_per_item() -> None:
    async def worker(ctx: NodeContext) -> str:
        if ctx.input == "bad":
            raise ValueError("bad item")
        return f"good:{ctx.input}"

    async def rescue(ctx: NodeContext) -> str:
        return "rescued"

    flow = (
        batch_flow(worker, config=NodeConfig(fallback="rescue"))
        .node("rescue", rescue)
    )
    result = await FlowRuntime().run(flow, context={"items": ["a", "bad", "c"]})

    assert result.status == "completed", result.errors
    assert result.context["work"] == ["good:a", "rescued", "good:c"]


async def test_worker_gets_item_as_input_and_index_in_params() -> None:
    seen: list[tuple[int, str]] = []

    async def worker(ctx: NodeContext) -> dict[str, Any]:
        seen.append((ctx.params["index"], ctx.input))
        return {"index": ctx.params["index"], "item": ctx.input}

    items = ["x", "y", "z", "x"]
    result = await FlowRuntime().run(batch_flow(worker, concurrency=2),
                                     context={"items": items})

    assert result.status == "completed", result.errors
    assert sorted(seen) == [(0, "x"), (1, "y"), (2, "z"), (3, "x")]
    assert result.context["work"] == [{"index": i, "item": it} for i, it in enumerate(items)]


async def test_sync_worker_runs_too() -> None:
    def worker(ctx: NodeContext) -> int:
        return ctx.input * ctx.input

    result = await FlowRuntime().run(batch_flow(worker, concurrency=2),
                                     context={"items": [1, 2, 3]})
    assert result.status == "completed", result.errors
    assert result.context["work"] == [1, 4, 9]


async def test_batch_start_and_finish_events() -> None:
    async def worker(ctx: NodeContext) -> int:
        return ctx.input

    recorder = EventRecorder()
    result = await FlowRuntime(event_bus=recorder).run(
        batch_flow(worker, concurrency=2), context={"items": [1, 2, 3]})

    assert result.status == "completed"
    types = recorder.types()
    assert types.count("batch:start") == 1
    assert types.count("batch:finish") == 1
    assert types.index("batch:start") < types.index("batch:finish")
    (start,) = recorder.of("batch:start")
    (finish,) = recorder.of("batch:finish")
    for event in (start, finish):
        assert event.node_id == "work"
        assert event.run_id == result.run_id
        assert event.blueprint_id == "batch-flow"


async def test_batch_inside_a_loop_runs_per_iteration() -> None:
    calls = 0

    async def bump(ctx: NodeContext) -> int:
        n = await ctx.context.get("n", 0) + 1
        await ctx.context.set("n", n)
        await ctx.context.set("items", list(range(n)))
        return n

    async def worker(ctx: NodeContext) -> int:
        nonlocal calls
        calls += 1
        return ctx.input

    flow = (
        Flow("batch-loop")
        .node("bump", bump)
        .batch("work", worker, input_key="items", concurrency=2)
        .edge("bump", "work")
        .loop("lp", start="bump", end="work", condition="n < 3")
    )
    result = await FlowRuntime().run(flow)

    assert result.status == "completed", result.errors
    assert calls == 1 + 2 + 3
    assert result.context["work"] == [0, 1, 2]


def test_bad_concurrency_rejected_at_build_time() -> None:
    async def worker(ctx: NodeContext) -> None:
        return None

    with pytest.raises(BlueprintError):
        Flow("bad").batch("b", worker, input_key="items", concurrency=0)


async def test_class_node_worker() -> None:
    class Square(Node):
        async def exec(self, prepared: Any, ctx: NodeContext) -> int:
            return prepared * prepared

    flow = batch_flow(Square, concurrency=2)
    result = await FlowRuntime().run(flow, context={"items": [2, 3, 4]})

    assert result.status == "completed", result.errors
    assert result.context["work"] == [4, 9, 16]
