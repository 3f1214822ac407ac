"""The dashboard over HTTP (no browser): the run index and its pagination, filters and lazy
pruning, counts, same-origin POSTs, SSE, sleeping nodes, the workers page and the CLI command.
Real redis-server, real arq worker, real uvicorn server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import msgspec
from dash_support import ALL_FLOWS, napping_flow, serve
from flowcraft_arq.dashboard import create_app
from flowcraft_arq.dashboard.index import RunIndex
from flowcraft_arq.dashboard.queue import health_counters
from flowcraft_arq.keys import runs_index_key
from flowcraft_arq.testing import free_port
from starlette.applications import Starlette
from starlette.routing import Mount


async def test_start_run_adds_the_run_to_the_index_once_a_dashboard_created_it(
        flowcraft_client: Any, fc_prefix: str) -> None:
    key = runs_index_key(fc_prefix)
    async with flowcraft_client(ALL_FLOWS) as client:
        unlisted = await client.start("gated")
        assert await client.redis.exists(key) == 0   # no dashboard, no index
        await RunIndex(client.store).enable()
        before = int(time.time() * 1000)
        run_id = await client.start("gated")
        score = await client.redis.zscore(key, run_id)
        meta = await client.store.meta(run_id)
        assert abs(score - int(meta["created"])) < 1_000
        assert before - 1_000 <= score <= time.time() * 1000 + 1_000
        assert await client.redis.zrange(key, 0, -1) == [b"", run_id.encode()]
        assert await client.redis.zscore(key, unlisted) is None
        assert [r.run.run_id for r in (await RunIndex(client.store).page()).rows] == [run_id]


async def test_pages_filters_counts_and_lazy_pruning(flowcraft_client: Any,
                                                     fc_prefix: str) -> None:
    async with flowcraft_client(ALL_FLOWS) as client:
        await RunIndex(client.store).enable()
        gated = [await client.start("gated") for _ in range(120)]
        approval = [await client.start("approval") for _ in range(15)]
        index = RunIndex(client.store)
        seen: list[str] = []
        offset: int | None = 0
        sizes = []
        while offset is not None:
            page = await index.page(offset, 50)
            sizes.append(len(page.rows))
            seen += [r.run.run_id for r in page.rows]
            offset = page.next_offset
        assert sizes == [50, 50, 35]
        newest_first = await client.redis.zrevrange(runs_index_key(fc_prefix), 0, -1)
        assert [*seen, ""] == [raw.decode() for raw in newest_first]
        assert sorted(seen) == sorted(gated + approval)
        only = await index.page(0, 50, flow="approval")
        assert sorted(r.run.run_id for r in only.rows) == sorted(approval)
        assert (only.next_offset, only.stopped_early) == (None, False)
        none = await index.page(0, 50, status="completed")
        assert (len(none.rows), none.next_offset, none.scanned) == (0, None, 135)
        counts = await index.counts()
        assert (counts.total, counts.active, counts.by_status) == (135, 135, {"running": 135})
        expired = gated[:5]
        for run_id in expired:
            await client.redis.delete(*client.store.keys(run_id).all())
        seen = []
        offset = 0
        while offset is not None:
            page = await index.page(offset, 50)
            seen += [r.run.run_id for r in page.rows]
            offset = page.next_offset
        assert sorted(seen) == sorted(gated[5:] + approval)
        assert await client.redis.zcard(runs_index_key(fc_prefix)) == 131   # with ""


async def test_posts_must_come_from_the_dashboard_itself(
        redis_url: str, flowcraft_client: Any, fc_prefix: str, fc_queue: str) -> None:
    async with flowcraft_client(ALL_FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue) as base:
        run_id = await client.start("approval")
        async with httpx.AsyncClient(base_url=base) as http:
            page = await http.get("/")
            assert page.headers["content-security-policy"].startswith("default-src 'self'")
            for headers in ({}, {"origin": "http://evil.example"},
                            {"referer": "http://evil.example/"},
                            {"origin": base, "sec-fetch-site": "cross-site"}):
                refused = await http.post("/actions/cancel", data={"run_id": run_id},
                                          headers=headers)
                assert (refused.status_code, refused.text) == (
                    403, "403 forbidden: cross-origin request refused")
            assert await client.status(run_id) == "running"
            done = await http.post("/actions/cancel", data={"run_id": run_id},
                                   headers={"referer": f"{base}/run?id={run_id}"})
            assert (done.status_code, done.headers["location"]) == (
                303, f"/run?id={run_id}&msg=cancelled")
            assert await client.status(run_id) == "cancelled"
            missing = await http.get("/run", params={"id": "no-such-run"})
            assert missing.status_code == 404
            found = await http.get("/", params={"q": run_id})
            assert (found.status_code, found.headers["location"]) == (303, f"/run?id={run_id}")


async def test_sse_sends_the_run_state_and_sleep_shows_as_sleeping(
        redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    flows = [*ALL_FLOWS, napping_flow()]
    async with arq_worker(flows), flowcraft_client(flows) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue, flows=flows) as base:
        run_id = await client.start("napping")
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            state: dict[str, Any] = {}
            for _ in range(100):
                state = (await http.get("/live/run", params={"id": run_id, "once": "1"})).json()
                if state["nodes"]["nap"]["state"] == "sleeping":
                    break
                await asyncio.sleep(0.1)
            assert {k: v["state"] for k, v in state["nodes"].items()} == {
                "prepare": "completed", "nap": "sleeping", "finish": "queued"}
            assert state["status"] == "running"
            async with http.stream("GET", "/live/run", params={"id": run_id}) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        pushed = msgspec.json.decode(line[6:])
                        break
            assert pushed["nodes"] == state["nodes"]
            workers = await http.get("/live/workers", params={"once": "1"})
            html = workers.json()["html"]
            assert '<span class="n" data-q="deferred">1</span>' in html
            assert '<span class="badge st-completed">alive</span>' in html
            assert '<span class="n" data-q="in-flight">0</span>' in html
        assert await client.cancel(run_id) is True


async def test_the_cli_command_serves_the_dashboard(redis_url: str, flowcraft_client: Any,
                                                    fc_prefix: str, fc_queue: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "flowcraft_arq.cli", "dashboard", "--redis", redis_url,
         "--prefix", fc_prefix, "--queue", fc_queue, "--port", str(port), "--read-only",
         "--token", "t0ken"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            for _ in range(100):
                try:
                    unauthorized = await http.get("/")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.1)
            assert unauthorized.status_code == 401
            async with flowcraft_client(ALL_FLOWS) as client:   # after the server started
                run_id = await client.start("approval")
            auth = {"authorization": "Bearer t0ken"}
            page = await http.get("/", headers=auth)
            assert page.status_code == 200
            assert f'<tr data-run="{run_id}">' in page.text
            assert '<span class="badge ro">read-only</span>' in page.text
            refused = await http.post("/actions/cancel", data={"run_id": run_id},
                                      headers={**auth, "origin": base})
            assert refused.status_code == 403
    finally:
        process.terminate()
        _, err = process.communicate(timeout=20)
    assert f"flowcraft dashboard on http://127.0.0.1:{port}/?token=..." in err.decode()


def test_health_counters_parse_arq_health_lines() -> None:
    line = "Nov-29 19:57:01 j_complete=12 j_failed=1 j_retried=3 j_ongoing=2 queued=7"
    assert health_counters(line) == {"j_complete": 12, "j_failed": 1, "j_retried": 3,
                                     "j_ongoing": 2, "queued": 7}
    assert health_counters("") == {}


async def test_mounted_under_a_path_inside_another_app(redis_url: str, flowcraft_client: Any,
                                                       fc_prefix: str, fc_queue: str) -> None:
    dashboard = create_app(redis_url, prefix=fc_prefix, queue_name=fc_queue, flows=ALL_FLOWS,
                           auth=lambda request: request.headers.get("x-staff") == "yes")
    outer = Starlette(routes=[Mount("/ops", app=dashboard)])
    staff = {"x-staff": "yes"}
    async with flowcraft_client(ALL_FLOWS) as client, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=outer), base_url="http://testserver") as http:
        assert (await http.get("/ops/")).status_code == 401
        assert (await http.get("/ops/", headers=staff)).status_code == 200   # starts the index
        run_id = await client.start("approval")
        page = await http.get("/ops/", headers=staff)
        assert page.status_code == 200
        assert '<link rel="stylesheet" href="/ops/static/dashboard.css">' in page.text
        assert f'<a href="/ops/run?id={run_id}">{run_id}</a>' in page.text
        assert (await http.get("/ops/static/dashboard.js", headers=staff)).status_code == 200
        cancelled = await http.post("/ops/actions/cancel", data={"run_id": run_id},
                                    headers={**staff, "origin": "http://testserver"})
        assert (cancelled.status_code, cancelled.headers["location"]) == (
            303, f"/ops/run?id={run_id}&msg=cancelled")
        assert await client.status(run_id) == "cancelled"
        await dashboard.state.dashboard.client.close()
