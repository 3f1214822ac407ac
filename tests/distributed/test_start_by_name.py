"""Start by name (CONTRACT §13.1): a client process without the workers' code starts, waits
for and resumes runs of the flows the workers published; an unserved flow is refused at once
with a BlueprintError that names it and what is served."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from flowcraft_arq import FlowcraftClient
from flowcraft_arq.keys import catalog_key
from redis.asyncio import Redis
from test_arq_faults import worker_processes

from flowcraft import BlueprintError

HERE = Path(__file__).resolve().parent


async def test_a_client_without_node_code_starts_waits_and_resumes_by_name(
        redis_url: str, fc_queue: str, fc_prefix: str, tmp_path: Path) -> None:
    redis = Redis.from_url(redis_url)
    try:
        with worker_processes(1, redis_url, fc_queue, fc_prefix, tmp_path) as workers:
            await workers[0].ready(redis)
            published = await redis.hkeys(catalog_key(fc_prefix))  # type: ignore[misc]
            env = {**os.environ, "FLOWCRAFT_REDIS_URL": redis_url, "FLOWCRAFT_QUEUE": fc_queue,
                   "FLOWCRAFT_PREFIX": fc_prefix}
            # the client script runs from another folder, so dist_scenarios is not importable
            out = subprocess.run([sys.executable, str(HERE / "name_only_client.py")],
                                 cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=120, check=True)
    finally:
        await redis.aclose()
    assert b'["wait_actions",null]' in published
    seen: dict[str, Any] = json.loads(out.stdout)
    assert seen["paused"] == ["awaiting", ["review"]]
    assert seen["done"] == ["completed", ["A", "ok", "order", "review", "started"]]
    assert seen["refused"].startswith("no worker serves flow no_such_flow (served: {")
    assert "'wait_actions': ['(none)']" in seen["refused"]
    assert seen["node_code_imported"] == []


async def test_start_picks_the_version_asked_for(redis_url: str, fc_prefix: str) -> None:
    from flowcraft_arq import catalog

    from flowcraft import Flow

    def noop(ctx: Any) -> None:
        return None

    redis = Redis.from_url(redis_url)
    try:
        await catalog.publish(redis, fc_prefix, [
            Flow("versioned", version="1").node("a", noop).to_blueprint(),
            Flow("versioned", version="2").node("b", noop).to_blueprint()])
        two = await catalog.find(redis, fc_prefix, "versioned", "2")
        one = await catalog.find(redis, fc_prefix, "versioned", "1")
        async with FlowcraftClient.from_url(redis_url, prefix=fc_prefix) as client:
            try:
                await client.start("versioned", version="3")
            except BlueprintError as exc:
                refused = str(exc)
    finally:
        await redis.aclose()
    assert [n.id for n in two.nodes] == ["b"] and two.version == "2"
    assert [n.id for n in one.nodes] == ["a"] and one.version == "1"
    assert refused == ("no worker serves flow versioned version '3' "
                       "(served: {'versioned': ['1', '2']})")
