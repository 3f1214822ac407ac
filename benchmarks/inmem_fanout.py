"""1 -> 200 -> `all` join, in memory: runs/s and nodes/s (median of 200 runs after 20, as the
TypeScript reference `inmem_fanout.mjs` counts)."""

from __future__ import annotations

import asyncio

from _common import report, seconds_per_run

from flowcraft import Flow, NodeContext

WIDTH = 200


async def noop(ctx: NodeContext) -> int:
    return 1


def build() -> Flow:
    flow = Flow("fanout").node("source", noop).node("join", noop)
    for i in range(WIDTH):
        flow.node(f"w{i}", noop).edge("source", f"w{i}").edge(f"w{i}", "join")
    return flow


async def main() -> None:
    t = await seconds_per_run(build(), warmup=20, repeats=200)
    report("inmem_fanout", nodes_per_s=(WIDTH + 2) / t, runs_per_s=1 / t, width=WIDTH)


if __name__ == "__main__":
    asyncio.run(main())
