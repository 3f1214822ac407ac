"""The issue's "Must show": `arq examples.workers.WorkerSettings` runs a worker from the
command line (arq's own CLI, a real subprocess) that executes the example flow."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dist_helpers import comparable

from flowcraft import FlowRuntime

ROOT = Path(__file__).resolve().parents[2]


async def test_arq_cli_runs_examples_workers(redis_url: str, fc_queue: str, fc_prefix: str,
                                             flowcraft_client: Any, tmp_path: Path) -> None:
    from examples.order_processing import flow

    arq = Path(sys.executable).parent / "arq"
    command = [str(arq)] if arq.exists() else [sys.executable, "-m", "arq"]
    env = {**os.environ, "FLOWCRAFT_REDIS_URL": redis_url, "FLOWCRAFT_QUEUE": fc_queue,
           "FLOWCRAFT_PREFIX": fc_prefix}
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([*command, "examples.workers.WorkerSettings"], cwd=ROOT, env=env,
                              stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        expected = await FlowRuntime().run(flow, run_id=f"cli-{fc_queue}")
        async with flowcraft_client([flow]) as client:
            deadline = time.monotonic() + 20
            while not await client.redis.exists(f"{fc_queue}:health-check"):
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.05)
            result = await client.wait(await client.start(flow.id, run_id=f"cli-{fc_queue}"),
                                       timeout=30)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)
    assert comparable(result) == comparable(expected)
    assert "Starting worker" in log.read_text()
