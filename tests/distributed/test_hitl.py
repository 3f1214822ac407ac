"""Wait / resume and durable sleep, distributed (CONTRACT §8, §9.9, §12.18): the same results
as `FlowRuntime.run` + `FlowRuntime.resume`, through the in-memory store and through arq."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from dist_helpers import Cluster, comparable
from dist_scenarios import HITL_FLOWS, sleep_flow, two_waits, wait_actions, wait_flow

from flowcraft import Flow, FlowRuntime, ResumeError, WorkflowResult

# (flow factory, [(node_id, output, action), ...]) resumed in order
CASES: dict[str, Any] = {
    "wait": (wait_flow, [("approval", {"ok": True}, None)]),
    "two_waits": (two_waits, [("w2", "second", None), ("w1", "first", None)]),
    "wait_approve": (wait_actions, [("review", {"by": "ann"}, "approve")]),
    "wait_reject": (wait_actions, [(None, {"by": "bob"}, "reject")]),
}


async def in_memory(factory: Any, steps: list[Any]) -> list[WorkflowResult]:
    runtime = FlowRuntime()
    flow = factory()
    results = [await runtime.run(flow)]
    for node_id, output, action in steps:
        results.append(await runtime.resume(flow, results[-1], node_id, output, action))
    return results


@pytest.mark.parametrize("name", sorted(CASES))
async def test_memory_store_wait_resume(name: str) -> None:
    factory, steps = CASES[name]
    expected = await in_memory(factory, steps)
    async with Cluster(HITL_FLOWS) as cluster:
        flow = factory()
        run_id = await cluster.adapter.start_run(flow)
        got = [await cluster.store.wait_result(run_id, 5)]
        for node_id, output, action in steps:
            await cluster.adapter.resume(run_id, node_id, output, action)
            got.append(await cluster.store.wait_result(run_id, 5))
    assert [comparable(r) for r in got] == [comparable(r) for r in expected]


@pytest.mark.parametrize("name", sorted(CASES))
async def test_arq_wait_resume(name: str, arq_worker: Any, flowcraft_client: Any) -> None:
    factory, steps = CASES[name]
    expected = await in_memory(factory, steps)
    async with arq_worker(HITL_FLOWS), flowcraft_client(HITL_FLOWS) as client:
        run_id = await client.start(factory().id)
        got = [await client.wait(run_id, timeout=20)]
        assert await client.status(run_id) == "awaiting"
        for node_id, output, action in steps:
            await client.resume(run_id, node_id=node_id, output=output, action=action)
            got.append(await client.wait(run_id, timeout=20))
    assert [comparable(r) for r in got] == [comparable(r) for r in expected]


async def test_resume_errors(arq_worker: Any, flowcraft_client: Any) -> None:
    async with arq_worker(HITL_FLOWS), flowcraft_client(HITL_FLOWS) as client:
        run_id = await client.start("two_waits")
        paused = await client.wait(run_id, timeout=20)
        assert paused.awaiting == ["w1", "w2"]
        with pytest.raises(ResumeError):
            await client.resume(run_id, output=1)  # ambiguous: two nodes await
        with pytest.raises(ResumeError):
            await client.resume(run_id, node_id="A", output=1)  # A is not awaiting
        await client.resume(run_id, node_id="w1", output=1)
        with pytest.raises(ResumeError):
            await client.resume(run_id, node_id="w1", output=1)  # not twice


async def test_durable_sleep_is_a_deferred_job_that_survives_a_worker_restart(
        arq_worker: Any, flowcraft_client: Any) -> None:
    flow = sleep_flow()
    expected = await FlowRuntime().run(flow)
    async with flowcraft_client([flow]) as client:
        async with arq_worker([flow]):
            run_id = await client.start("sleep_flow")
            b_job = f"{run_id}:B:0:0".encode()
            # A and nap finish quickly; B waits, deferred, in the arq queue
            while await client.redis.zscore(client.queue_name, b_job) is None:
                await asyncio.sleep(0.01)
        # no worker holds anything while the run sleeps; a new worker picks B up when due
        score = await client.redis.zscore(client.queue_name, b_job)
        assert score > time.time() * 1000, "B is deferred into the future"
        assert "B" not in await client.store.get_context(run_id)
        async with arq_worker([flow]):
            result = await client.wait(run_id, timeout=20)
    assert comparable(result) == comparable(expected)


def test_flows_have_distinct_ids() -> None:
    ids = [f.id for f in HITL_FLOWS]
    assert len(ids) == len(set(ids))
    assert isinstance(HITL_FLOWS[0], Flow)
