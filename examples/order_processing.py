"""Order processing, in memory: fan-out, a retried flaky node, an `all` join, an if/else branch
that merges into another join.

Run it with `make demo` or `python examples/order_processing.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from flowcraft import Event, Flow, FlowRuntime, NodeContext

ORDER = {
    "id": "A-1001",
    "customer": "ada@example.com",
    "lines": [{"sku": "kettle", "qty": 1, "price": 39.5}, {"sku": "mug", "qty": 4, "price": 6.25}],
}

async def fetch_order(ctx: NodeContext) -> dict[str, Any]:
    order: dict[str, Any] = await ctx.context.get("order", ORDER)
    return order


async def price_order(ctx: NodeContext) -> float:
    return round(sum(line["qty"] * line["price"] for line in ctx.input["lines"]), 2)


async def check_stock(ctx: NodeContext) -> dict[str, bool]:
    return {line["sku"]: True for line in ctx.input["lines"]}


async def fraud_check(ctx: NodeContext) -> dict[str, Any]:
    """Flaky on its first attempt, like a remote scoring service: the retry policy absorbs it."""
    if ctx.attempt == 1:
        raise ConnectionError("fraud service timed out")
    return {"score": 0.07, "attempts": ctx.attempt}


async def review(ctx: NodeContext) -> dict[str, Any]:
    total, stock, fraud = ctx.input["price"], ctx.input["stock"], ctx.input["fraud"]
    approved = all(stock.values()) and fraud["score"] < 0.5
    return {"approved": approved, "total": total}


async def ship(ctx: NodeContext) -> str:
    await ctx.context.set("tracking", "TRK-" + ctx.run_id[:8])
    return "shipped"


async def hold(ctx: NodeContext) -> str:
    return "held for manual review"


def notify(ctx: NodeContext) -> str:
    """A plain function: flowcraft runs it in a worker thread."""
    (outcome,) = ctx.input.values()
    return f"customer notified: order {outcome}"


flow = (
    Flow("order-processing", version="1")
    .node("fetch", fetch_order)
    .node("price", price_order)
    .node("stock", check_stock)
    .node("fraud", fraud_check, max_retries=3, retry_delay=50)
    .node("review", review)
    .node("ship", ship)
    .node("hold", hold)
    .node("notify", notify)
    .edge("fetch", "price")
    .edge("fetch", "stock")
    .edge("fetch", "fraud")
    .edge("price", "review")
    .edge("stock", "review")
    .edge("fraud", "review")
    .edge("review", "ship", condition="result.output.approved")
    .edge("review", "hold", condition="!result.output.approved")
    .edge("ship", "notify")
    .edge("hold", "notify")
)


class PrintProgress:
    """An event bus that prints one line per node, so the demo shows the run as it happens."""

    async def emit(self, event: Event) -> None:
        node = getattr(event, "node_id", "")
        if event.type in ("node:start", "node:finish", "node:retry", "node:skipped"):
            extra = f" (attempt {getattr(event, 'attempt', '')})" if event.type == "node:retry" \
                else ""
            print(f"{event.type:<13} {node}{extra}")


async def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    runtime = FlowRuntime(event_bus=PrintProgress())
    result = await runtime.run(flow, context={"order": ORDER})
    print(f"\nrun {result.run_id}: {result.status}")
    public = {k: v for k, v in result.context.items() if not k.startswith("_")}
    print(json.dumps(public, indent=2))
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
