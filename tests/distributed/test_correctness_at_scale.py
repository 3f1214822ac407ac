"""Regression tests for distributed correctness at scale (issue "Distributed correctness at
scale and over time"), each named after its item, against real redis-server and arq workers."""

from __future__ import annotations

from typing import Any

from flowcraft import Flow, NodeContext


async def emit(ctx: NodeContext) -> int:
    return 1


async def one(ctx: NodeContext) -> int:
    return int(ctx.input) + 1


async def count(ctx: NodeContext) -> int:
    return len(ctx.input)


def wide_fan_out(width: int) -> Flow:
    flow = Flow(f"wide_{width}").node("A", emit).node("J", count)
    for i in range(width):
        flow = flow.node(f"S{i}", one).edge("A", f"S{i}") \
            .edge(f"S{i}", "J")
    return flow


async def test_item_2_the_lease_heartbeat_never_cancels_the_dispatch_of_successors(
        arq_worker: Any, flowcraft_client: Any) -> None:
    """A node that fans out to 300 successors, with a lease short enough that the heartbeat
    renews several times while its successors are enqueued: the renewal that finds the
    instance committed must not cancel that dispatch. Every successor runs and the join gets
    all 300 inputs."""
    flow = wide_fan_out(300)
    async with arq_worker([flow], lease_ms=300, max_jobs=32), \
            flowcraft_client([flow]) as client:
        run_id = await client.start(flow.id)
        result = await client.wait(run_id, timeout=60)
    assert result.status == "completed", result.errors
    assert result.context["J"] == 300
    assert sum(1 for key in result.context if key.startswith("_outputs.S")) == 300
