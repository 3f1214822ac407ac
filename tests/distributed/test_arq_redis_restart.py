"""DESIGN §3 fact 7 / §4: a restart of Redis (AOF on) mid-run loses nothing that was recorded.

The worker whose commit hits the outage loses its job, and arq workers may die with the
connection; a fresh worker plus `reconcile` finish the run from the persisted state, with every
completed node's completion recorded once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from dist_helpers import comparable
from dist_scenarios import echo, slow3
from flowcraft_arq import FlowcraftClient
from flowcraft_arq.testing import RedisServer, running_worker

from flowcraft import Flow, FlowRuntime, NodeContext


async def first(ctx: NodeContext) -> str:
    await ctx.context.set("first", True)
    return "first"


def restart_flow() -> Flow:
    return (Flow("restart").node("A", first).node("B", slow3).node("C", echo)
            .edge("A", "B").edge("B", "C"))


@pytest.fixture
def aof_server() -> Iterator[RedisServer]:
    server = RedisServer(appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def test_redis_restart_mid_run_loses_nothing(aof_server: RedisServer,
                                                   fc_queue: str) -> None:
    flow = restart_flow()
    expected = await FlowRuntime().run(flow, run_id="restart-run")
    settings: dict[str, Any] = {"queue_name": fc_queue, "lease_ms": 500, "job_timeout": 5}
    async with running_worker([flow], aof_server.url, **settings):
        async with FlowcraftClient.from_url(aof_server.url, flows=[flow],
                                            queue_name=fc_queue) as client:
            await client.start("restart", run_id="restart-run")
            while "A" not in await client.store.get_context("restart-run"):
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # B is running now
        await asyncio.to_thread(aof_server.restart)  # B's commit will hit the outage
        await asyncio.sleep(3.5)
    async with running_worker([flow], aof_server.url, **settings), \
            FlowcraftClient.from_url(aof_server.url, flows=[flow],
                                     queue_name=fc_queue) as client:
        # Open by timing, so only a crash check: the outage either failed B's commit (the run
        # is still running until reconcile) or the worker's reconnect retried it in time.
        assert await client.status("restart-run") in ("running", "completed")
        deadline = asyncio.get_running_loop().time() + 30
        while await client.result("restart-run") is None:
            assert asyncio.get_running_loop().time() < deadline
            await client.reconcile(stalled_after=0.5)
            await asyncio.sleep(0.5)
        result = await client.wait("restart-run", timeout=10)
        finishes: dict[str, int] = {}
        async for event in client.events("restart-run"):
            if event.type == "node:finish":
                finishes[event.node_id] = finishes.get(event.node_id, 0) + 1
    assert comparable(result) == comparable(expected)
    assert finishes == {"A": 1, "B": 1, "C": 1}
