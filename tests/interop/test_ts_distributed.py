"""TS-shaped blueprints run the same on the distributed worker (issue 13): the scatter/gather
pair and the loop entered through its controller are read when the graph is compiled, which the
in-memory runtime and `BaseDistributedAdapter` share. Runs on the in-memory store and queue;
the arq adapter is the same adapter over Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from interop_functions import registry
from interop_run import comparable

from flowcraft import FlowRuntime, load_blueprint
from flowcraft.distributed import BaseDistributedAdapter, MemoryQueue, MemoryStore

FIXTURES = Path(__file__).parent / "fixtures"
CASES = ["chain", "all_join", "any_join_one_branch", "retries", "fallback", "loop",
         "loop_two_nodes", "loop_via_controller", "batch"]


@pytest.mark.parametrize("name", CASES)
async def test_ts_blueprint_runs_the_same_distributed(name: str) -> None:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    blueprint = load_blueprint(data["blueprint"], strict=True)
    expected = await FlowRuntime(registry=registry_for(data)).run(
        blueprint, context=dict(data["context"]))

    store, queue = MemoryStore(), MemoryQueue()
    adapter = BaseDistributedAdapter(store, queue, [blueprint], registry=registry_for(data))
    workers = asyncio.create_task(queue.serve(adapter.handle, 4))
    try:
        run_id = await adapter.start_run(blueprint.id, dict(data["context"]))
        got = await store.wait_result(run_id, 10)
    finally:
        workers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await workers
        queue.close()
    assert got.status == expected.status == data["ts_result"]["status"]
    assert comparable(got.context, blueprint) == comparable(expected.context, blueprint) == \
        comparable(data["ts_result"]["context"], blueprint)


def registry_for(data: dict[str, Any]) -> dict[str, Any]:
    """A fresh registry (flaky counts per run) under the fixture's TS keys."""
    ours = registry()
    return {key: ours[fn] for key, fn in data["functions"].items() if fn in ours}
