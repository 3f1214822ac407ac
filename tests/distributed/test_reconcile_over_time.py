"""Regression tests for reconcile over time (issue 9 items 3, 5 and 11), each named after its
item, against real redis-server and real arq workers: durable sleeps are not cut short, a run
whose client died right after its start script is found, and a pass costs nothing for runs
that await."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from crash_after_start import relay_flow
from dist_helpers import Cluster
from dist_scenarios import double, parent_flow
from flowcraft_arq import FlowcraftClient, RunKeys, active_key
from flowcraft_arq.reconciler import TASK_CTX_KEY
from flowcraft_arq.testing import RedisServer, running_worker
from redis.asyncio import Redis
from test_arq_faults import node_finish_counts

from flowcraft import Flow, NodeContext
from flowcraft.distributed.memory_run import now_ms
from flowcraft.distributed.protocols import ORPHAN_AFTER_MS

HERE = Path(__file__).resolve().parent


async def clock(ctx: NodeContext) -> float:
    return time.time()


def napping_flow(duration: str) -> Flow:
    """a (its finish time) -> nap (a durable sleep) -> b (its start time)."""
    return (Flow(f"nap_{duration}").node("a", clock).sleep("nap", duration=duration)
            .node("b", clock).edge("a", "nap").edge("nap", "b"))


# -- item 3 ------------------------------------------------------------------------------------


async def test_item3_reconcile_keeps_durable_sleeps(arq_worker: Any,
                                                    flowcraft_client: Any) -> None:
    """A 1 h sleep, and a reconcile with stalled_after=1 s two seconds into it: the node after
    the sleep is fired (its deferred job queued) but counts as fired when that job is due, so
    the pass re-drives nothing; b has not run, its instance keeps epoch 0 and its job is still
    queued for the end of the hour. The run is scored out of reach until then: a second pass
    does not even look at it."""
    flow = napping_flow("1h")
    async with arq_worker([flow], reconcile_every=None), \
            flowcraft_client([flow]) as client:
        redis = client.redis
        run_id = await client.start(flow.id)
        job = f"{run_id}:b:0:0"
        for _ in range(400):
            due = await redis.zscore(client.queue_name, job)
            if due is not None:
                break
            await asyncio.sleep(0.05)
        assert due is not None, "the sleep's successor was never queued"
        await asyncio.sleep(2)
        first = await client.reconcile(stalled_after=1)
        second = await client.reconcile(stalled_after=1)
        await asyncio.sleep(0.5)  # the worker would run a re-driven b by now
        record = (await redis.hget(RunKeys(client.prefix, run_id).meta, "i:2#0") or b"").decode()
        still_due = await redis.zscore(client.queue_name, job)
        queued = await redis.zrange(client.queue_name, 0, -1)
        status = await client.status(run_id)
        finishes = await node_finish_counts_now(client, run_id)
    assert first == {"scanned": 1, "stalled": 1, "reconciled": 0, "failed": 0}
    assert second == {"scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}
    assert status == "running"
    assert finishes == {"a": 1, "nap": 1}
    assert record.startswith("F0|||") and int(record.split("|")[3]) == int(due)
    assert due > (time.time() + 3500) * 1000
    assert (still_due, queued) == (due, [job.encode()])


async def test_item3_and_item11_in_the_reference_model() -> None:
    """MemoryStore keeps the same books: a 1 h sleep's successor is not stalled before the
    sleep ends (even with stalled_after=0), and after one look, sleeping and awaiting runs
    are out of a pass's reach."""
    nap, approval = napping_flow("1h"), approval_flow()
    async with Cluster([nap, approval]) as cluster:
        store = cluster.store
        sleeping = await cluster.adapter.start_run(nap)
        awaiting = [await cluster.adapter.start_run(approval) for _ in range(3)]
        for run_id in awaiting:
            assert (await store.wait_result(run_id, 5)).status == "awaiting"
        async with asyncio.timeout(5):
            while "2#0" not in store.runs[sleeping].inst or store.runs[sleeping].outbox:
                await asyncio.sleep(0.01)
        first = await cluster.adapter.reconcile(stalled_after=0)
        second = await cluster.adapter.reconcile(stalled_after=0)
        scores = {run_id: store.active[run_id] for run_id in [sleeping, *awaiting]}
        epoch = store.runs[sleeping].inst["2#0"].epoch
    assert first == {"scanned": 4, "stalled": 4, "reconciled": 0, "failed": 0}
    assert second == {"scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}
    assert epoch == 0
    assert scores[sleeping] > now_ms() + 3_500_000
    assert [scores[run_id] for run_id in awaiting] == [math.inf] * 3


async def node_finish_counts_now(client: Any, run_id: str) -> dict[str, int]:
    """node:finish counts of a run that is still running (its event stream does not end)."""
    counts: dict[str, int] = {}
    for _stream, items in await client.redis.xread({client.store.keys(run_id).events: b"0-0"}):
        for _id, fields in items:
            for event in await client.store.decode_entry(run_id, fields):
                if event.type == "node:finish":
                    counts[event.node_id] = counts.get(event.node_id, 0) + 1
    return counts


async def test_item3_short_sleep_with_periodic_reconcile_completes_once_on_time(
        arq_worker: Any, flowcraft_client: Any) -> None:
    """A 2 s sleep while the worker's own reconciler runs a pass every 0.2 s with
    stalled_after=0.2 s (ten times shorter than the sleep): b starts only once the sleep is
    over and runs exactly once."""
    flow = napping_flow("2s")
    async with arq_worker([flow], reconcile_every=0.2, reconcile_stalled_after=0.2) as worker, \
            flowcraft_client([flow]) as client:
        run_id = await client.start(flow.id)
        result = await client.wait(run_id, timeout=30)
        finishes = await node_finish_counts(client, run_id)
        reconciler = worker.ctx[TASK_CTX_KEY][0]
    assert result.status == "completed", result.errors
    assert finishes == {"a": 1, "nap": 1, "b": 1}
    assert result.context["b"] - result.context["a"] >= 2.0
    assert reconciler.passes >= 5  # passes ran while it slept


# -- item 5 ------------------------------------------------------------------------------------


async def test_item5_run_of_crashed_client_is_reconciled(
        redis_url: str, fc_queue: str, fc_prefix: str, arq_worker: Any,
        flowcraft_client: Any) -> None:
    """A client SIGKILLed right after its start script ran: the run exists and its start job
    is queued (the script enqueues it itself), and it was registered in the active set before
    the script (write-ahead). Were the queued job lost too, a reconcile pass finds the run and
    drives it to completion, once."""
    run_id = f"crashed-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "FLOWCRAFT_REDIS_URL": redis_url, "FLOWCRAFT_QUEUE": fc_queue,
           "FLOWCRAFT_PREFIX": fc_prefix}
    done = subprocess.run([sys.executable, str(HERE / "crash_after_start.py"), run_id],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    keys, active = RunKeys(fc_prefix, run_id), active_key(fc_prefix)
    flow = relay_flow()
    async with flowcraft_client([flow]) as client:
        redis = client.redis
        assert await redis.hget(keys.meta, "status") == b"running"
        assert [f for f in await redis.hkeys(keys.meta) if f.startswith(b"o:")] == []
        assert await redis.zrange(fc_queue, 0, -1) == [f"{run_id}:a:0:0".encode()]
        assert await redis.zscore(active, run_id) is not None
        # lose the queued job as well: only the registration is left to find the run by
        await redis.delete(f"arq:job:{run_id}:a:0:0")
        await redis.zrem(fc_queue, f"{run_id}:a:0:0")
        async with arq_worker([flow]):
            counts = await client.reconcile(stalled_after=0)
            result = await client.wait(run_id, timeout=30)
            finishes = await node_finish_counts(client, run_id)
        registered = await redis.zscore(active, run_id)
    assert counts == {"scanned": 1, "stalled": 1, "reconciled": 1, "failed": 0}
    assert result.status == "completed", result.errors
    assert (result.context["a"], result.context["b"]) == (1, 2)
    assert finishes == {"a": 1, "b": 1}
    assert registered is None


async def test_item5_reconcile_drops_registrations_whose_run_never_came(
        flowcraft_client: Any) -> None:
    """A client that died between its registration and its start script leaves an id without
    a run: a pass drops it once it is ORPHAN_AFTER_MS old, and keeps a younger one (a start
    still under way, whose script has not run yet)."""
    async with flowcraft_client([relay_flow()]) as client:
        redis, active = client.redis, active_key(client.prefix)
        now = time.time() * 1000
        await redis.zadd(active, {"orphan-old": now - ORPHAN_AFTER_MS - 1000,
                                  "orphan-young": now - 1000})
        counts = await client.reconcile(stalled_after=0)
        left = [m.decode() for m in await redis.zrange(active, 0, -1)]
    assert counts == {"scanned": 2, "stalled": 2, "reconciled": 0, "failed": 0}
    assert left == ["orphan-young"]


# -- item 11 -----------------------------------------------------------------------------------


async def brief_nap(ctx: NodeContext) -> str:
    await asyncio.sleep(1.5)
    return "woke"


BRIEF_CHILD = Flow("brief_child").node("double", double).node("nap", brief_nap) \
    .edge("double", "nap")
BRIEF_PARENT = parent_flow("brief_child", "brief_parent")


async def test_item11_parked_subflow_parent_is_still_reconciled(
        arq_worker: Any, flowcraft_client: Any) -> None:
    """A parent parked on its subflow node has nothing fired, but is not awaiting: a pass that
    looks at it while the child runs scores it to be looked at again `stalled_after` later
    (not out of reach), so when the worker that recorded the child's end never tells the
    parent (here: it loses every notice), the next pass completes the subflow node."""
    async def lose_notices(ctx: dict[str, Any]) -> None:
        ctx["flowcraft_adapter"].notify_parent = lambda child_id: asyncio.sleep(0)

    flows = [BRIEF_CHILD, BRIEF_PARENT]
    async with arq_worker(flows, on_startup=lose_notices, reconcile_every=None), \
            flowcraft_client(flows) as client:
        run_id = await client.start(BRIEF_PARENT.id)
        child_id = f"{run_id}/sub#0"
        async with asyncio.timeout(20):
            while (await client.store.get_values(child_id, ["doubled"]))[0] is None:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)
        first = await client.reconcile(stalled_after=0.5)
        looked = time.monotonic()
        child = await client.wait(child_id, timeout=20)
        await asyncio.sleep(max(0.0, 0.6 - (time.monotonic() - looked)))
        parked = await client.status(run_id)
        second = await client.reconcile(stalled_after=0.5)
        result = await client.wait(run_id, timeout=20)
        finishes = await node_finish_counts(client, run_id)
    assert first == {"scanned": 2, "stalled": 2, "reconciled": 0, "failed": 0}  # both runs
    assert (child.status, parked) == ("completed", "running")
    assert second == {"scanned": 1, "stalled": 1, "reconciled": 1, "failed": 0}
    assert result.status == "completed", result.errors
    assert result.context["after"] == {"got": {"x": 21, "doubled": 42, "double": 42,
                                               "nap": "woke"}, "result": 42}
    assert finishes == {"prep": 1, "sub": 1, "after": 1}



async def done_node(ctx: NodeContext) -> str:
    return "done"


def approval_flow() -> Flow:
    return Flow("approval").wait("approve").node("done", done_node).edge("approve", "done")


async def redis_commands(redis: Redis) -> int:
    """Commands the server executed so far (INFO's own excluded)."""
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


async def until_all(redis: Redis, prefix: str, run_ids: list[str], status: bytes,
                    timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hget(RunKeys(prefix, run_id).meta, "status")
            statuses = await pipe.execute()
        if all(s == status for s in statuses):
            return
        assert time.monotonic() < deadline, f"{statuses.count(status)} of {len(run_ids)}"
        await asyncio.sleep(0.5)


RUNS = 10_000


async def test_item11_reconcile_pass_over_10000_awaiting_runs_is_bounded() -> None:
    """10,000 runs await a resume. The first pass after they paused looks at each once and
    scores it out of reach (+inf); from then on a pass costs a bounded number of Redis commands
    (counted with INFO commandstats on this test's own redis-server), not one per run. A
    resume brings its run back (scored now), and the run completes and leaves the set."""
    server = RedisServer()
    server.start()
    prefix, queue = "fc11", "fc11-queue"
    flow = approval_flow()
    redis = Redis.from_url(server.url)
    try:
        async with FlowcraftClient.from_url(server.url, flows=[flow], queue_name=queue,
                                            prefix=prefix) as client:
            async with running_worker([flow], server.url, queue_name=queue, prefix=prefix,
                                      reconcile_every=None, max_jobs=200):
                run_ids: list[str] = []
                for _ in range(0, RUNS, 200):
                    run_ids += await asyncio.gather(*(client.start(flow.id)
                                                      for _ in range(200)))
                await until_all(redis, prefix, run_ids, b"awaiting", 300)
            active = active_key(prefix)
            before = await redis_commands(redis)
            first = await client.reconcile(stalled_after=0)
            after_first = await redis_commands(redis)
            second = await client.reconcile(stalled_after=0)
            after_second = await redis_commands(redis)
            third = await client.reconcile(stalled_after=0)
            after_third = await redis_commands(redis)
            scores = {score for _, score in await redis.zrange(active, 0, -1, withscores=True)}
            resumed = run_ids[0]
            await client.resume(resumed, "approve", output="ok")
            back = await redis.zscore(active, resumed)
            async with running_worker([flow], server.url, queue_name=queue, prefix=prefix,
                                      reconcile_every=None):
                result = await client.wait(resumed, timeout=30)
            remaining = await redis.zcard(active)
            still_out = await redis.zcount(active, "-inf", "(+inf")
    finally:
        await redis.aclose()
        server.cleanup()
    print(f"\nreconcile over {RUNS} awaiting runs: first pass {after_first - before} "
          f"commands, then {after_second - after_first} and {after_third - after_second}")
    assert first == {"scanned": RUNS, "stalled": RUNS, "reconciled": 0, "failed": 0}
    assert second == third == {"scanned": 0, "stalled": 0, "reconciled": 0, "failed": 0}
    assert after_second - after_first < 50
    assert after_third - after_second < 50
    assert scores == {float("inf")}
    assert back is not None and back <= time.time() * 1000
    assert result.status == "completed" and result.context["done"] == "done"
    assert (remaining, still_out) == (RUNS - 1, 0)
