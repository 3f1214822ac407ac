"""The dashboard's POST actions: resume, cancel, re-drive one run, bulk cancel.

All go through `FlowcraftClient` (or, for re-driving a single run, the same store call and
dispatch that `client.reconcile` uses per run). Each answers with a redirect back to the page
(POST/redirect/GET), carrying a short message or error that the page shows escaped. Forms are
parsed here from the url-encoded body, so the extra needs no multipart library.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlencode

import msgspec
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from flowcraft.distributed import graph_spec
from flowcraft.errors import FlowcraftError
from flowcraft.result import utc_now
from flowcraft_arq.client import FlowcraftClient

log = logging.getLogger("flowcraft.arq.dashboard")

MAX_FORM_BYTES = 1_000_000
BULK_LIMIT = 500


async def form(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def first(data: dict[str, list[str]], name: str) -> str:
    values = data.get(name) or [""]
    return values[0].strip()


def back(request: Request, path: str, params: dict[str, str]) -> Response:
    base = request.scope.get("root_path", "")
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(f"{base}{path}" + (f"?{query}" if query else ""), 303)


class Actions:
    def __init__(self, client: FlowcraftClient) -> None:
        self.client = client

    async def resume(self, request: Request) -> Response:
        data = await form(request)
        run_id, node_id = first(data, "run_id"), first(data, "node_id") or None
        raw, action = first(data, "output"), first(data, "action") or None
        try:
            output: Any = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError as exc:
            return back(request, "/run", {"id": run_id, "err": f"output is not JSON: {exc}"})
        try:
            await self.client.resume(run_id, node_id=node_id, output=output, action=action)
        except (FlowcraftError, RedisError) as exc:
            return back(request, "/run", {"id": run_id, "err": str(exc)})
        log.info("dashboard: resumed %s of run %s (action %r)", node_id, run_id, action)
        what = node_id or "the awaiting node"
        return back(request, "/run", {"id": run_id, "msg": f"resumed {what}"})

    async def cancel(self, request: Request) -> Response:
        data = await form(request)
        run_id = first(data, "run_id")
        try:
            done = await self.client.cancel(run_id)
        except (FlowcraftError, RedisError) as exc:
            return back(request, "/run", {"id": run_id, "err": str(exc)})
        log.info("dashboard: cancel run %s -> %s", run_id, done)
        msg = "cancelled" if done else "not cancelled: the run had already ended"
        return back(request, "/run", {"id": run_id, "msg": msg})

    async def reconcile(self, request: Request) -> Response:
        data = await form(request)
        run_id = first(data, "run_id")
        try:
            stalled_s = float(first(data, "stalled_after") or "60")
            outcome = await self.client.store.reconcile_run(
                run_id, utc_now().isoformat(), int(max(0.0, stalled_s) * 1000))
            if outcome.jobs:
                graph = self.client.adapter.graph(outcome.blueprint_id)
                await self.client.adapter.dispatch(run_id, graph_spec(graph), outcome.jobs)
        except ValueError:
            return back(request, "/run", {"id": run_id, "err": "stalled_after: not a number"})
        except (FlowcraftError, RedisError) as exc:
            return back(request, "/run", {"id": run_id, "err": str(exc)})
        log.info("dashboard: re-drove run %s (%d jobs)", run_id, len(outcome.jobs))
        return back(request, "/run", {"id": run_id, "msg": f"re-drove the run: "
                                      f"{outcome.refired} re-fired, {len(outcome.jobs)} queued"})

    async def bulk_cancel(self, request: Request) -> Response:
        data = await form(request)
        ids = [i for i in data.get("run_id", []) if i][:BULK_LIMIT]
        cancelled = 0
        for run_id in ids:
            try:
                cancelled += bool(await self.client.cancel(run_id))
            except (FlowcraftError, RedisError):
                continue
        keep = {k: first(data, k) for k in ("status", "flow")}
        return back(request, "/", {**keep, "msg": f"cancelled {cancelled} of {len(ids)} runs"})


__all__ = ["Actions"]
