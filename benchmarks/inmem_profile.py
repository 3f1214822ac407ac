"""cProfile of the many-runs workload (diamonds, 50 in flight): the top frames by own time.

4,000 runs are profiled after 2,000 unprofiled ones. Call counts do not depend on the load of
the machine; times do (and cProfile inflates small functions), so compare counts first.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys

from inmem_many_runs import build

from flowcraft import FlowRuntime


async def main(top: int) -> None:
    flow = build()
    runtime = FlowRuntime()

    async def worker(count: int) -> None:
        for _ in range(count):
            result = await runtime.run(flow)
            assert result.status == "completed", result.errors

    await asyncio.gather(*(worker(40) for _ in range(50)))
    profile = cProfile.Profile()
    profile.enable()
    await asyncio.gather(*(worker(80) for _ in range(50)))
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
