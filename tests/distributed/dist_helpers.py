"""Helpers shared by the distributed tests (imported as the top-level module `dist_helpers`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from flowcraft import Flow, WorkflowResult
from flowcraft.distributed import BaseDistributedAdapter, MemoryQueue, MemoryStore


def comparable(result: WorkflowResult) -> dict[str, Any]:
    """What must be equal in memory and distributed: status, context, error node ids/types."""
    return {
        "status": result.status,
        "context": result.context,
        "errors": sorted((e.node_id, e.type) for e in result.errors),
        "awaiting": sorted(result.awaiting),
    }


class Cluster:
    """The in-memory store and queue, an adapter, and `workers` consumer tasks."""

    def __init__(self, flows: list[Flow], workers: int = 4, lease_ms: int = 2000) -> None:
        self.store = MemoryStore()
        self.queue = MemoryQueue()
        self.adapter = BaseDistributedAdapter(self.store, self.queue, flows, lease_ms=lease_ms)
        self.workers = workers
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Cluster:
        self.task = asyncio.create_task(self.queue.serve(self.adapter.handle, self.workers))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.queue.close()

    async def run(self, flow: Flow, context: dict[str, Any] | None = None,
                  run_id: str | None = None) -> WorkflowResult:
        run_id = await self.adapter.start_run(flow, context, run_id)
        return await self.store.wait_result(run_id, 10)
