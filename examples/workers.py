"""Run the order-processing example on arq workers, from the repository root:

    arq examples.workers.WorkerSettings            # one worker process; start several

and start runs from any process:

    from flowcraft_arq import FlowcraftClient
    from examples.order_processing import flow
    async with FlowcraftClient.from_url("redis://localhost:6379/0", flows=[flow]) as client:
        result = await client.wait(await client.start("order-processing"))

FLOWCRAFT_REDIS_URL, FLOWCRAFT_QUEUE and FLOWCRAFT_PREFIX select the server, the arq queue and
the key prefix (the client must use the same queue and prefix).
"""

from __future__ import annotations

import os

from arq.connections import RedisSettings
from flowcraft_arq import worker_settings

from examples.order_processing import flow

WorkerSettings = worker_settings(
    [flow],
    redis_settings=RedisSettings.from_dsn(
        os.environ.get("FLOWCRAFT_REDIS_URL", "redis://localhost:6379/0")),
    queue_name=os.environ.get("FLOWCRAFT_QUEUE", "flowcraft"),
    prefix=os.environ.get("FLOWCRAFT_PREFIX", "flowcraft"),
)
