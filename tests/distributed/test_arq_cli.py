"""`flowcraft status|resume|cancel|reconcile|watch --redis URL` (CONTRACT §10), run as a real
command (`python -m flowcraft_arq.cli`, the same subcommands the `flowcraft` script gets through
the `flowcraft.cli` entry point), against this test's own redis-server and worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dist_scenarios import HITL_FLOWS, diamond

HERE = Path(__file__).resolve().parent


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get(
        "PYTHONPATH", "")])}
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "flowcraft_arq.cli", *args], cwd=HERE, env=env,
        capture_output=True, text=True, timeout=60)


async def test_cli_status_watch_resume_cancel_reconcile(
        arq_worker: Any, flowcraft_client: Any, redis_url: str, fc_queue: str,
        fc_prefix: str) -> None:
    common = ["--redis", redis_url, "--queue", fc_queue, "--prefix", fc_prefix]
    flows = [diamond(), *HITL_FLOWS]
    async with arq_worker(flows), flowcraft_client(flows) as client:
        done = await client.start("diamond")
        await client.wait(done)
        status = await cli("status", done, *common)
        assert (status.returncode, status.stdout.strip()) == (0, "completed")
        as_json = await cli("status", done, "--json", *common)
        assert json.loads(as_json.stdout)["result"]["status"] == "completed"
        watch = await cli("watch", done, *common)
        assert watch.returncode == 0
        lines = watch.stdout.splitlines()
        assert "workflow:start" in lines[0] and "workflow:finish" in lines[-1]

        paused = await client.start("wait_flow")
        assert (await client.wait(paused)).status == "awaiting"
        resumed = await cli("resume", paused, "--flow", "dist_scenarios:wait_flow",
                            "--node", "approval", "--output", '{"ok": true}', *common)
        assert resumed.returncode == 0, resumed.stderr
        result = await client.wait(paused)
        assert result.status == "completed" and result.context["approval"] == {"ok": True}

        waiting = await client.start("wait_flow")
        await client.wait(waiting)
        cancelled = await cli("cancel", waiting, *common)
        assert (cancelled.returncode, cancelled.stdout.strip()) == (0, "cancelled")
        assert (await cli("cancel", waiting, *common)).returncode == 1

        counts = await cli("reconcile", "--flow", "dist_scenarios:diamond",
                           "--stalled-after", "0", *common)
        assert counts.returncode == 0, counts.stderr
        assert set(json.loads(counts.stdout)) == {"scanned", "stalled", "reconciled", "failed"}

    missing = await cli("status", "no-such-run", *common)
    assert missing.returncode == 2 and "no run" in missing.stderr
    usage = await cli("status", "x", "--redis", "redis://127.0.0.1:1/0")
    assert usage.returncode == 2
