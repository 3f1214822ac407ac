"""Large distributed runs: a 1 -> 1,000 -> `all` join fan-out and a 10,000-item batch.

Starts its own redis-server on a free port and its own workers (`arq dist_fanout.WorkerSettings`
in subprocesses), runs R runs of each workload (IN_FLIGHT at a time, after one unmeasured fan-out
run) through `FlowcraftClient`, and prints one JSON line per workload and worker count: runs/s,
node executions/s and Redis commands per node execution (INFO commandstats deltas, commands
inside Lua scripts and arq's own included, as in `dist_diamond.py`).

Node executions per run are the user's node functions: the fan-out's 1,002 (source, 1,000
workers, join); the batch's 10,002 (`make`, 10,000 items, `total`; the batch's own scatter and
gather steps are not counted).

    .venv/bin/python benchmarks/dist_fanout.py [--runs 2] [--workers 1 [2]]

FLOWCRAFT_FANOUT_WIDTH / FLOWCRAFT_BATCH_ITEMS change the two sizes (workers and driver alike).
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
from flowcraft_arq import FlowcraftClient

from flowcraft import Flow, NodeContext

WIDTH = int(os.environ.get("FLOWCRAFT_FANOUT_WIDTH", "1000"))  # 10000: the issue-9 figure
ITEMS = int(os.environ.get("FLOWCRAFT_BATCH_ITEMS", "10000"))
IN_FLIGHT = 2


async def noop(ctx: NodeContext) -> int:
    return 1


async def make_items(ctx: NodeContext) -> None:
    await ctx.context.set("items", list(range(ITEMS)))


async def double(ctx: NodeContext) -> int:
    return int(ctx.input) * 2


async def count(ctx: NodeContext) -> int:
    return len(ctx.input)


def fan_out() -> Flow:
    flow = Flow(f"fanout_{WIDTH}").node("source", noop).node("join", count)
    for i in range(WIDTH):
        flow.node(f"w{i}", noop).edge("source", f"w{i}").edge(f"w{i}", "join")
    return flow


def batch() -> Flow:
    return (Flow(f"batch_{ITEMS}").node("make", make_items)
            .batch("work", double, input_key="items").node("total", count)
            .edge("make", "work").edge("work", "total"))


FAN_OUT, BATCH = fan_out(), batch()
WORKLOADS: dict[str, tuple[Flow, int, str, int]] = {  # name: flow, executions, key, its value
    "fanout": (FAN_OUT, WIDTH + 2, "join", WIDTH),
    "batch": (BATCH, ITEMS + 2, "total", ITEMS),
}

WorkerSettings = worker_settings_from_env([FAN_OUT, BATCH])  # for `arq dist_fanout.WorkerSettings`


async def measure(client: FlowcraftClient, name: str, workers: int, runs: int) -> dict[str, Any]:
    flow, executions, key, expected = WORKLOADS[name]

    def check(result: Any) -> None:
        assert result.context[key] == expected, result.context[key]

    elapsed, commands = await drive_runs(client, flow.id, runs, IN_FLIGHT, timeout=600,
                                         check=check)
    return {
        "bench": f"dist_{name}",
        "workers": workers,
        "runs_per_s": round(runs / elapsed, 3),
        "node_executions_per_s": round(runs * executions / elapsed),
        "redis_cmds_per_node": round(commands / (runs * executions), 1),
        "nodes_per_run": executions,
        "runs": runs,
        "in_flight": IN_FLIGHT,
        "seconds": round(elapsed, 2),
        "python": platform.python_version(),
    }


async def bench(url: str, workers: int, runs: int) -> list[dict[str, Any]]:
    queue = f"fanout-{workers}-{os.getpid()}"
    async with client_with_workers("dist_fanout", [FAN_OUT, BATCH], url, workers,
                                   queue) as client:
        await client.wait(await client.start(FAN_OUT.id), timeout=600)  # warm-up
        return [await measure(client, name, workers, runs) for name in WORKLOADS]


if __name__ == "__main__":
    run_per_worker_count(bench, doc=__doc__, size_flag="--runs", default_size=2,
                         default_workers=(1,))
