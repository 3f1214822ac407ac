"""cProfile of the many-runs workload (diamonds, 50 in flight): the top frames by own time.

4,000 runs are profiled after 2,000 unprofiled ones. Call counts do not depend on the load of
the machine; times do (and cProfile inflates small functions), so compare counts first.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys

from inmem_many_runs import build, run_many

from flowcraft import FlowRuntime


async def main(top: int) -> None:
    flow = build()
    runtime = FlowRuntime()
    await run_many(runtime, flow, 2000)
    profile = cProfile.Profile()
    profile.enable()
    await run_many(runtime, flow, 4000)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
