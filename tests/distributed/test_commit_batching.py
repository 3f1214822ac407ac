"""Commits made in the same turn of the event loop share one script call (coalesce.py and
lua/commit_many.lua), with the same outcome each would have had alone. Real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

from dist_scenarios import diamond
from flowcraft_arq import ArqAdapter
from flowcraft_arq.scripts import scripts
from redis.asyncio import Redis

from flowcraft.distributed import CommitRequest, InstanceRef, Refusal, Resolution, graph_spec


async def evalsha_calls(redis: Redis) -> int:
    stats: dict[str, Any] = await redis.info("commandstats")
    return int(stats["cmdstat_evalsha"]["calls"])


async def test_concurrent_commits_share_one_call_and_keep_their_own_outcomes(
        redis: Redis, fc_prefix: str) -> None:
    adapter = ArqAdapter(redis, [diamond()], prefix=fc_prefix)  # type: ignore[arg-type]
    store, spec = adapter.redis_store, graph_spec(adapter.graph("diamond"))
    runs = [f"batch-{i}" for i in range(4)]
    for run_id in runs:
        await store.start_run(run_id, spec, {}, {"blueprint_id": "diamond", "status": "running"})
        assert (await store.claim(InstanceRef(run_id, 0), f"tok-{run_id}", 10_000)).ok
    await store.publish_graph(spec)
    await redis.script_load(scripts()["commit_many"].source)  # no NOSCRIPT round in the count
    a = adapter.graph("diamond").by_id["A"]
    requests = {run_id: CommitRequest(
        token=f"tok-{run_id}", writes=[("A", b'"a"'), ("_outputs.A", b'"a"')],
        resolutions=[Resolution(e.index, True, b'"a"') for e in a.out_edges],
        fuse=1 if run_id == runs[0] else 0, fuse_token=f"tok-{run_id}", lease_ms=10_000)
        for run_id in runs}
    requests[runs[3]] = CommitRequest(token="not-the-lease")  # refused, alone in the batch
    before = await evalsha_calls(redis)
    outcomes = await asyncio.gather(*(store.commit(InstanceRef(run_id, 0), spec,
                                                   requests[run_id]) for run_id in runs))
    calls = await evalsha_calls(redis) - before
    assert calls == 1
    assert [(o.ok, o.reason) for o in outcomes] == [(True, None)] * 3 + [(False, Refusal.STALE)]
    # the first run's commit claimed one successor for its caller, queued the other
    assert [(r.node_index, raw) for r, raw in outcomes[0].claimed] == [(1, b'"a"')]
    assert [r.node_index for r in outcomes[0].queued] == [2]
    assert [sorted(r.node_index for r in o.queued) for o in outcomes[1:3]] == [[1, 2], [1, 2]]
    for run_id in runs[:3]:
        assert await store.get_values(run_id, ["A"]) == [b'"a"']
    assert await store.get_values(runs[3], ["A"]) == [None]
