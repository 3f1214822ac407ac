"""A 1,000-node chain of no-op async nodes, in memory: nodes/s (median of 20 runs)."""

from __future__ import annotations

import asyncio

from _common import measure, median, report

from flowcraft import Flow, FlowRuntime, NodeContext

N = 1000


async def noop(ctx: NodeContext) -> int:
    return 1


def build() -> Flow:
    flow = Flow("chain")
    for i in range(N):
        flow.node(f"n{i}", noop)
        if i:
            flow.edge(f"n{i - 1}", f"n{i}")
    return flow


async def main() -> None:
    flow = build()
    runtime = FlowRuntime()

    async def once() -> None:
        result = await runtime.run(flow)
        assert result.status == "completed", result.errors

    times = await measure(once, warmup=3, repeats=20)
    t = median(times)
    report("inmem_chain", nodes_per_s=N / t, runs_per_s=1 / t, nodes=N)


if __name__ == "__main__":
    asyncio.run(main())
