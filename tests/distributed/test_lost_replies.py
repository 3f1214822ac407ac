"""Issue 9 item 5 (resume and scatter): a caller that died after the store recorded its call
but before it queued what the call fired can retry it. The retry fires nothing twice, raises
nothing, and queues what the first call fired. Real redis-server, real arq workers, real
SIGKILLs: the resuming client and the scattering worker are processes that kill themselves at
that point (the `CRASH_AFTER_COMMIT_ENV` hook, between a transition and its dispatch)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dist_helpers import comparable
from dist_scenarios import SCENARIOS, SUBFLOW_CHILDREN, SUBFLOW_PARENTS, wait_flow
from flowcraft_arq import ArqAdapter, FlowcraftClient
from redis.asyncio import Redis
from test_arq_faults import node_finish_counts, worker_processes
from test_hitl import in_memory as hitl_in_memory
from test_subflow_dist import in_memory as subflow_in_memory

from flowcraft import FlowRuntime, ResumeError
from flowcraft.distributed.worker import CRASH_AFTER_COMMIT_ENV

HERE = Path(__file__).resolve().parent
FLOWS = [wait_flow(), *SUBFLOW_CHILDREN, *SUBFLOW_PARENTS]
# flow id -> the node resumed
RESUMES = {"wait_flow": "approval", "parent_waits": "sub"}


async def resume_and_die(url: str, queue: str, prefix: str, run_id: str, node_id: str) -> None:
    """(In a subprocess) resume through the worker-side adapter, whose test hook SIGKILLs
    this process right after the resume script, before anything is queued."""
    async with FlowcraftClient.from_url(url, queue_name=queue, prefix=prefix) as client:
        adapter = ArqAdapter(client.redis, FLOWS, queue_name=queue, prefix=prefix)
        await adapter.resume(run_id, node_id, {"ok": 1})
    raise SystemExit("the crash hook did not fire")


def crashing_resume(redis_url: str, queue: str, prefix: str, run_id: str,
                    node_id: str) -> int:
    env = {**os.environ, CRASH_AFTER_COMMIT_ENV: node_id,
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, __file__, redis_url, queue, prefix, run_id, node_id],
                          env=env, cwd=HERE, timeout=60, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    return done.returncode


async def in_arq_queue(redis: Redis, job_ids: list[str]) -> int:
    return int(await redis.exists(*[f"arq:job:{job_id}" for job_id in job_ids]))


@pytest.mark.parametrize("flow_id", sorted(RESUMES))
async def test_item5_retried_resume_is_idempotent_and_dispatches(
        flow_id: str, arq_worker: Any, flowcraft_client: Any, redis_url: str, fc_queue: str,
        fc_prefix: str) -> None:
    """The resuming client is SIGKILLed right after the resume script (a wait node's: its
    successor is in the outbox, not in the queue; a subflow node's: the parent is parked, its
    child still awaits). Resuming again with the same arguments succeeds, queues what the
    first call fired, and every node runs once; the run ends as in memory. Once everything is
    queued, a further resume is refused (not twice)."""
    node_id = RESUMES[flow_id]
    if flow_id == "wait_flow":
        expected = (await hitl_in_memory(wait_flow, [(node_id, {"ok": 1}, None)]))[-1]
    else:
        parent = next(f for f in SUBFLOW_PARENTS if f.id == flow_id)
        expected = (await subflow_in_memory(parent, [(node_id, {"ok": 1}, None)], "r1"))[-1]
    async with arq_worker(FLOWS), flowcraft_client(FLOWS) as client:
        run_id = await client.start(flow_id, run_id="r1")
        assert (await client.wait(run_id, timeout=20)).awaiting == [node_id]
        crashing_resume(redis_url, fc_queue, fc_prefix, run_id, node_id)
        meta = await client.store.meta(run_id)
        assert meta["status"] == "running" and not await client.store.awaiting(run_id)
        if flow_id == "wait_flow":  # B was decided, and is in the outbox only
            assert [k for k in meta if k.startswith("o:")] == ["o:2#0#0"]
            assert await in_arq_queue(client.redis, [f"{run_id}:B:0:0"]) == 0
        else:  # the parent is parked, the child was not resumed
            assert meta["i:1#0"] == "S"
            assert await client.status("r1/sub#0") == "awaiting"
        await asyncio.sleep(0.3)
        assert await client.result(run_id) is None  # nothing moves by itself
        await client.resume(run_id, node_id=node_id, output={"ok": 1})  # the retry
        result = await client.wait(run_id, timeout=20)
        finishes = await node_finish_counts(client, run_id)
        with pytest.raises(ResumeError):
            await client.resume(run_id, node_id=node_id, output={"ok": 1})
    assert comparable(result) == comparable(expected)
    assert set(finishes.values()) == {1}, finishes
    assert set(finishes) == {"A", "approval", "B"} if flow_id == "wait_flow" else {
        "prep", "sub", "after"}


async def test_item5_retried_scatter_is_idempotent_and_dispatches(
        redis_url: str, fc_queue: str, fc_prefix: str, flowcraft_client: Any, arq_worker: Any,
        redis: Redis, tmp_path: Path) -> None:
    """The worker running the batch node is SIGKILLed right after the scatter script: its
    six items are fired, in the outbox, and not in the queue. arq delivers the batch's job
    again (to a healthy worker, no reconcile): its claim answers 'scattered' with the outbox,
    which that worker queues; every item runs once and the run ends as in memory."""
    factory, context = SCENARIOS["batch"]
    flow = factory()
    expected = await FlowRuntime().run(flow, context=context)
    env = {CRASH_AFTER_COMMIT_ENV: "priced", "FLOWCRAFT_JOB_TIMEOUT": "1"}
    async with flowcraft_client([flow]) as client:
        with worker_processes(1, redis_url, fc_queue, fc_prefix, tmp_path, **env) as (crashy,):
            await crashy.ready(redis)
            run_id = await client.start(flow, context=context)
            deadline = time.monotonic() + 20
            while crashy.process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert crashy.process.returncode == -signal.SIGKILL
        meta = await client.store.meta(run_id)
        assert meta["i:1#0"] == "B"
        assert sorted(k for k in meta if k.startswith("o:")) == [
            f"o:1#0/{k}#0" for k in range(6)]
        items = [f"{run_id}:priced[{k}]:0:0" for k in range(6)]
        assert await in_arq_queue(redis, items) == 0
        async with arq_worker([flow]):
            # no reconcile: the redelivered batch job (after arq's job_timeout + 10 s)
            result = await client.wait(run_id, timeout=60)
            finishes = await node_finish_counts(client, run_id)
        meta = await client.store.meta(run_id)
    assert comparable(result) == comparable(expected)
    # each item done once, at its first epoch (never re-fired), nothing left in the outbox
    assert {k: v for k, v in meta.items() if k.startswith(("i:1#0/", "o:"))} == {
        f"i:1#0/{k}": "D" for k in range(6)}
    assert result.context["prices"] == [{"item": i, "index": i - 1, "price": i * 10}
                                        for i in range(1, 7)]
    assert finishes == {"A": 1, "priced": 1, "B": 1}


if __name__ == "__main__":  # the crashing client of test_item5_retried_resume_...
    asyncio.run(resume_and_die(*sys.argv[1:]))
