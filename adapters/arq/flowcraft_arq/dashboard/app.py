"""`create_app`: the dashboard as a Starlette ASGI app (mountable in any ASGI application).

Pages are rendered on the server with Jinja2 (autoescaping on: no context value is ever
written unescaped); live regions are refreshed over SSE (see `live.py`); the JavaScript and
CSS are two small files inside the package, served from `/static` (no CDN, no build step).
Run ids travel as a query parameter (`/run?id=...`) because child runs of subflows contain `/`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flowcraft.blueprint import WorkflowBlueprint
from flowcraft.builder import Flow
from flowcraft_arq.adapter import DEFAULT_QUEUE
from flowcraft_arq.client import FlowcraftClient
from flowcraft_arq.dashboard.actions import Actions
from flowcraft_arq.dashboard.blueprints import Blueprints, FlowInfo
from flowcraft_arq.dashboard.index import Row, RunIndex
from flowcraft_arq.dashboard.live import live
from flowcraft_arq.dashboard.queue import QueueMonitor
from flowcraft_arq.dashboard.security import Auth, Guard
from flowcraft_arq.dashboard.state import ACTIVE, TERMINAL, RunMeta
from flowcraft_arq.dashboard.views import STATES, RunReader
from flowcraft_arq.keys import DEFAULT_PREFIX

PAGE_SIZE = 50
REFRESH_S = 5.0
STATUSES = ("running", "awaiting", "completed", "failed", "cancelled")


def fmt_time(ms: int) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(ms: int | None) -> str:
    if ms is None or ms < 0:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {s} s"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


def current_nodes(meta: RunMeta | None, flow: FlowInfo | None) -> list[tuple[str, str]]:
    """(node id, state) of the nodes a live run is at now."""
    if meta is None:
        return []
    out = []
    for inst in meta.latest().values():
        state = "awaiting" if meta.awaiting_at(inst.node_index, inst.iteration) else inst.state
        if state in ("queued", "running", "batch", "subflow", "awaiting"):
            name = flow.node_id(inst.node_index) if flow else f"#{inst.node_index}"
            out.append((name, state))
    return sorted(out)


class Dashboard:
    """Everything the routes share: the client, the readers and the templates."""

    def __init__(self, redis_url: str, *, prefix: str, queue_name: str, read_only: bool,
                 flows: Iterable[Flow | WorkflowBlueprint]) -> None:
        flow_list = list(flows)
        self.client = FlowcraftClient.from_url(redis_url, flows=flow_list,
                                               queue_name=queue_name, prefix=prefix)
        self.store = self.client.store
        self.prefix, self.queue_name, self.read_only = prefix, queue_name, read_only
        self.blueprints = Blueprints(flow_list)
        self.index = RunIndex(self.store)
        self.reader = RunReader(self.store, queue_name)
        self.monitor = QueueMonitor(self.client.redis, prefix, queue_name)
        self.actions = Actions(self.client)
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("flowcraft_arq.dashboard", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
            lstrip_blocks=True)
        self.env.globals.update(fmt_time=fmt_time, fmt_duration=fmt_duration, states=STATES,
                                statuses=STATUSES, read_only=read_only, prefix=prefix,
                                queue_name=queue_name, message="", error="")

    async def enable(self) -> None:
        """Start the run index (see `index.py`); runs started before are not listed. Called at
        start-up when the server runs the app's lifespan, and before every page otherwise
        (a mounted app: cheap, once every few seconds)."""
        await self.index.enable()

    def render(self, request: Request, name: str, **values: Any) -> str:
        base = request.scope.get("root_path", "")
        return self.env.get_template(name).render(
            base=base, run_url=lambda run_id: f"{base}/run?id={quote(run_id, safe='')}",
            now_ms=int(time.time() * 1000), **values)

    def page(self, request: Request, name: str, code: int = 200, **values: Any) -> Response:
        return HTMLResponse(self.render(request, name, **values), code)

    # -- runs page ---------------------------------------------------------------------------

    def _filters(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        status = q.get("status", "")
        try:
            offset = max(0, int(q.get("offset", "0")))
        except ValueError:
            offset = 0
        return {"status": status if status in STATUSES else "", "flow": q.get("flow", "")[:200],
                "offset": offset}

    async def _runs_values(self, request: Request) -> dict[str, Any]:
        await self.enable()
        f = self._filters(request)
        page = await self.index.page(f["offset"], PAGE_SIZE, status=f["status"] or None,
                                     flow=f["flow"] or None)
        counts = await self.index.counts()
        rows = [self._row(r) for r in page.rows]
        keep = {k: v for k, v in (("status", f["status"]), ("flow", f["flow"])) if v}

        def link(offset: int | None) -> str:
            if offset is None:
                return ""
            query = urlencode({**keep, **({"offset": offset} if offset else {})})
            return f"{request.scope.get('root_path', '')}/" + (f"?{query}" if query else "")

        newer = link(max(0, f["offset"] - PAGE_SIZE)) if f["offset"] > 0 else ""
        flows = sorted(set(self.blueprints.ids) | {r["run"].blueprint_id for r in rows})
        return {**f, "page": page, "rows": rows, "counts": counts, "flows": flows,
                "newer": newer, "older": link(page.next_offset), "keep": keep}

    def _row(self, row: Row) -> dict[str, Any]:
        run = row.run
        flow = self.blueprints.get(run.blueprint_id)
        end = row.finished_ms or (0 if run.status not in ACTIVE else int(time.time() * 1000))
        return {"run": run, "duration": (end - run.created_ms) if end and run.created_ms
                else None, "current": current_nodes(row.meta, flow)}

    async def runs(self, request: Request) -> Response:
        search = request.query_params.get("q", "").strip()
        if search:
            if await self.index.exists(search):
                base = request.scope.get("root_path", "")
                return RedirectResponse(f"{base}/run?id={quote(search, safe='')}", 303)
            values = await self._runs_values(request)
            return self.page(request, "runs.html", 404, search=search, **values,
                             message="", error=f"no run with id {search!r}")
        values = await self._runs_values(request)
        return self.page(request, "runs.html", search="", message=request.query_params.get(
            "msg", ""), error=request.query_params.get("err", ""), **values)

    async def runs_live(self, request: Request) -> Response:
        async def produce() -> dict[str, Any]:
            values = await self._runs_values(request)
            return {"html": self.render(request, "_runs_table.html", **values)}

        return await live(request, produce, 2.0)

    # -- run page ----------------------------------------------------------------------------

    async def _run_values(self, run_id: str) -> dict[str, Any] | None:
        meta = await self.reader.meta(run_id)
        if meta is None:
            return None
        flow = self.blueprints.get(meta.blueprint_id)
        view = await self.reader.view(meta, flow)
        end = view.finished_ms or (int(time.time() * 1000) if meta.status in ACTIVE else 0)
        duration = end - meta.created_ms if end and meta.created_ms else None
        return {"run": meta, "view": view, "duration": duration,
                "actions_key": f"{meta.status}|{','.join(view.awaiting)}"}

    async def run(self, request: Request) -> Response:
        run_id = request.query_params.get("id", "")
        try:
            values = await self._run_values(run_id)
        except ValueError:
            values = None
        if values is None:
            return self.page(request, "missing.html", 404, run_id=run_id)
        return self.page(request, "run.html", message=request.query_params.get("msg", ""),
                         error=request.query_params.get("err", ""), **values)

    async def run_live(self, request: Request) -> Response:
        run_id = request.query_params.get("id", "")
        last: dict[str, Any] = {}

        async def produce() -> dict[str, Any]:
            """Re-read the whole run only when its meta or event log changed (or every
            REFRESH_S, for leases that expire and durations that grow)."""
            try:
                mark = await self.reader.fingerprint(run_id)
                values = None if mark is None else (
                    last if last.get("mark") == mark
                    and time.monotonic() - last["at"] < REFRESH_S
                    else await self._run_values(run_id))
            except ValueError:
                values = None
            if values is None:
                return {"status": "gone", "final": True}
            if values is last:
                payload: dict[str, Any] = last["payload"]
                return payload
            payload = {**values["view"].live_state(), "actions_key": values["actions_key"],
                       "html": self.render(request, "_run_live.html", **values),
                       "actions_html": self.render(request, "_run_actions.html", **values),
                       "final": values["run"].status in TERMINAL}
            last.update(mark=mark, at=time.monotonic(), payload=payload)
            return payload

        return await live(request, produce, 0.5)

    # -- workers and queue -------------------------------------------------------------------

    async def workers(self, request: Request) -> Response:
        return self.page(request, "workers.html", q=await self.monitor.view())

    async def workers_live(self, request: Request) -> Response:
        async def produce() -> dict[str, Any]:
            return {"html": self.render(request, "_workers_live.html",
                                        q=await self.monitor.view())}

        return await live(request, produce, 2.0)


def _routes(d: Dashboard) -> Sequence[Route | Mount]:
    return [
        Route("/", d.runs),
        Route("/run", d.run),
        Route("/workers", d.workers),
        Route("/live/runs", d.runs_live),
        Route("/live/run", d.run_live),
        Route("/live/workers", d.workers_live),
        Route("/actions/resume", d.actions.resume, methods=["POST"]),
        Route("/actions/cancel", d.actions.cancel, methods=["POST"]),
        Route("/actions/reconcile", d.actions.reconcile, methods=["POST"]),
        Route("/actions/bulk-cancel", d.actions.bulk_cancel, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("flowcraft_arq.dashboard", "static")]),
              name="static"),
    ]


def create_app(redis_url: str, *, prefix: str = DEFAULT_PREFIX,
               queue_name: str = DEFAULT_QUEUE, read_only: bool = False, auth: Auth = None,
               flows: Iterable[Flow | WorkflowBlueprint] = ()) -> Starlette:
    """The dashboard for the runs under `prefix` and the arq queue `queue_name`.

    `auth`: None, a token string, or a callable `(request) -> bool` (may be async).
    `flows`: the flows the workers serve; they give the dashboard each run's graph (node
    indexes -> ids) and let it resume and re-drive runs. Without them runs are still listed
    and shown, without their drawn graph.
    """
    d = Dashboard(redis_url, prefix=prefix, queue_name=queue_name, read_only=read_only,
                  flows=flows)

    async def redis_down(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"503 service unavailable: Redis error ({exc})", 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await d.enable()
        yield
        await d.client.close()

    app = Starlette(routes=list(_routes(d)), lifespan=lifespan,
                    exception_handlers={RedisError: redis_down})
    app.state.dashboard = d
    app.add_middleware(Guard, auth=auth, read_only=read_only)
    return app


__all__ = ["Dashboard", "create_app"]
