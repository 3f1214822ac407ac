"""A client that imports no node code: it starts, waits for and resumes a run by flow name.

Run as a subprocess by test_start_by_name.py with FLOWCRAFT_REDIS_URL/QUEUE/PREFIX set; prints
one JSON document with what it saw (and which modules it had to import).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from flowcraft_arq import FlowcraftClient

from flowcraft import BlueprintError


async def main() -> None:
    url = os.environ["FLOWCRAFT_REDIS_URL"]
    async with FlowcraftClient.from_url(url, queue_name=os.environ["FLOWCRAFT_QUEUE"],
                                        prefix=os.environ["FLOWCRAFT_PREFIX"]) as client:
        run_id = await client.start("wait_actions", context={"order": 7})
        paused = await client.wait(run_id, timeout=30)
        await client.resume(run_id, node_id="review", output={"ok": True}, action="approve")
        done = await client.wait(run_id, timeout=30)
        try:
            await client.start("no_such_flow")
            refused = ""
        except BlueprintError as exc:
            refused = str(exc)
    print(json.dumps({
        "paused": [paused.status, paused.awaiting],
        "done": [done.status, sorted(k for k in done.context if not k.startswith("_"))],
        "refused": refused,
        "node_code_imported": [m for m in ("dist_scenarios", "dist_workers") if m in sys.modules],
    }))


if __name__ == "__main__":
    asyncio.run(main())
