"""cProfile of one arq worker process running distributed diamonds (the flow of `dist_diamond.py`).

The worker runs in this process (arq's `Worker`, as `flowcraft_arq.testing.running_worker`
starts it) on a throwaway redis-server; a client in a subprocess (this script with `--drive`)
warms up with 20 diamonds, then drives R diamonds, IN_FLIGHT at a time, and only those are
profiled. Prints one JSON line: the profiled seconds, function calls and socket sends per node,
and the top frames by own time and by cumulative time (`[ncalls, tottime s, cumtime s,
"file:line(name)"]`), of all code and of flowcraft's own. Call counts do not depend on the
machine's load; times do (and cProfile inflates small functions), so compare counts first. A
coroutine counts one call per resumption, so its ncalls exceed the times it was called.
`--text` also prints the pstats tables to stderr.

    .venv/bin/python benchmarks/dist_profile.py [--runs 1000] [--top 15] [--text]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import platform
import pstats
import sys
from pathlib import Path
from typing import Any

from _common import drive_runs, extra_settings, on_private_redis, wait_ready
from dist_diamond import FLOW, IN_FLIGHT, NODES
from flowcraft_arq import FlowcraftClient

QUEUE = "profile"
WARMUP = 20


async def drive(url: str, runs: int) -> None:
    """The client side (in its own process): warm up, say so, wait for "go", drive `runs`."""
    async with FlowcraftClient.from_url(url, flows=[FLOW], queue_name=QUEUE) as client:
        await wait_ready(client.redis, QUEUE, 1)
        for _ in range(WARMUP):
            await client.wait(await client.start(FLOW.id), timeout=30)
        print("warm", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        elapsed, _ = await drive_runs(client, FLOW.id, runs, IN_FLIGHT)
        print(f"done {elapsed}", flush=True)


def where(filename: str, line: int, name: str) -> str:
    """A frame, its file shortened to the part after site-packages, the repo or the stdlib."""
    for marker in ("site-packages/", f"{Path(__file__).resolve().parent.parent}/",
                   f"python{sys.version_info.major}.{sys.version_info.minor}/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{filename}:{line}({name})"


Frame = tuple[str, int, str]


def top(stats: pstats.Stats, key: str, count: int, ours: bool = False) -> list[list[Any]]:
    """The `count` frames with the most own ("tottime") or cumulative time; `ours`: only
    frames of flowcraft and flowcraft_arq."""
    raw: dict[Frame, tuple[int, int, float, float, Any]] = \
        stats.stats  # type: ignore[attr-defined]
    index = 2 if key == "tottime" else 3
    rows = [(where(*frame), calls, own, cumulative)
            for frame, (_, calls, own, cumulative, _) in raw.items()]
    if ours:
        rows = [row for row in rows if row[0].startswith(("flowcraft/", "adapters/"))]
    rows.sort(key=lambda row: row[index], reverse=True)
    return [[calls, round(own, 4), round(cumulative, 4), name]
            for name, calls, own, cumulative in rows[:count]]


def socket_sends(stats: pstats.Stats) -> int:
    """Calls of socket.send: writes to Redis (a pipeline or transaction is one)."""
    raw: dict[Frame, tuple[int, ...]] = stats.stats  # type: ignore[attr-defined]
    return sum(int(v[1]) for (_, _, name), v in raw.items()
               if name == "<method 'send' of '_socket.socket' objects>")


async def profile(url: str, runs: int, count: int, text: bool) -> dict[str, Any]:
    from flowcraft_arq.testing import running_worker

    profiler = cProfile.Profile()
    async with running_worker([FLOW], url, queue_name=QUEUE,
                              **{"max_jobs": 16, **extra_settings()}):
        client = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--drive", url, "--runs", str(runs),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert client.stdin is not None and client.stdout is not None
        assert (await client.stdout.readline()).strip() == b"warm"
        profiler.enable()
        client.stdin.write(b"go\n")
        await client.stdin.drain()
        done = (await client.stdout.readline()).split()
        profiler.disable()
        assert done and done[0] == b"done", done
        await client.wait()
    stats = pstats.Stats(profiler)
    if text:
        stats.stream = sys.stderr  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(count)
        stats.sort_stats("cumulative").print_stats(count)
    total_calls: int = stats.total_calls  # type: ignore[attr-defined]
    seconds = float(done[1])
    return {
        "bench": "dist_profile",
        "workers": 1,
        "runs": runs,
        "runs_per_s": round(runs / seconds, 1),
        "profiled_s": round(seconds, 2),
        "function_calls": total_calls,
        "calls_per_node": round(total_calls / (runs * NODES)),
        "socket_sends_per_node": round(socket_sends(stats) / (runs * NODES), 2),
        "top_own": top(stats, "tottime", count),
        "top_cumulative": top(stats, "cumulative", count),
        "top_own_flowcraft": top(stats, "tottime", count, ours=True),
        "top_cumulative_flowcraft": top(stats, "cumulative", count, ours=True),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--text", action="store_true")
    parser.add_argument("--drive", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        asyncio.run(drive(args.drive, args.runs))
        return

    async def run(url: str) -> None:
        print(json.dumps(await profile(url, args.runs, args.top, args.text)), flush=True)

    on_private_redis(run)


if __name__ == "__main__":
    main()
