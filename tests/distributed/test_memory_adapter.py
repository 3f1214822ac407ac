"""BaseDistributedAdapter on the in-memory store and queue (CONTRACT §9, last paragraph).

Fast unit tests of the technology-agnostic job handling: the same scenarios as the arq suite,
run through `MemoryStore` + `MemoryQueue` and compared with `FlowRuntime`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dist_helpers import Cluster, comparable
from dist_scenarios import DAG_FLOWS, SCENARIOS, diamond, random_dag
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcraft import Flow, FlowRuntime
from flowcraft.distributed import (
    BaseDistributedAdapter,
    CommitRequest,
    InstanceRef,
    JobPayload,
    MemoryQueue,
    MemoryStore,
    Refusal,
    graph_spec,
)


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    flows = [factory() for factory, _ in SCENARIOS.values()] + list(DAG_FLOWS.values())
    async with Cluster(flows) as c:
        yield c


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_memory_store_matches_in_memory_runtime(cluster: Cluster, name: str) -> None:
    factory, context = SCENARIOS[name]
    flow = factory()
    expected = await FlowRuntime().run(flow, context=dict(context))
    got = await cluster.run(flow, dict(context))
    assert comparable(got) == comparable(expected)


@pytest.mark.parametrize("seed", sorted(DAG_FLOWS))
async def test_random_dags_match(cluster: Cluster, seed: int) -> None:
    flow = DAG_FLOWS[seed]
    expected = await FlowRuntime().run(flow)
    results = await asyncio.gather(*(cluster.run(flow) for _ in range(10)))
    for got in results:
        assert comparable(got) == comparable(expected)


async def test_start_is_idempotent_on_run_id(cluster: Cluster) -> None:
    flow = diamond()
    first = await cluster.run(flow, {"x": 1}, run_id="same")
    await cluster.adapter.start_run(flow, {"x": 999}, "same")
    second = await cluster.store.wait_result("same", 5)
    assert second.context == first.context
    assert cluster.store.runs["same"].completions == {k: 1 for k in
                                                      cluster.store.runs["same"].completions}


async def test_duplicate_delivery_records_completion_once() -> None:
    flow = diamond()
    async with Cluster([flow], workers=4) as c:
        original = c.queue.enqueue

        async def twice(jobs: Any) -> None:
            await original(jobs)
            for job in jobs:
                c.queue.duplicate(job.payload)

        c.queue.enqueue = twice  # type: ignore[method-assign]
        result = await c.run(flow, {"x": 2})
    assert result.status == "completed"
    run = c.store.runs[result.run_id]
    assert sorted(run.completions.values()) == [1] * 5
    assert result.context["merge_input"] == {"B": "L", "C": "R"}


async def test_stale_commit_is_rejected() -> None:
    flow = diamond()
    store, queue = MemoryStore(), MemoryQueue()
    adapter = BaseDistributedAdapter(store, queue, [flow])
    run_id = await adapter.start_run(flow, {})
    spec = graph_spec(adapter.graph("diamond"))
    ref = InstanceRef(run_id, 0, 0)
    first = await store.claim(ref, "old", 1)
    assert first.ok
    await asyncio.sleep(0.01)  # the 1 ms lease expires; another worker claims
    second = await store.claim(ref, "new", 10_000)
    assert second.ok
    assert (await store.claim(ref, "third", 10_000)).reason == Refusal.LEASED
    stale = await store.commit(ref, spec, CommitRequest(token="old"))
    assert (stale.ok, stale.reason) == (False, Refusal.STALE)
    fresh = await store.commit(ref, spec, CommitRequest(token="new"))
    assert (fresh.ok, fresh.reason) == (True, None)
    again = await store.commit(ref, spec, CommitRequest(token="new"))
    assert (again.ok, again.reason) == (False, Refusal.DONE)
    queue.close()


async def test_refused_jobs_do_not_run() -> None:
    flow = diamond()
    store, queue = MemoryStore(), MemoryQueue()
    adapter = BaseDistributedAdapter(store, queue, [flow])
    run_id = await adapter.start_run(flow, {})
    outcome = await adapter.handle(JobPayload(run_id, "diamond", "D", 0))
    assert outcome == "not_fired"
    assert await adapter.handle(JobPayload("nope", "diamond", "A", 0)) == "unknown"
    queue.close()


async def test_reconcile_refires_lost_jobs_and_uses_blueprint_fallback() -> None:
    flow = diamond()
    store, queue = MemoryStore(), MemoryQueue()
    adapter = BaseDistributedAdapter(store, queue, [flow], lease_ms=50)
    run_id = await adapter.start_run(flow, {"x": 4})
    # the start job is "lost": drop the queue, and the metadata loses its blueprint id
    lost = MemoryQueue()
    adapter.queue = lost
    del store.runs[run_id].meta["blueprint_id"]
    store.active[run_id] -= 10_000
    for record in store.runs[run_id].inst.values():  # fired 10 s ago
        record.fired -= 10_000
    counts = await adapter.reconcile(stalled_after=1)
    assert counts["reconciled"] == 1
    task = asyncio.create_task(lost.serve(adapter.handle, 2))
    try:
        result = await store.wait_result(run_id, 5)
    finally:
        task.cancel()
        lost.close()
        queue.close()
    assert result.status == "completed"
    assert all(n == 1 for n in store.runs[run_id].completions.values())


async def test_cancel_stops_the_run(cluster: Cluster) -> None:
    from dist_scenarios import timeout_flow

    flow = Flow("cancel_me").node("A", __import__("dist_scenarios").sleepy).node(
        "B", __import__("dist_scenarios").never).edge("A", "B")
    cluster.adapter.register(flow)
    del timeout_flow
    run_id = await cluster.adapter.start_run(flow, {})
    await asyncio.sleep(0.2)
    assert await cluster.adapter.cancel(run_id)
    result = await cluster.store.wait_result(run_id, 5)
    assert result.status == "cancelled"
    assert "B" not in result.context


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=100_000), size=st.integers(min_value=2,
                                                                          max_value=24))
def test_property_random_dags_distributed_equals_in_memory(seed: int, size: int) -> None:
    """DESIGN §4: for random DAGs (conditions, `any` joins, fan-in) the store's join and skip
    bookkeeping gives the in-memory runtime's results, each completion recorded once."""
    flow = random_dag(seed, size)

    async def check() -> None:
        expected = await FlowRuntime().run(flow)
        async with Cluster([flow], workers=3) as cluster:
            results = await asyncio.gather(*(cluster.run(flow) for _ in range(3)))
        for got in results:
            assert comparable(got) == comparable(expected)
            run = cluster.store.runs[got.run_id]
            assert set(run.completions.values()) <= {1}

    asyncio.run(check())
