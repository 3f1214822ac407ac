"""The run page's view of loops and subflows, and the actions' edge cases, over HTTP against a
real redis-server, real arq workers and a real uvicorn server."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
from dash_support import ALL_FLOWS, MORE_FLOWS, serve
from flowcraft_arq.dashboard.index import RunIndex
from flowcraft_arq.dashboard.queue import BUCKET_S, QueueMonitor

FLOWS = [*ALL_FLOWS, *MORE_FLOWS]


async def state(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = (await http.get("/live/run", params={"id": run_id,
                                                                  "once": "1"})).json()
    return answer


async def test_loop_nodes_show_their_iterations(
        redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    async with arq_worker(FLOWS), flowcraft_client(FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue, flows=FLOWS) as base:
        run_id = await client.start("looping")
        result = await client.wait(run_id, timeout=20)
        assert (result.status, result.context["n"]) == ("completed", 3)
        async with httpx.AsyncClient(base_url=base) as http:
            nodes = (await state(http, run_id))["nodes"]
            page = await http.get("/run", params={"id": run_id})
            async with http.stream("GET", "/live/run", params={"id": run_id}) as stream:
                lines = [line async for line in stream.aiter_lines() if line]
        assert lines[0] == "retry: 1500"
        assert [line[:6] for line in lines[1:]] == ["data: "]   # a finished run: then closed
        assert '"final":true' in lines[1]
        assert nodes["step"] == {"state": "completed", "label": "\u00d73 iterations"}
        assert nodes["check"] == {"state": "completed", "label": "\u00d73 iterations"}
        assert nodes["init"] == {"state": "completed", "label": ""}
        assert nodes["done"] == {"state": "completed", "label": ""}
        assert page.text.count("<tr><td><code>step</code></td>") == 3
        assert 'class="edge back"' in page.text


async def test_subflow_nodes_link_their_child_run_and_back(
        redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    async with arq_worker(FLOWS), flowcraft_client(FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue, flows=FLOWS) as base:
        run_id = await client.start("parent", {"order": 21})
        result = await client.wait(run_id, timeout=20)
        assert (result.status, result.context["result"]) == ("completed", 42)
        child = f"{run_id}/sub#0"
        async with httpx.AsyncClient(base_url=base) as http:
            parent_page = await http.get("/run", params={"id": run_id})
            child_page = await http.get("/run", params={"id": child})
            listing = await http.get("/")
        assert f'<a href="/run?id={quote(child, safe="")}">{child}</a>' in parent_page.text
        assert f'child of <a href="/run?id={run_id}">{run_id}</a>' in child_page.text
        assert '<g class="node st-completed" data-node="double"' in child_page.text
        assert f'<tr data-run="{child}">' in listing.text


async def test_redrive_requeues_a_stalled_run_which_then_completes(
        redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    async with flowcraft_client(FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue, flows=FLOWS) as base:
        run_id = await client.start("approval")
        await client.redis.delete(fc_queue)      # its start job is lost
        async with httpx.AsyncClient(base_url=base) as http:
            origin = {"origin": base}
            answer = await http.post("/actions/reconcile", headers=origin,
                                     data={"run_id": run_id, "stalled_after": "0"})
            assert answer.status_code == 303
            assert answer.headers["location"] == (
                f"/run?id={run_id}&msg=re-drove+the+run%3A+1+re-fired%2C+1+queued")
            assert await client.redis.zcard(fc_queue) == 1
            async with arq_worker(FLOWS):
                result = await client.wait(run_id, timeout=20)
            assert (result.status, result.awaiting) == ("awaiting", ["review"])
            bad = await http.post("/actions/resume", headers=origin,
                                  data={"run_id": run_id, "node_id": "review",
                                        "output": "{not json"})
            assert bad.status_code == 303
            shown = await http.get(bad.headers["location"])
            assert '<p class="flash err" role="alert">output is not JSON:' in shown.text
            wrong = await http.post("/actions/resume", headers=origin,
                                    data={"run_id": run_id, "node_id": "check"})
            shown = await http.get(wrong.headers["location"])
            assert "node &#39;check&#39; is not awaiting" in shown.text
            assert await client.status(run_id) == "awaiting"


async def test_without_the_flow_a_run_shows_the_nodes_of_its_events(
        redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    async with arq_worker(FLOWS), flowcraft_client(FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue, flows=[]) as base:
        run_id = await client.start("payment", {"order": 5})
        assert (await client.wait(run_id, timeout=20)).status == "failed"
        async with httpx.AsyncClient(base_url=base) as http:
            page = await http.get("/run", params={"id": run_id})
            nodes = (await state(http, run_id))["nodes"]
            resumed = await http.post("/actions/reconcile", headers={"origin": base},
                                      data={"run_id": run_id, "stalled_after": "0"})
        assert "The blueprint of <b>payment</b> is not known to this dashboard" in page.text
        assert "<svg" not in page.text
        assert nodes == {"prepare": {"state": "completed", "label": ""},
                         "charge": {"state": "failed", "label": ""}}
        assert resumed.status_code == 303   # a finished run: nothing to re-drive, no error
        assert "err=" not in resumed.headers["location"]


async def test_the_throughput_chart_counts_runs_started_and_finished(
        arq_worker: Any, flowcraft_client: Any, fc_prefix: str, fc_queue: str) -> None:
    async with arq_worker(FLOWS), flowcraft_client(FLOWS) as client:
        await RunIndex(client.store).enable()
        monitor = QueueMonitor(client.redis, fc_prefix, fc_queue)
        await monitor.view()                                  # the first sample
        for _ in range(3):
            await client.wait(await client.start("looping"), timeout=20)
        await asyncio.sleep(2.2)
        view = await monitor.view()
    started, finished = view.series
    assert (started.name, finished.name) == ("started/s", "finished/s")
    assert round(sum(v for _, v in started.points) * BUCKET_S) == 3
    assert round(sum(v for _, v in finished.points) * BUCKET_S) == 3
    assert (view.depth, view.deferred, view.active_runs) == (0, 0, 0)
