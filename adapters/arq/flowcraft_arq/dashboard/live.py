"""Server-Sent Events for live pages, with a one-shot JSON form for the polling fallback.

Each live region of a page names its endpoint; the endpoint re-reads the state every
`interval` seconds and sends it only when it changed (plus a comment every 15 s so proxies
keep the connection). A stream ends after `MAX_STREAM_S`; the browser's EventSource reconnects
by itself, so a long-open tab never pins a connection forever and server restarts are picked up.
`?once=1` answers the same payload as plain JSON: what the page polls when EventSource is
missing or keeps failing. A payload marked `final` (a run that ended) closes the stream, and the
page stops listening.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

MAX_STREAM_S = 300.0
KEEPALIVE_S = 15.0

Produce = Callable[[], Awaitable[dict[str, Any]]]


async def live(request: Request, produce: Produce, interval: float) -> Response:
    """SSE stream of `produce()` payloads, or one JSON payload with `?once=1`."""
    if request.query_params.get("once"):
        return Response(msgspec.json.encode(await produce()), media_type="application/json",
                        headers={"cache-control": "no-store"})

    async def events() -> AsyncIterator[bytes]:
        last = b""
        started = sent = time.monotonic()
        yield b"retry: 1500\n\n"
        while time.monotonic() - started < MAX_STREAM_S:
            if await request.is_disconnected():
                return
            state = await produce()
            payload = msgspec.json.encode(state)
            now = time.monotonic()
            if payload != last:
                last, sent = payload, now
                yield b"data: " + payload + b"\n\n"
            if state.get("final"):
                return  # nothing will change any more; the page stops listening
            elif now - sent > KEEPALIVE_S:
                sent = now
                yield b": keep-alive\n\n"
            await asyncio.sleep(interval)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


__all__ = ["MAX_STREAM_S", "live"]
