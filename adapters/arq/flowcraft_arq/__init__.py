"""flowcraft on arq + Redis: run flowcraft workflows across many worker processes.

    from flowcraft_arq import worker_settings, FlowcraftClient
    WorkerSettings = worker_settings(flows=[order_flow], redis_settings=RedisSettings(...))
    # arq myapp.workers.WorkerSettings
    async with FlowcraftClient.from_url("redis://...", flows=[order_flow]) as client:
        run_id = await client.start("order", context={...})
        result = await client.wait(run_id)
"""

from flowcraft_arq.adapter import (
    NODE_FUNCTION,
    ArqAdapter,
    ArqControl,
    ArqQueue,
    deserialize,
    serialize,
    worker_settings,
)
from flowcraft_arq.client import FlowcraftClient
from flowcraft_arq.keys import DEFAULT_PREFIX, RunKeys, active_key
from flowcraft_arq.store import RedisRunStore

__all__ = [
    "DEFAULT_PREFIX",
    "NODE_FUNCTION",
    "ArqAdapter",
    "ArqControl",
    "ArqQueue",
    "FlowcraftClient",
    "RedisRunStore",
    "RunKeys",
    "active_key",
    "deserialize",
    "serialize",
    "worker_settings",
]
