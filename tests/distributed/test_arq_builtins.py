"""Batch items as jobs spread over workers (CONTRACT §8 batch), version safety (§9.7)."""

from __future__ import annotations

from typing import Any

from dist_scenarios import batch_flow, echo, make_lines

from flowcraft import Flow, FlowRuntime, NodeContext


async def slow_item(ctx: NodeContext) -> int:
    import asyncio

    await asyncio.sleep(0.05)
    return int(ctx.input) * 2


def wide_batch() -> Flow:
    return (Flow("wide").node("A", make_lines).batch("B", slow_item, input_key="lines")
            .node("C", echo).edge("A", "B").edge("B", "C"))


async def test_batch_items_are_jobs_spread_over_all_workers(arq_worker: Any,
                                                            flowcraft_client: Any) -> None:
    flow = wide_batch()
    expected = await FlowRuntime().run(flow, context={"count": 40})
    async with arq_worker([flow], max_jobs=4) as first, arq_worker([flow], max_jobs=4) as second, \
            flowcraft_client([flow]) as client:
        run_id = await client.start("wide", context={"count": 40})
        result = await client.wait(run_id, timeout=30)
        events = [e async for e in client.events(run_id)]
    assert result.status == "completed"
    assert result.context == expected.context
    assert result.context["B"] == [2 * i for i in range(1, 41)]
    # one job per item (40), and one for A, which runs on B (fusion: B's scatter is claimed by
    # A's commit); C runs on in the job of the item that completed the batch; none failed or
    # retried
    assert first.jobs_complete + second.jobs_complete == 41
    assert first.jobs_failed + second.jobs_failed + first.jobs_retried + second.jobs_retried == 0
    # the split between the workers depends on timing: only a generous bound
    assert first.jobs_complete >= 5 and second.jobs_complete >= 5
    assert [e.type for e in events if e.type.startswith("batch:")] == ["batch:start",
                                                                       "batch:finish"]


async def test_version_mismatch_is_not_executed_then_fails_after_grace(
        arq_worker: Any, flowcraft_client: Any) -> None:
    old = Flow("versioned", version="1").node("A", echo).node("B", echo).edge("A", "B")
    new = Flow("versioned", version="2").node("A", echo).node("B", echo).edge("A", "B")
    async with arq_worker([new], version_grace_s=0.6), flowcraft_client([old]) as client:
        run_id = await client.start("versioned", context={"k": 1})
        result = await client.wait(run_id, timeout=30)
    assert result.status == "failed"
    assert [(e.node_id, e.type) for e in result.errors] == [("A", "BlueprintVersionError")]
    assert "A" not in result.context
    assert "version '1'" in result.errors[0].message


async def test_batch_flow_output_key(arq_worker: Any, flowcraft_client: Any) -> None:
    flow = batch_flow(name="batch_out")
    async with arq_worker([flow]), flowcraft_client([flow]) as client:
        result = await client.wait(await client.start("batch_out", context={"count": 3}))
    assert result.context["prices"] == result.context["priced"]
    assert [p["index"] for p in result.context["prices"]] == [0, 1, 2]
