"""Dashboard runs page with 100,000 runs in Redis: render time and Redis commands per load.

Starts its own redis-server on a free port, starts `--runs` runs of a one-node flow through
`FlowcraftClient.start` (the real scripts, so the run index is the one `start_run.lua` writes),
cancels `--finished-share` of them (terminal runs with a finish event and TTL, like completed
ones), then serves the dashboard with uvicorn and loads the runs page `--loads` times over HTTP.
Redis commands per load are `INFO commandstats` deltas (the INFO calls themselves excluded).

- `cold`: the status counts are recomputed on every load (the cache is cleared first): the
  worst case, and the headline figure;
- `warm`: loads within the counts cache's 3 s;
- `filtered`: `?status=failed` when no run failed: the walk stops after SCAN_LIMIT entries.

    .venv/bin/python benchmarks/dashboard_runs_page.py [--runs 100000] [--loads 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from typing import Any

import httpx
import uvicorn
from flowcraft_arq import FlowcraftClient
from flowcraft_arq.dashboard import create_app
from flowcraft_arq.testing import RedisServer, free_port
from redis.asyncio import Redis

from flowcraft import Flow, NodeContext

PREFIX, QUEUE = "bench", "bench-q"
CONCURRENCY = 32


async def step(ctx: NodeContext) -> str:
    return "done"


def flow() -> Flow:
    return Flow("one_step", version="1").node("step", step)


async def commands(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
            if name != "cmdstat_info"}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {k: after[k] - before.get(k, 0) for k in after}
    return {k: v for k, v in sorted(out.items()) if v}


async def fill(url: str, runs: int, finished_share: float) -> None:
    async with FlowcraftClient.from_url(url, flows=[flow()], queue_name=QUEUE,
                                        prefix=PREFIX) as client:
        ids: list[str] = []
        for start in range(0, runs, CONCURRENCY):
            batch = range(start, min(runs, start + CONCURRENCY))
            ids += await asyncio.gather(*(client.start("one_step", {"n": i}) for i in batch))
        # spread the finished runs over the whole index, so every page mixes both kinds
        every = max(1, round(1 / (1 - finished_share))) if finished_share < 1 else 1
        finished = [r for i, r in enumerate(ids) if finished_share >= 1 or i % every]
        for start in range(0, len(finished), CONCURRENCY):
            await asyncio.gather(*(client.cancel(r)
                                   for r in finished[start:start + CONCURRENCY]))


async def measure(http: httpx.AsyncClient, redis: Redis, path: str, loads: int,
                  reset: Any) -> dict[str, Any]:
    times, costs = [], []
    last: dict[str, int] = {}
    for _ in range(loads):
        reset()
        before = await commands(redis)
        t0 = time.perf_counter()
        response = await http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.status_code
        last = delta(before, await commands(redis))
        costs.append(sum(last.values()))
    return {"p50_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
            "redis_cmds": int(statistics.median(costs)), "by_command": last}


async def main(runs: int, loads: int, finished_share: float) -> dict[str, Any]:
    server = RedisServer()
    server.start()
    try:
        app = create_app(server.url, prefix=PREFIX, queue_name=QUEUE, flows=[flow()])
        index = app.state.dashboard.index
        await index.enable()      # what the server's start-up does: runs from now on are listed
        t0 = time.perf_counter()
        await fill(server.url, runs, finished_share)
        fill_s = time.perf_counter() - t0
        port = free_port()
        web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                            log_level="warning", lifespan="on"))
        task = asyncio.create_task(web.serve())
        while not web.started:
            await asyncio.sleep(0.02)
        redis = Redis.from_url(server.url)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                         timeout=30) as http:
                await http.get("/")   # templates compiled, connections open
                cold = await measure(http, redis, "/", loads,
                                     lambda: setattr(index, "_counts", None))
                warm = await measure(http, redis, "/", loads, lambda: None)
                filtered = await measure(http, redis, "/?status=failed", max(3, loads // 4),
                                         lambda: None)
                index_size = await redis.zcard(f"{PREFIX}:runs:all") - 1   # less the ""
        finally:
            await redis.aclose()
            web.should_exit = True
            await task
    finally:
        server.cleanup()
    return {"bench": "dashboard_runs_page", "runs": runs, "index_size": index_size,
            "finished_share": finished_share, "page_size": 50, "loads": loads,
            "p50_ms": cold["p50_ms"], "redis_cmds_per_load": cold["redis_cmds"],
            "cold": cold, "warm": warm, "filtered_no_match": filtered,
            "fill_s": round(fill_s, 1), "python": platform.python_version()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--finished-share", type=float, default=0.8)
    args = parser.parse_args()
    result = asyncio.run(main(args.runs, args.loads, args.finished_share))
    sys.stdout.write(json.dumps(result) + "\n")
