"""Distributed diamond runs (A -> B,C -> D(all) -> E) through 1 and 2 arq worker processes.

Starts its own redis-server on a free port and its own workers (`arq dist_diamond.WorkerSettings`
in subprocesses), runs R diamonds with IN_FLIGHT runs at a time through `FlowcraftClient`, and
prints one JSON line per worker count: runs/s, node-jobs/s and Redis commands per node, counted
server-side from INFO commandstats deltas (commands run inside Lua scripts are included, as are
arq's own commands and the workers' queue polling).

    .venv/bin/python benchmarks/dist_diamond.py [--runs 2000] [--workers 1 2]
"""

from __future__ import annotations

import os
import platform
from typing import Any

from _common import (
    client_with_workers,
    drive_runs,
    run_per_worker_count,
    worker_settings_from_env,
)

from flowcraft import Flow, NodeContext

NODES = 5
IN_FLIGHT = 64


async def noop(ctx: NodeContext) -> int:
    return 1


def build() -> Flow:
    return (
        Flow("diamond")
        .node("A", noop).node("B", noop).node("C", noop).node("D", noop).node("E", noop)
        .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D").edge("D", "E")
    )


FLOW = build()

WorkerSettings = worker_settings_from_env([FLOW])  # for `arq dist_diamond.WorkerSettings`


async def bench(url: str, workers: int, runs: int) -> dict[str, Any]:
    queue = f"bench-{workers}-{os.getpid()}"
    async with client_with_workers("dist_diamond", [FLOW], url, workers, queue) as client:
        for _ in range(20):  # warm-up: connections, scripts, imports
            await client.wait(await client.start("diamond"), timeout=30)
        elapsed, commands = await drive_runs(client, FLOW.id, runs, IN_FLIGHT)
    return {
        "bench": "dist_diamond",
        "workers": workers,
        "runs_per_s": round(runs / elapsed, 1),
        "node_jobs_per_s": round(runs * NODES / elapsed),
        "redis_cmds_per_node": round(commands / (runs * NODES), 1),
        "runs": runs,
        "in_flight": IN_FLIGHT,
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    run_per_worker_count(bench, doc=__doc__, size_flag="--runs", default_size=2000)
