"""A 1,000-node chain of no-op async nodes, in memory: nodes/s (median of 50 runs after 10,
as the TypeScript reference `inmem_chain.mjs` counts)."""

from __future__ import annotations

import asyncio

from _common import report, seconds_per_run

from flowcraft import Flow, NodeContext

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
    t = await seconds_per_run(build(), warmup=10, repeats=50)
    report("inmem_chain", nodes_per_s=N / t, runs_per_s=1 / t, nodes=N)


if __name__ == "__main__":
    asyncio.run(main())
