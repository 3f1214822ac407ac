"""Regression tests for distributed correctness at scale (issue "Distributed correctness at
scale and over time"), each named after its item, against real redis-server and arq workers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from flowcraft import Flow, NodeContext
from flowcraft.distributed import InstanceRef


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


async def double(ctx: NodeContext) -> int:
    return int(ctx.input) * 2


def big_batch() -> Flow:
    async def items(ctx: NodeContext) -> None:
        await ctx.context.set("items", list(range(2500)))

    return (Flow("big_batch").node("make", items).batch("work", double, input_key="items")
            .node("total", count).edge("make", "work").edge("work", "total"))


async def test_item_1_large_fan_outs_and_batches_finish(arq_worker: Any,
                                                        flowcraft_client: Any) -> None:
    """2,500 successors into an `all` join, and a batch of 2,500 items: one script writes or
    reads thousands of fields, which Lua's unpack cannot spread in one call (it failed half
    applied and left the run running). Both complete."""
    wide, batch = wide_fan_out(2500), big_batch()
    async with arq_worker([wide, batch], max_jobs=64), \
            flowcraft_client([wide, batch]) as client:
        wide_run = await client.start(wide.id)
        batch_run = await client.start(batch.id)
        wide_result = await client.wait(wide_run, timeout=90)
        batch_result = await client.wait(batch_run, timeout=90)
    assert wide_result.status == "completed", wide_result.errors
    assert wide_result.context["J"] == 2500
    assert batch_result.status == "completed", batch_result.errors
    assert batch_result.context["work"] == [2 * i for i in range(2500)]
    assert batch_result.context["total"] == 2500


async def test_item_8_two_apps_on_one_redis_with_default_queue_names(redis_url: str) -> None:
    """Two apps with different key prefixes and no queue_name: each has its own queue (named
    after its prefix), so neither takes the other's jobs; all 16 runs complete."""
    from flowcraft_arq import FlowcraftClient
    from flowcraft_arq.testing import running_worker

    flow = wide_fan_out(3)
    apps = [f"app{n}-{uuid.uuid4().hex[:6]}" for n in (1, 2)]
    async with running_worker([flow], redis_url, prefix=apps[0], queue_name=None), \
            running_worker([flow], redis_url, prefix=apps[1], queue_name=None), \
            FlowcraftClient.from_url(redis_url, flows=[flow], prefix=apps[0]) as one, \
            FlowcraftClient.from_url(redis_url, flows=[flow], prefix=apps[1]) as two:
        assert (one.queue_name, two.queue_name) == (apps[0], apps[1])
        runs = [(client, await client.start(flow.id)) for client in (one, two) for _ in range(8)]
        results = [await client.wait(run_id, timeout=30) for client, run_id in runs]
    assert [r.status for r in results] == ["completed"] * 16
    assert [r.context["J"] for r in results] == [3] * 16


async def test_item_10_a_key_prefix_with_braces_is_refused(redis_url: str) -> None:
    from flowcraft_arq import FlowcraftClient, worker_settings

    from flowcraft import FlowcraftError

    for prefix in ("app{1}", "a}b", ""):
        with pytest.raises(FlowcraftError, match="must be non-empty and must not contain"):
            FlowcraftClient.from_url(redis_url, prefix=prefix)
        with pytest.raises(FlowcraftError, match=r"key prefix .* must be non-empty"):
            worker_settings([], prefix=prefix)


def test_item_9_the_flowcraft_script_answers_bad_input_with_exit_2_and_one_line(
        redis_url: str) -> None:
    """The installed `flowcraft` script (not `python -m flowcraft_arq.cli`): a malformed Redis
    URL and a malformed `--output` end with exit code 2 and one line on stderr, no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "flowcraft"
    root = Path(__file__).resolve().parents[2]
    cases = {
        "flowcraft: Redis URL must specify one of the following schemes":
            ["status", "some-run", "--redis", "not-a-url"],
        "flowcraft: --output is not JSON":
            ["resume", "some-run", "--redis", redis_url, "--flow",
             "examples.order_processing:flow", "--output", "{not json"],
    }
    for expected, argv in cases.items():
        done = subprocess.run([str(script), *argv], capture_output=True, text=True, timeout=60,
                              cwd=root)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith(expected), done.stderr


async def _die_holding(store: Any, run_id: str) -> None:
    """What a worker that dies with A's job does: claim A (a 1 ms lease) and never finish."""
    assert (await store.claim(InstanceRef(run_id, 0), uuid.uuid4().hex[:8], 1)).ok
    await asyncio.sleep(0.01)


async def test_item_7_an_instance_re_driven_max_redrives_times_fails_the_run(
        flowcraft_client: Any) -> None:
    """CONTRACT §13.5: every delivery of A's job dies holding it; every reconcile re-drives it
    with a new epoch, until it was re-driven max_redrives (5) times: the next pass fails the
    run with NodeExecutionError naming the node and the count, instead of re-driving it
    forever."""
    flow = wide_fan_out(2)
    async with flowcraft_client([flow]) as client:
        run_id = await client.start(flow.id)
        passes = []
        for _ in range(6):
            await _die_holding(client.store, run_id)
            passes.append(await client.reconcile(stalled_after=0))
        result = await client.wait(run_id, timeout=10)
    assert [p["reconciled"] for p in passes] == [1] * 6
    assert result.status == "failed"
    assert [(e.node_id, e.type) for e in result.errors] == [("A", "NodeExecutionError")]
    assert result.errors[0].message == (
        f"node 'A' of run {run_id!r} was re-driven 5 times without completing "
        "(max_redrives=5)")


async def test_item_7_a_job_waiting_in_a_backed_up_queue_is_never_given_up(
        flowcraft_client: Any, arq_worker: Any) -> None:
    """Re-driving an instance nobody claimed yet (its job waits in a long queue, or was lost)
    does not count towards max_redrives: eight passes later the run is still running, and a
    worker then completes it."""
    flow = wide_fan_out(2)
    async with flowcraft_client([flow]) as client:
        run_id = await client.start(flow.id)
        passes = []
        for _ in range(8):
            await asyncio.sleep(0.005)  # a pass looks at runs whose score is in the past
            passes.append(await client.reconcile(stalled_after=0))
        status = await client.status(run_id)
        async with arq_worker([flow]):
            result = await client.wait(run_id, timeout=30)
    assert [p["reconciled"] for p in passes] == [1] * 8
    assert status == "running"
    assert result.status == "completed", result.errors


async def test_item_7_the_memory_store_gives_up_the_same_way() -> None:
    from flowcraft.distributed import BaseDistributedAdapter, MemoryQueue, MemoryStore

    flow = wide_fan_out(2)
    store, queue = MemoryStore(), MemoryQueue()  # nobody serves the queue: jobs are lost
    adapter = BaseDistributedAdapter(store, queue, [flow], max_redrives=2)
    run_id = await adapter.start_run(flow)
    passes = []
    for _ in range(3):
        await _die_holding(store, run_id)
        passes.append(await adapter.reconcile(stalled_after=0))
    result = await store.wait_result(run_id, 5)
    queue.close()
    assert [p["reconciled"] for p in passes] == [1, 1, 1]
    assert result.status == "failed"
    assert result.errors[0].message == (
        f"node 'A' of run {run_id!r} was re-driven 2 times without completing "
        "(max_redrives=2)")


async def test_item_10_context_change_events_are_in_the_distributed_event_log(
        arq_worker: Any, flowcraft_client: Any) -> None:
    """A node's context writes appear in the run's event log (client.events) as the same
    `context:change` events (key, op, node, value) an in-memory run's event bus receives."""
    from flowcraft import EventRecorder, FlowRuntime

    async def write(ctx: NodeContext) -> str:
        await ctx.context.set("order", {"id": 7})
        await ctx.context.set("note", "first")
        await ctx.context.delete("note")
        return "ok"

    async def read(ctx: NodeContext) -> int:
        order = await ctx.context.get("order")
        await ctx.context.set("total", order["id"] * 2)
        return 1

    flow = Flow("ctx_changes").node("W", write).node("R", read).edge("W", "R")
    recorder = EventRecorder()
    await FlowRuntime(event_bus=recorder).run(flow)

    def changes(events: Any) -> list[tuple[Any, ...]]:
        return [(e.key, e.op, e.node_id, e.value) for e in events if e.type == "context:change"]

    async with arq_worker([flow]), flowcraft_client([flow]) as client:
        run_id = await client.start(flow.id)
        assert (await client.wait(run_id, timeout=30)).status == "completed"
        logged = [e async for e in client.events(run_id)]
    assert changes(logged) == changes(recorder.events)
    assert [c[:3] for c in changes(logged)] == [
        ("order", "set", "W"), ("note", "set", "W"), ("note", "delete", "W"),
        ("total", "set", "R")]


def large_joins(width: int) -> Flow:
    """A source, `width` branches of which every third is not taken (its condition is false),
    each feeding an `all` join and an `any` join, then a node after each join: the joins have
    more incoming edges than a commit carries (spec.SMALL_JOIN), so the scripts read their
    records from the graph's hash, also while propagating the skips."""
    flow = (Flow(f"large_joins_{width}").node("A", emit).node("ALL", count)
            .node("ANY", count, join="any").node("after_all", one).node("after_any", one)
            .edge("ALL", "after_all").edge("ANY", "after_any"))
    for i in range(width):
        condition = "false" if i % 3 == 0 else None
        flow = (flow.node(f"S{i}", one).edge("A", f"S{i}", condition=condition)
                .edge(f"S{i}", "ALL").edge(f"S{i}", "ANY"))
    return flow


async def test_item_1_large_joins_with_skipped_branches_match_in_memory(
        arq_worker: Any, flowcraft_client: Any) -> None:
    from dist_helpers import comparable

    from flowcraft import FlowRuntime

    flow = large_joins(40)
    expected = await FlowRuntime().run(flow)
    async with arq_worker([flow]), flowcraft_client([flow]) as client:
        result = await client.wait(await client.start(flow.id), timeout=60)
    assert comparable(result) == comparable(expected)
    assert result.status == "completed"
    assert sum(1 for key in result.context if key.startswith("_outputs.S")) == 26
