"""The dashboard in a real browser (system Chromium via Playwright) against a real redis-server
and a real in-process arq worker: live runs list, live graph, resume, cancel, escaping."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from dash_support import ALL_FLOWS, gate, serve
from playwright.async_api import Page

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOCS = Path(__file__).resolve().parents[2] / "docs"
COMPLETED_FILL = "rgb(46, 158, 91)"
RUNNING_FILL = "rgb(47, 125, 225)"
PENDING_FILL = "rgb(230, 232, 238)"


async def fill(page: Page, node_id: str) -> str:
    value: str = await page.eval_on_selector(f'[data-node="{node_id}"] rect',
                                             "e => getComputedStyle(e).fill")
    return value


async def wait_fill(page: Page, node_id: str, colour: str) -> None:
    await page.wait_for_function(
        "([id, colour]) => { const r = document.querySelector(`[data-node=\"${id}\"] rect`);"
        " return r && getComputedStyle(r).fill === colour; }", arg=[node_id, colour])


async def test_a_started_run_appears_on_the_runs_page_without_reload(
        page: Page, redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    async with arq_worker(ALL_FLOWS), flowcraft_client(ALL_FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue) as base:
        await page.goto(base + "/")
        assert await page.locator("tbody tr[data-run]").count() == 0
        await page.evaluate("window.__sameDocument = true")
        run_id = await client.start("gated", {"order": 1})
        row = page.locator(f'tr[data-run="{run_id}"]')
        await row.wait_for()
        assert await row.locator("td").nth(2).inner_text() == "gated"
        assert await row.locator(".badge").inner_text() == "running"
        assert await page.evaluate("window.__sameDocument") is True
        assert await page.get_attribute("#runs-live", "data-live-mode") == "sse"
        gate(run_id).set()
        assert (await client.wait(run_id, timeout=15)).status == "completed"
        await page.locator(f'tr[data-run="{run_id}"] .badge.st-completed').wait_for()


@pytest.mark.parametrize("transport", ["sse", "poll"])
async def test_graph_nodes_change_colour_as_the_run_progresses(
        transport: str, page: Page, redis_url: str, arq_worker: Any, flowcraft_client: Any,
        fc_prefix: str, fc_queue: str) -> None:
    if transport == "poll":
        await page.add_init_script("delete window.EventSource")
    async with arq_worker(ALL_FLOWS), flowcraft_client(ALL_FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue) as base:
        run_id = await client.start("gated", {"order": 2})
        await page.goto(f"{base}/run?id={run_id}")
        await page.wait_for_selector('[data-node="hold"][data-state="running"]')
        await page.evaluate("window.__sameDocument = true")
        assert await fill(page, "finish") == PENDING_FILL
        await wait_fill(page, "hold", RUNNING_FILL)
        gate(run_id).set()
        await page.wait_for_selector('[data-node="finish"][data-state="completed"]')
        await wait_fill(page, "finish", COMPLETED_FILL)
        await wait_fill(page, "hold", COMPLETED_FILL)
        assert await page.inner_text("[data-run-status]") == "completed"
        assert await page.evaluate("window.__sameDocument") is True
        assert await page.get_attribute("#run-live", "data-live-mode") == transport
        assert await page.locator("table.timeline tbody tr").count() == 3


async def test_resume_from_the_form_completes_the_run_and_routes_on_the_action(
        page: Page, redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    async with arq_worker(ALL_FLOWS), flowcraft_client(ALL_FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue) as base:
        run_id = await client.start("approval")
        assert (await client.wait(run_id, timeout=15)).status == "awaiting"
        await page.goto(f"{base}/run?id={run_id}")
        assert await page.get_attribute('[data-node="review"]', "data-state") == "awaiting"
        form = page.locator('form[data-resume="review"]')
        await form.locator("textarea[name=output]").fill('{"by": "ann"}')
        await form.locator("input[name=action]").fill("approve")
        await form.locator("button[type=submit]").click()
        await page.locator(".flash.ok").wait_for()
        assert await page.inner_text(".flash.ok") == "resumed review"
        await page.wait_for_selector('[data-node="ship"][data-state="completed"]')
        await page.wait_for_selector('[data-node="refund"][data-state="skipped"]')
        result = await client.wait(run_id, timeout=15)
        assert (result.status, result.context["review"]) == ("completed", {"by": "ann"})
        assert result.context["ship"] == {"by": "ann"}
        assert "refund" not in result.context
        assert await page.locator("form[data-resume]").count() == 0


async def test_cancel_button_cancels_the_run(
        page: Page, redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    async with arq_worker(ALL_FLOWS), flowcraft_client(ALL_FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue) as base:
        run_id = await client.start("gated", {"order": 3})
        await page.goto(f"{base}/run?id={run_id}")
        await page.wait_for_selector('[data-node="hold"][data-state="running"]')
        await page.click('button[data-action="cancel"]')
        assert await page.inner_text(".flash.ok") == "cancelled"
        result = await client.wait(run_id, timeout=15)
        assert result.status == "cancelled"
        await page.wait_for_selector('[data-run-status].st-cancelled')
        assert await page.inner_text("[data-run-status]") == "cancelled"
        assert await page.locator('button[data-action="cancel"]').count() == 0


async def test_bulk_cancel_of_the_selected_runs(
        page: Page, redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    async with arq_worker(ALL_FLOWS), flowcraft_client(ALL_FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue) as base:
        runs = [await client.start("approval") for _ in range(3)]
        for run_id in runs:
            assert (await client.wait(run_id, timeout=15)).status == "awaiting"
        await page.goto(base + "/")
        await page.check(f'input[name=run_id][value="{runs[0]}"]')
        await page.check(f'input[name=run_id][value="{runs[2]}"]')
        await page.click("button.bulk-cancel")
        assert await page.inner_text(".flash.ok") == "cancelled 2 of 2 runs"
        statuses = [await client.status(run_id) for run_id in runs]
        assert statuses == ["cancelled", "awaiting", "cancelled"]
        await page.check("input.select-all")
        assert await page.locator("input[name=run_id]:checked").count() == 3


async def test_read_only_mode_shows_no_actions_and_refuses_posts(
        page: Page, redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    async with arq_worker(ALL_FLOWS), flowcraft_client(ALL_FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue, read_only=True) as base:
        run_id = await client.start("approval")
        assert (await client.wait(run_id, timeout=15)).status == "awaiting"
        await page.goto(f"{base}/run?id={run_id}")
        assert await page.get_attribute('[data-node="review"]', "data-state") == "awaiting"
        assert await page.locator("form[action*='/actions/']").count() == 0
        assert await page.locator("button").count() == 0
        await page.goto(base + "/")
        assert await page.locator(f'tr[data-run="{run_id}"]').count() == 1
        assert await page.locator("input[type=checkbox]").count() == 0
        assert await page.locator("form[action*='/actions/'] button").count() == 0
        async with httpx.AsyncClient(base_url=base) as http:
            for action in ("cancel", "resume", "reconcile", "bulk-cancel"):
                refused = await http.post(f"/actions/{action}", data={"run_id": run_id},
                                          headers={"origin": base})
                assert (refused.status_code, refused.text) == (
                    403, "403 forbidden: this dashboard is read-only")
        assert await client.status(run_id) == "awaiting"


async def test_context_values_and_error_messages_are_shown_as_text(
        page: Page, redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    hostile = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"
    async with arq_worker(ALL_FLOWS), flowcraft_client(ALL_FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue) as base:
        run_id = await client.start("payment", {"note": hostile, hostile: "as a key"})
        assert (await client.wait(run_id, timeout=15)).status == "failed"
        await page.goto(f"{base}/run?id={run_id}")
        shown = await page.inner_text("pre.context")
        assert '"note": "<script>window.__pwned = 1</script><img src=x onerror=\\"window.' \
               '__pwned = 2\\">"' in shown
        assert '"as a key"' in shown
        assert await page.locator("pre.context script, pre.context img").count() == 0
        assert await page.inner_text(".errors pre") == "card declined <b>by the bank</b>"
        assert await page.locator(".errors pre b").count() == 0
        await asyncio.sleep(0.7)  # a live refresh re-renders the region: still text
        assert await page.locator("pre.context script, pre.context img").count() == 0
        assert await page.evaluate("typeof window.__pwned") == "undefined"
        assert await page.get_attribute('[data-node="charge"]', "data-state") == "failed"


async def test_token_auth_guards_every_request(
        page: Page, redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    async with flowcraft_client(ALL_FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue, auth="s3cret") as base:
        run_id = await client.start("approval")
        async with httpx.AsyncClient(base_url=base) as http:
            for path in ("/", f"/run?id={run_id}", "/workers", "/live/runs?once=1",
                         "/static/dashboard.js"):
                assert (await http.get(path)).status_code == 401, path
            denied = await http.post("/actions/cancel", data={"run_id": run_id},
                                     headers={"origin": base})
            assert denied.status_code == 401
            bearer = {"authorization": "Bearer s3cret"}
            assert (await http.get("/", headers=bearer)).status_code == 200
            assert (await http.get("/", headers={"authorization": "Bearer nope"})
                    ).status_code == 401
        wrong = await page.goto(base + "/?token=nope")
        assert wrong is not None and wrong.status == 401
        opened = await page.goto(base + "/?token=s3cret&status=running")
        assert opened is not None and opened.status == 200
        assert page.url == base + "/?status=running"
        await page.locator(f'tr[data-run="{run_id}"]').wait_for()
        await page.click(f'tr[data-run="{run_id}"] a')
        await page.wait_for_selector('[data-node="check"]')
        assert await page.inner_text("h1") == f"Run {run_id}"
        assert await client.status(run_id) == "running"


async def test_screenshots_of_the_runs_page_and_a_run_page(
        page: Page, redis_url: str, arq_worker: Any, flowcraft_client: Any, fc_prefix: str,
        fc_queue: str) -> None:
    """Writes docs/dashboard-runs.png and docs/dashboard-run.png (the docs show them)."""
    async with arq_worker(ALL_FLOWS), flowcraft_client(ALL_FLOWS) as client, \
            serve(redis_url, prefix=fc_prefix, queue_name=fc_queue) as base:
        for order in range(3):
            done = await client.start("gated", {"order": order})
            gate(done).set()
            await client.wait(done, timeout=15)
        failed = await client.start("payment", {"order": 9})
        approval = await client.start("approval")
        stopped = await client.start("gated", {"order": 4})
        await client.wait(failed, timeout=15)
        await client.wait(approval, timeout=15)
        await client.cancel(stopped)
        await client.wait(stopped, timeout=15)
        running = await client.start("gated", {"order": 5})
        shown = await client.start("orders", {"order": 6, "items": [1, 2, 3]})
        assert (await client.wait(shown, timeout=15)).status == "awaiting"
        await page.goto(base + "/")
        await page.locator(f'tr[data-run="{running}"] .chip').wait_for()
        assert await page.locator("tbody tr[data-run]").count() == 8
        await page.screenshot(path=str(DOCS / "dashboard-runs.png"), full_page=True)
        await page.goto(f"{base}/run?id={shown}")
        await page.wait_for_selector('[data-node="approve"][data-state="awaiting"]')
        assert await page.text_content('[data-node="pack"] [data-label]') == " \u00b7 3/3 items"
        await page.screenshot(path=str(DOCS / "dashboard-run.png"), full_page=True)
        gate(running).set()
    assert (DOCS / "dashboard-runs.png").stat().st_size > 10_000
    assert (DOCS / "dashboard-run.png").stat().st_size > 10_000
