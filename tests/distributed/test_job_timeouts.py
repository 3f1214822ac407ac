"""Issue 9 item 6: no job is dropped silently by arq's own limits.

arq neither retries a job that ran past its `job_timeout` nor runs a job whose `max_tries` are
used up; before, both left the run `running` with nothing queued. Real redis-server, real
in-process arq workers."""

from __future__ import annotations

import time
from typing import Any

import anyio
from dist_scenarios import echo, never

from flowcraft import Flow, NodeContext


async def settled(worker: Any, jobs: int) -> None:
    """Wait until the in-process worker finished `jobs` jobs normally (the run's end is
    recorded just before its last job returns)."""
    with anyio.fail_after(10):
        while worker.jobs_complete < jobs:
            await anyio.sleep(0.02)


async def hangs(ctx: NodeContext) -> str:
    await ctx.context.set("hangs_started", True)
    await anyio.sleep(60)
    return "woke"


async def item_hangs(ctx: NodeContext) -> int:
    if ctx.input == 2:
        await anyio.sleep(60)
    return int(ctx.input)


async def test_item6_node_past_job_timeout_is_not_dropped(arq_worker: Any,
                                                          flowcraft_client: Any) -> None:
    """A node still running near arq's job_timeout fails its run promptly with a
    NodeTimeoutError naming the node and the timeout; its successor never runs, and the arq
    job ends normally (nothing left to arq, which would have dropped it)."""
    flow = Flow("past_timeout").node("A", echo).node("B", hangs).node("C", never)
    flow.edge("A", "B").edge("B", "C")
    async with arq_worker([flow], job_timeout=2.0) as worker, \
            flowcraft_client([flow]) as client:
        started = time.monotonic()
        run_id = await client.start("past_timeout", context={"k": 1})
        result = await client.wait(run_id, timeout=20)
        elapsed = time.monotonic() - started
        await settled(worker, 2)
    assert result.status == "failed"
    assert [(e.node_id, e.type) for e in result.errors] == [("B", "NodeTimeoutError")]
    message = result.errors[0].message
    assert "'B'" in message and "job timeout of 2 s" in message and run_id in message
    assert "never_ran" not in result.context and "C" not in result.context
    assert "hangs_started" not in result.context  # a failed node's writes are not kept
    assert 1.5 < elapsed < 10  # the worker's deadline (1.8 s), not arq's, and not never
    assert worker.jobs_failed == 0  # arq saw every job end normally


async def test_item6_batch_item_past_job_timeout_fails_the_batch(arq_worker: Any,
                                                                 flowcraft_client: Any) -> None:
    """The same for one item of a batch: the batch node fails with NodeTimeoutError."""
    flow = (Flow("item_past_timeout")
            .batch("B", item_hangs, input_key="_items", output_key="out").node("C", never)
            .edge("B", "C"))
    async with arq_worker([flow], job_timeout=2.0), flowcraft_client([flow]) as client:
        run_id = await client.start("item_past_timeout", context={"_items": [0, 1, 2, 3]})
        result = await client.wait(run_id, timeout=20)
    assert result.status == "failed"
    assert [(e.node_id, e.type) for e in result.errors] == [("B", "NodeTimeoutError")]
    assert "never_ran" not in result.context


async def test_item6_version_grace_outlives_max_tries(arq_worker: Any,
                                                      flowcraft_client: Any) -> None:
    """With max_tries=3 and a 2 s grace period, the version retries are spread so that the
    tries last the whole grace period (before: every 0.5 s, so arq dropped the job after
    1 s and the run stayed `running`); the last try fails the run with
    BlueprintVersionError."""
    old = Flow("graced", version="1").node("A", echo).node("B", echo).edge("A", "B")
    new = Flow("graced", version="2").node("A", echo).node("B", echo).edge("A", "B")
    async with arq_worker([new], version_grace_s=2.0, max_tries=3) as worker, \
            flowcraft_client([old]) as client:
        started = time.monotonic()
        run_id = await client.start("graced", context={"k": 1})
        result = await client.wait(run_id, timeout=20)
        elapsed = time.monotonic() - started
        await settled(worker, 1)
    assert result.status == "failed"
    assert [(e.node_id, e.type) for e in result.errors] == [("A", "BlueprintVersionError")]
    assert "version '1'" in result.errors[0].message
    assert "A" not in result.context
    assert worker.jobs_retried == 2 and worker.jobs_failed == 0  # tries 1, 2 retried; 3 failed
    assert elapsed >= 1.9  # the grace period was waited out


async def test_item6_version_grace_with_a_single_try_fails_at_once(
        arq_worker: Any, flowcraft_client: Any) -> None:
    """max_tries=1 leaves no retry: the job fails its run at once instead of vanishing."""
    old = Flow("one_try", version="1").node("A", echo)
    new = Flow("one_try", version="2").node("A", echo)
    async with arq_worker([new], version_grace_s=30.0, max_tries=1) as worker, \
            flowcraft_client([old]) as client:
        result = await client.wait(await client.start("one_try"), timeout=10)
        await settled(worker, 1)
    assert [(e.node_id, e.type) for e in result.errors] == [("A", "BlueprintVersionError")]
    assert worker.jobs_retried == 0 and worker.jobs_failed == 0
