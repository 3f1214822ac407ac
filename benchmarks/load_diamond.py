"""Load: 10,000 diamond runs submitted at once to 2 arq worker processes; Redis memory before,
at peak and after the results expire; and what 1,000 concurrent `client.wait` calls cost.

    .venv/bin/python benchmarks/load_diamond.py [--runs 10000] [--workers 2] [--waiters 1000]
        [--result-ttl 5] [--idle-s 10]

Starts its own redis-server on a free port (no persistence) and its own workers
(`arq load_diamond.WorkerSettings` in subprocesses, `result_ttl` short so finished runs expire),
and prints ONE JSON line:

- `runs_completed` / `runs_failed` of `runs` (counted from the runs' own completion
  announcements, a PSUBSCRIBE on `<prefix>:{*}:done-ch`), `submit_s` (all starts issued
  before anything is awaited), `runs_per_s` (first start to last completion);
- `redis_used_memory_mb`: `baseline` (workers up, warm-up runs expired), `peak` (sampled every
  0.25 s while the runs execute), `after_expiry` (once the run keys have expired, the DBSIZE is
  back to its baseline) and `expiry_s` (last completion to back-to-baseline);
- `wait`: the last `waiters` runs submitted are awaited with one `client.wait` each, all at
  once, through a client whose connections count every command they send
  (`cmds_per_waiter`, by command); and an idle check with the workers stopped: `waiters` more
  runs that cannot progress are awaited for `idle_s` seconds and the server-side INFO
  commandstats delta (nothing else is connected) gives `idle_cmds_per_waiter` and
  `idle_cmds_per_waiter_per_s` — 0 per second means no polling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from arq.connections import RedisSettings
from flowcraft_arq import FlowcraftClient, worker_settings
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import Connection

from flowcraft import Flow, NodeContext

HERE = Path(__file__).resolve().parent
PREFIX = "load"


async def noop(ctx: NodeContext) -> int:
    return 1


def build() -> Flow:
    return (Flow("diamond")
            .node("A", noop).node("B", noop).node("C", noop).node("D", noop).node("E", noop)
            .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D").edge("D", "E"))


FLOW = build()

if os.environ.get("LOAD_DIAMOND_REDIS_URL"):  # imported by `arq load_diamond.WorkerSettings`
    WorkerSettings = worker_settings(
        [FLOW], redis_settings=RedisSettings.from_dsn(os.environ["LOAD_DIAMOND_REDIS_URL"]),
        queue_name=os.environ["LOAD_DIAMOND_QUEUE"], prefix=PREFIX,
        result_ttl=float(os.environ["LOAD_DIAMOND_RESULT_TTL"]))


class CountingConnection(Connection):
    """A redis-py connection that counts the commands it sends (pub/sub ones included)."""

    counts: ClassVar[Counter[str]] = Counter()

    async def send_command(self, *args: Any, **kwargs: Any) -> None:
        name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        CountingConnection.counts[name.upper()] += 1
        await super().send_command(*args, **kwargs)


def start_workers(count: int, url: str, queue: str, ttl: float) -> list[subprocess.Popen[bytes]]:
    arq = Path(sys.executable).parent / "arq"
    command = [str(arq)] if arq.exists() else [sys.executable, "-m", "arq"]
    env = {**os.environ, "LOAD_DIAMOND_REDIS_URL": url, "LOAD_DIAMOND_QUEUE": queue,
           "LOAD_DIAMOND_RESULT_TTL": str(ttl),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return [subprocess.Popen([*command, "load_diamond.WorkerSettings"], cwd=HERE, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
            for _ in range(count)]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait(10)


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def command_counts(redis: Redis) -> Counter[str]:
    stats = await redis.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()
                    if k != "cmdstat_info"})


def mb(n: float) -> float:
    return round(n / 2**20, 2)


async def start_all(client: FlowcraftClient, count: int, concurrency: int = 100) -> list[str]:
    """Issue `count` starts as fast as the client can (bounded concurrency), in order."""
    ids = [f"run-{i:06d}" for i in range(count)]
    sem = asyncio.Semaphore(concurrency)

    async def one(run_id: str) -> None:
        async with sem:
            await client.start("diamond", run_id=run_id)

    await asyncio.gather(*(one(r) for r in ids))
    return ids


async def load(url: str, args: argparse.Namespace) -> dict[str, Any]:
    queue = f"load-{os.getpid()}"
    admin = Redis.from_url(url)
    procs = start_workers(args.workers, url, queue, args.result_ttl)
    report: dict[str, Any] = {"bench": "load_diamond", "runs": args.runs,
                              "workers": args.workers, "result_ttl_s": args.result_ttl}
    try:
        async with FlowcraftClient.from_url(url, flows=[FLOW], queue_name=queue, prefix=PREFIX,
                                            result_ttl=args.result_ttl) as client:
            deadline = time.monotonic() + 60
            while not await admin.exists(f"{queue}:health-check"):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start")
                await asyncio.sleep(0.05)
            for _ in range(20):  # warm-up: connections, scripts, imports
                await client.wait(await client.start("diamond"), timeout=60)
            await asyncio.sleep(args.result_ttl + 2)
            await wait_for_keys(admin, f"{PREFIX}:*", 0, 120)
            baseline_keys = await admin.dbsize()
            baseline = await used_memory(admin)

            # completion announcements of every run (one connection, pattern subscription)
            pubsub = admin.pubsub()
            await pubsub.psubscribe(f"{PREFIX}:{{*}}:done-ch")
            done: dict[str, str] = {}
            last_done = [0.0]

            async def listen() -> None:
                async for message in pubsub.listen():
                    if message["type"] != "pmessage":
                        continue
                    channel = message["channel"].decode()
                    run_id = channel[channel.index("{") + 1:channel.index("}")]
                    done[run_id] = message["data"].decode()
                    last_done[0] = time.perf_counter()

            listener = asyncio.create_task(listen())
            peak = [baseline]
            sampling = asyncio.Event()

            async def sample() -> None:
                while not sampling.is_set():
                    peak[0] = max(peak[0], await used_memory(admin))
                    await asyncio.sleep(0.25)

            sampler = asyncio.create_task(sample())

            # the waiting client: its own pool, every command it sends counted
            pool = ConnectionPool.from_url(url, connection_class=CountingConnection)
            waiter = FlowcraftClient(Redis(connection_pool=pool), flows=[FLOW],
                                     queue_name=queue, prefix=PREFIX)
            started = time.perf_counter()
            run_ids = await start_all(client, args.runs)
            submit_s = time.perf_counter() - started
            CountingConnection.counts.clear()
            wait_began = time.perf_counter()
            watched = run_ids[-args.waiters:]
            results = await asyncio.gather(*(waiter.wait(r, timeout=args.timeout)
                                             for r in watched))
            wait_s = time.perf_counter() - wait_began
            waiter_counts = Counter(CountingConnection.counts)
            deadline = time.monotonic() + args.timeout
            while len(done) < args.runs and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            finished = last_done[0]
            sampling.set()
            await sampler
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await pubsub.aclose()
            await pool.disconnect()

            statuses = Counter(done.values())
            report.update({
                "runs_completed": statuses.get("completed", 0),
                "runs_failed": args.runs - statuses.get("completed", 0),
                "submit_s": round(submit_s, 1),
                "starts_per_s": round(args.runs / submit_s),
                "runs_per_s": round(args.runs / (finished - started), 1),
                "total_s": round(finished - started, 1),
            })

            # expiry: wait until the runs' keys are gone, then measure again
            back = await wait_for_keys(admin, f"{PREFIX}:*", 0, args.timeout)
            after_keys = await admin.dbsize()
            after = await used_memory(admin)
            report["redis_used_memory_mb"] = {
                "baseline": mb(baseline), "peak": mb(peak[0]), "after_expiry": mb(after),
                "after_minus_baseline": mb(after - baseline),
                "expiry_s": round(back - finished, 1) if back else None,
                "keys_baseline": baseline_keys, "keys_after": after_keys}

            # idle waiting, server-side: nothing but the waiters is connected
            stop(procs)
            idle_ids = [await client.start("diamond") for _ in range(args.waiters)]
            await asyncio.sleep(0.5)
            before = await command_counts(admin)
            idle_began = time.perf_counter()
            idle_pool = ConnectionPool.from_url(url)
            idle_waiter = FlowcraftClient(Redis(connection_pool=idle_pool), flows=[FLOW],
                                          queue_name=queue, prefix=PREFIX)
            tasks = [asyncio.create_task(idle_waiter.wait(r, timeout=None)) for r in idle_ids]
            await asyncio.sleep(2)  # all subscribed
            mid = await command_counts(admin)
            await asyncio.sleep(args.idle_s)
            end = await command_counts(admin)
            idle_elapsed = time.perf_counter() - idle_began
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await idle_pool.disconnect()
            setup = mid - before
            steady = end - mid
            report["wait"] = {
                "waiters": args.waiters,
                "wait_s": round(wait_s, 1),
                "all_completed": all(r.status == "completed" for r in results),
                "cmds_per_waiter": round(sum(waiter_counts.values()) / args.waiters, 2),
                "cmds_per_waiter_by_command": {k: round(v / args.waiters, 2)
                                               for k, v in sorted(waiter_counts.items())},
                "idle_s": args.idle_s,
                "idle_setup_cmds_per_waiter": round(sum(setup.values()) / args.waiters, 2),
                "idle_setup_by_command": {k: round(v / args.waiters, 2)
                                          for k, v in sorted(setup.items())},
                "idle_cmds_per_waiter_per_s": round(
                    sum(steady.values()) / args.waiters / args.idle_s, 4),
                "idle_window_s": round(idle_elapsed, 1),
            }
    finally:
        stop(procs)
        await admin.aclose()
    report["python"] = platform.python_version()
    return report


async def wait_for_keys(redis: Redis, pattern: str, target: int, timeout: float) -> float | None:
    """Wait until at most `target` keys match `pattern`; the time it happened (perf_counter)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = 0
        async for _ in redis.scan_iter(match=pattern, count=1000):
            count += 1
        if count <= target:
            return time.perf_counter()
        await asyncio.sleep(0.25)
    return None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--waiters", type=int, default=1000)
    parser.add_argument("--result-ttl", type=float, default=5.0)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    from flowcraft_arq.testing import RedisServer

    server = RedisServer()
    server.start()
    try:
        print(json.dumps(await load(server.url, args)), flush=True)
    finally:
        server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
