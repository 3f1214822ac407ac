"""`arq dist_workers.WorkerSettings`: the worker the subprocess tests start with arq's own CLI.

Configured from the environment (the tests set it): FLOWCRAFT_REDIS_URL (required: never a
default server), FLOWCRAFT_QUEUE, FLOWCRAFT_PREFIX, FLOWCRAFT_JOB_TIMEOUT, FLOWCRAFT_LEASE_MS.
"""

from __future__ import annotations

import os

from arq.connections import RedisSettings
from dist_scenarios import ALL_FLOWS, DAG_FLOWS, FAULT_FLOWS
from flowcraft_arq import worker_settings

_url = os.environ.get("FLOWCRAFT_REDIS_URL")
if not _url:
    raise RuntimeError("set FLOWCRAFT_REDIS_URL to the test's own redis-server")

WorkerSettings = worker_settings(
    [*ALL_FLOWS, *FAULT_FLOWS, *DAG_FLOWS.values()],
    redis_settings=RedisSettings.from_dsn(_url),
    queue_name=os.environ.get("FLOWCRAFT_QUEUE", "flowcraft"),
    prefix=os.environ.get("FLOWCRAFT_PREFIX", "flowcraft"),
    job_timeout=float(os.environ.get("FLOWCRAFT_JOB_TIMEOUT", "300")),
    lease_ms=int(os.environ.get("FLOWCRAFT_LEASE_MS", "30000")),
    max_jobs=int(os.environ.get("FLOWCRAFT_MAX_JOBS", "16")),
)
