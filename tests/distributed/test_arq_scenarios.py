"""CONTRACT §9 guarantee 1: the same results in memory and distributed.

Every scenario runs through `FlowRuntime` and through real arq workers on a real redis-server;
status, context, error node ids/types (and awaiting nodes) must be equal.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from dist_helpers import comparable
from dist_scenarios import ALL_FLOWS, DAG_FLOWS, SCENARIOS

from flowcraft import EventRecorder, FlowRuntime
from flowcraft.distributed import DEFAULT_STREAM_EVENTS


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


LIFECYCLE = ("node:start", "node:finish", "node:skipped", "edge:evaluate")


@pytest.mark.parametrize("name", ["diamond", "if_else_false", "skip_cascade", "loop",
                                  "action_reject", "batch"])
async def test_event_log_matches_in_memory_events(name: str, arq_worker,
                                                  flowcraft_client) -> None:
    """The run's event log (client.events) has the same node lifecycle events as an
    in-memory run's event bus: starts, finishes, skips (dead-path elimination) and edges."""
    factory, context = SCENARIOS[name]
    flow = factory()
    recorder = EventRecorder()
    await FlowRuntime(event_bus=recorder).run(flow, context=dict(context))
    expected = Counter(_key(e) for e in recorder.events if e.type in LIFECYCLE)
    events = (*DEFAULT_STREAM_EVENTS, "edge:evaluate")
    async with arq_worker(ALL_FLOWS, stream_events=events), \
            flowcraft_client(ALL_FLOWS) as client:
        run_id = await client.start(flow.id, context=dict(context))
        got = [e async for e in client.events(run_id)]
    assert Counter(_key(e) for e in got if e.type in LIFECYCLE) == expected
    assert got[0].type == "workflow:start" and got[-1].type == "workflow:finish"
    assert all(e.run_id == run_id and e.blueprint_id == flow.id for e in got)


def _key(event: Any) -> tuple[Any, ...]:
    if event.type == "edge:evaluate":
        return (event.type, event.source, event.target, event.taken)
    return (event.type, event.node_id, event.iteration)
