"""Flows and a real uvicorn server for the dashboard tests.

`gated` nodes block until the test opens their gate (an asyncio.Event per run, shared with the
in-process arq worker), so a test controls exactly when a run moves on while the page is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from flowcraft_arq.dashboard import create_app
from flowcraft_arq.testing import free_port

from flowcraft import Flow, NodeContext, NodeResult

GATES: dict[str, asyncio.Event] = {}


def gate(run_id: str) -> asyncio.Event:
    return GATES.setdefault(run_id, asyncio.Event())


async def prepare(ctx: NodeContext) -> dict[str, Any]:
    return {"order": await ctx.context.get("order", 0)}


async def gated(ctx: NodeContext) -> str:
    await gate(ctx.run_id).wait()
    return "through the gate"


async def finish(ctx: NodeContext) -> str:
    return f"finished after {ctx.input!r}"


async def echo(ctx: NodeContext) -> Any:
    return ctx.input


async def check(ctx: NodeContext) -> NodeResult:
    return NodeResult(output={"ok": True}, action="valid")


async def item_work(ctx: NodeContext) -> int:
    return int(ctx.input) * 10


async def fails(ctx: NodeContext) -> str:
    raise ValueError("card declined <b>by the bank</b>")


def gated_flow() -> Flow:
    """prepare -> hold (gated) -> finish."""
    return (Flow("gated", version="1").node("prepare", prepare).node("hold", gated)
            .node("finish", finish).edge("prepare", "hold").edge("hold", "finish"))


def approval_flow() -> Flow:
    """check -> review (wait) -> ship on "approve", refund on "reject"."""
    return (Flow("approval", version="2").node("check", check).wait("review")
            .node("ship", echo).node("refund", echo)
            .edge("check", "review", action="valid")
            .edge("review", "ship", action="approve")
            .edge("review", "refund", action="reject"))


def showcase_flow() -> Flow:
    """A wider graph for the screenshots: fan-out, a batch, a join and a wait."""
    return (Flow("orders", version="3").node("receive", prepare).node("check", check)
            .batch("pack", item_work, input_key="items")
            .node("invoice", echo).wait("approve").node("ship", finish)
            .edge("receive", "check").edge("receive", "pack")
            .edge("check", "invoice", action="valid").edge("pack", "invoice")
            .edge("invoice", "approve").edge("approve", "ship"))


def failing_flow() -> Flow:
    return Flow("payment", version="1").node("prepare", prepare).node("charge", fails) \
        .edge("prepare", "charge")


ALL_FLOWS = [gated_flow(), approval_flow(), showcase_flow(), failing_flow()]


def chromium() -> str:
    """The system Chromium; the browser tests fail (not skip) without it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("the dashboard browser tests need the system Chromium: "
                           "apt-get install -y chromium (.ci/run installs it)")
    return path


@contextlib.asynccontextmanager
async def serve(redis_url: str, **kwargs: Any) -> AsyncIterator[str]:
    """The dashboard app on a real uvicorn server on a free port; yields its base URL."""
    kwargs.setdefault("flows", ALL_FLOWS)
    app = create_app(redis_url, **kwargs)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def napping_flow() -> Flow:
    """prepare -> nap (a 30 s durable sleep) -> finish."""
    return (Flow("napping", version="1").node("prepare", prepare).sleep("nap", duration="30s")
            .node("finish", finish).edge("prepare", "nap").edge("nap", "finish"))


async def count_init(ctx: NodeContext) -> int:
    await ctx.context.set("n", 0)
    return 0


async def count_step(ctx: NodeContext) -> int:
    n = int(await ctx.context.get("n")) + 1
    await ctx.context.set("n", n)
    return n


def looping_flow() -> Flow:
    """init -> (step -> check) three times -> done."""
    return (Flow("looping", version="1").node("init", count_init).node("step", count_step)
            .node("check", echo).node("done", echo)
            .edge("init", "step").edge("step", "check")
            .loop("again", start="step", end="check", condition="n < 3")
            .edge("again", "done"))


async def double(ctx: NodeContext) -> int:
    value = int(await ctx.context.get("x")) * 2
    await ctx.context.set("doubled", value)
    return value


def child_flow() -> Flow:
    return Flow("child", version="1").node("double", double)


def parent_flow() -> Flow:
    return (Flow("parent", version="1").node("prepare", prepare)
            .subflow("sub", blueprint_id="child", inputs={"x": "order"},
                     outputs={"result": "doubled"})
            .node("after", echo).edge("prepare", "sub").edge("sub", "after"))


MORE_FLOWS = [looping_flow(), child_flow(), parent_flow(), napping_flow()]
