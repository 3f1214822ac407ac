"""CONTRACT §9 guarantee 1: the same results in memory and distributed.

Every scenario runs through `FlowRuntime` and through real arq workers on a real redis-server;
status, context, error node ids/types (and awaiting nodes) must be equal.
"""

from __future__ import annotations

import asyncio

import pytest
from dist_helpers import comparable
from dist_scenarios import ALL_FLOWS, DAG_FLOWS, SCENARIOS

from flowcraft import FlowRuntime


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_distributed_matches_in_memory(name: str, arq_worker, flowcraft_client) -> None:
    factory, context = SCENARIOS[name]
    flow = factory()
    expected = await FlowRuntime().run(flow, context=dict(context))
    async with arq_worker(ALL_FLOWS, max_jobs=8), flowcraft_client(ALL_FLOWS) as client:
        run_id = await client.start(flow.id, context=dict(context))
        got = await client.wait(run_id, timeout=30)
    assert comparable(got) == comparable(expected)
    assert got.run_id == run_id


async def test_random_dags_two_workers(arq_worker, flowcraft_client) -> None:
    flows = list(DAG_FLOWS.values())
    expected = {f.id: comparable(await FlowRuntime().run(f)) for f in flows}
    async with arq_worker(flows), arq_worker(flows), flowcraft_client(flows) as client:
        run_ids = [(f.id, await client.start(f.id)) for f in flows for _ in range(5)]
        results = await asyncio.gather(*(client.wait(r, timeout=60) for _, r in run_ids))
    for (flow_id, _), got in zip(run_ids, results, strict=True):
        assert comparable(got) == expected[flow_id]
