"""2,000 runs of the diamond A -> B,C -> D(all) -> E, 50 in flight: runs/s (median of 15 trials
after one, as the TypeScript reference `inmem_many_runs.mjs` counts)."""

from __future__ import annotations

import asyncio

from _common import measure, median, report

from flowcraft import Flow, FlowRuntime, NodeContext

RUNS, IN_FLIGHT, NODES = 2000, 50, 5


async def noop(ctx: NodeContext) -> int:
    return 1


def build() -> Flow:
    return (
        Flow("diamond")
        .node("A", noop).node("B", noop).node("C", noop).node("D", noop).node("E", noop)
        .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D").edge("D", "E")
    )


async def run_many(runtime: FlowRuntime, flow: Flow, runs: int) -> None:
    """`runs` runs of `flow`, IN_FLIGHT at a time, each checked."""

    async def worker(count: int) -> None:
        for _ in range(count):
            result = await runtime.run(flow)
            assert result.status == "completed", result.errors

    await asyncio.gather(*(worker(runs // IN_FLIGHT) for _ in range(IN_FLIGHT)))


async def main() -> None:
    flow = build()
    runtime = FlowRuntime()

    async def once() -> None:
        await run_many(runtime, flow, RUNS)

    times = await measure(once, warmup=1, repeats=15)
    t = median(times)
    report("inmem_many_runs", nodes_per_s=RUNS * NODES / t, runs_per_s=RUNS / t, runs=RUNS,
           in_flight=IN_FLIGHT)


if __name__ == "__main__":
    asyncio.run(main())
