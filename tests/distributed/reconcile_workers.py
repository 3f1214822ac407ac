"""`arq reconcile_workers.WorkerSettings`: workers for the automatic-reconcile test.

Flows and worker settings in one module, so the test process and the workers share `uses`
keys. Everything is `worker_settings`' default except what FLOWCRAFT_RECONCILE_EVERY,
FLOWCRAFT_STALLED_AFTER and FLOWCRAFT_LEASE_MS shorten (the test says which and why).
Node bodies record each execution as a line `<node> <pid>` in `<markers>/<run id>`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from arq.connections import RedisSettings
from flowcraft_arq import worker_settings

from flowcraft import Flow, NodeContext


def _record(ctx: NodeContext) -> None:
    with (Path(os.environ["FLOWCRAFT_TEST_MARKERS"]) / ctx.run_id).open("a") as fh:
        fh.write(f"{ctx.node_id} {os.getpid()}\n")


async def quick(ctx: NodeContext) -> str:
    _record(ctx)
    return f"{ctx.node_id} done"


async def slow(ctx: NodeContext) -> str:
    _record(ctx)
    await asyncio.sleep(float(ctx.params.get("seconds", 2.0)))
    return f"{ctx.node_id} done"


def victim_flow() -> Flow:
    """a -> b (slow: the worker is killed while b runs) -> c."""
    return (Flow("victim").node("a", quick).node("b", slow, params={"seconds": 2.0})
            .node("c", quick).edge("a", "b").edge("b", "c"))


def long_flow() -> Flow:
    """One node that runs far longer than `stalled_after` and the lease: never re-driven."""
    return Flow("long").node("long", slow, params={"seconds": 8.0})


FLOWS = [victim_flow(), long_flow()]

_url = os.environ.get("FLOWCRAFT_REDIS_URL")
if _url:
    _every = os.environ.get("FLOWCRAFT_RECONCILE_EVERY")
    _stalled = os.environ.get("FLOWCRAFT_STALLED_AFTER")
    _lease = os.environ.get("FLOWCRAFT_LEASE_MS")
    _shortened: dict[str, float | int] = {}
    if _every:
        _shortened["reconcile_every"] = float(_every)
    if _stalled:
        _shortened["reconcile_stalled_after"] = float(_stalled)
    if _lease:
        _shortened["lease_ms"] = int(_lease)
    WorkerSettings = worker_settings(
        FLOWS, redis_settings=RedisSettings.from_dsn(_url),
        queue_name=os.environ["FLOWCRAFT_QUEUE"], prefix=os.environ["FLOWCRAFT_PREFIX"],
        **_shortened)
