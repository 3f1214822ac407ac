"""A client that dies (a real SIGKILL) right after its start script ran: the run exists in
Redis, nothing the client does after the script happened (issue 9 item 5).

Run as a subprocess by test_reconcile_over_time.py with FLOWCRAFT_REDIS_URL/QUEUE/PREFIX set
and the run id as its argument. The flow lives here so that the test's worker serves the same.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from flowcraft_arq import FlowcraftClient

from flowcraft import Flow, NodeContext


async def first(ctx: NodeContext) -> int:
    return 1


async def second(ctx: NodeContext) -> int:
    return int(ctx.input) + 1


def relay_flow() -> Flow:
    return Flow("relay").node("a", first).node("b", second).edge("a", "b")


async def main(run_id: str) -> None:
    async with FlowcraftClient.from_url(os.environ["FLOWCRAFT_REDIS_URL"], flows=[relay_flow()],
                                        queue_name=os.environ["FLOWCRAFT_QUEUE"],
                                        prefix=os.environ["FLOWCRAFT_PREFIX"]) as client:
        call = client.store._call

        async def die_after_start(name: str, *args: Any, **kwargs: Any) -> Any:
            out = await call(name, *args, **kwargs)
            if name == "start_run":
                os.kill(os.getpid(), signal.SIGKILL)
            return out

        client.store._call = die_after_start  # type: ignore[method-assign]
        await client.start("relay", run_id=run_id)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
