"""The example programs of the docs as flows: README.md, docs/constructs.md and
examples/order_processing.py (the flow docs/distributed.md runs on arq workers).

They mirror the doc programs' flows node for node; the parity test runs each in memory and on
arq workers. Imported as the top-level module ``parity_doc_flows``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from flowcraft import Flow, NodeContext, NodeResult

# -- README.md: "A workflow in 20 lines" (routing by condition, retries configured) ----------


async def fetch(ctx: NodeContext) -> dict[str, Any]:
    return {"total": await ctx.context.get("amount")}


async def charge(ctx: NodeContext) -> NodeResult:
    return NodeResult(output=f"charged {ctx.input['total']}", action="paid")


async def refund(ctx: NodeContext) -> str:
    return "nothing to charge"


def readme_order() -> Flow:
    return (Flow("order").node("fetch", fetch)
            .node("charge", charge, max_retries=3, retry_delay=100).node("skip", refund)
            .edge("fetch", "charge", condition="result.output.total > 0")
            .edge("fetch", "skip", condition="result.output.total <= 0"))


# -- docs/constructs.md ----------------------------------------------------------------------


async def fetch_page(ctx: NodeContext) -> int:
    page = int(await ctx.context.get("page", 0)) + 1
    await ctx.context.set("page", page)
    await ctx.context.set(f"rows_{page}", [page * 10, page * 10 + 1])
    return page


async def check(ctx: NodeContext) -> str:
    return f"page {ctx.input} checked in iteration {ctx.iteration}"


async def report(ctx: NodeContext) -> str:
    return f"read {await ctx.context.get('page')} pages"


def pager() -> Flow:
    return (Flow("pager").node("fetch_page", fetch_page).node("check", check)
            .node("report", report).edge("fetch_page", "check")
            .loop("pages", start="fetch_page", end="check", condition="page < 3")
            .edge("pages", "report"))


def runaway() -> Flow:
    return (Flow("runaway").node("spin", check)
            .loop("forever", start="spin", end="spin", condition="true", max_iterations=10))


async def price_sku(ctx: NodeContext) -> dict[str, Any]:
    if ctx.attempt == 1 and ctx.input == "mug":
        raise ConnectionError("price service blinked")
    return {"index": ctx.params["index"], "sku": ctx.input, "price": len(ctx.input)}


async def total(ctx: NodeContext) -> int:
    return sum(line["price"] for line in ctx.input)


def pricing() -> Flow:
    return (Flow("pricing")
            .batch("price_all", price_sku, input_key="skus", output_key="priced", concurrency=2,
                   max_retries=2)
            .node("total", total).edge("price_all", "total"))


async def normalise(ctx: NodeContext) -> str:
    email = str(await ctx.context.get("email")).strip().lower()
    await ctx.context.set("clean_email", email)
    return email


async def signup(ctx: NodeContext) -> str:
    return f"welcome {await ctx.context.get('email')}"


def normalise_email() -> Flow:
    return Flow("normalise-email").node("normalise", normalise)


def signup_flow() -> Flow:
    return (Flow("signup")
            .subflow("clean", blueprint_id="normalise-email",
                     inputs={"email": "raw_email"}, outputs={"email": "clean_email"})
            .node("signup", signup).edge("clean", "signup"))


async def send(ctx: NodeContext) -> str:
    return "reminder sent"


def reminder() -> Flow:
    return Flow("reminder").sleep("cool_down", duration="50ms").node("send", send).edge(
        "cool_down", "send")


async def draft(ctx: NodeContext) -> dict[str, Any]:
    return {"amount": await ctx.context.get("amount")}


async def pay(ctx: NodeContext) -> str:
    return f"paid, approved by {ctx.input['by']}"


async def reject(ctx: NodeContext) -> str:
    return "rejected"


def expense() -> Flow:
    return (Flow("expense").node("draft", draft).wait("manager").node("pay", pay)
            .node("reject", reject).edge("draft", "manager")
            .edge("manager", "pay", action="approve").edge("manager", "reject", action="deny"))


async def load(ctx: NodeContext) -> list[int]:
    return [3, 1, 2]


async def score(ctx: NodeContext) -> int:
    return int(sum(ctx.input)) * int(await ctx.context.get("weight", 1))


async def publish(ctx: NodeContext) -> str:
    return f"score={ctx.input}"


def scoring() -> Flow:
    return (Flow("scoring").node("load", load).node("score", score).node("publish", publish)
            .edge("load", "score").edge("score", "publish"))


async def one(ctx: NodeContext) -> int:
    return 1


async def two(ctx: NodeContext) -> int:
    return 2


async def add(ctx: NodeContext) -> int:
    return int(ctx.input["left"]) + int(ctx.input["right"])


def adder() -> Flow:
    return (Flow("adder").node("left", one).node("right", two).node("add", add)
            .edge("left", "add").edge("right", "add"))


async def greet(ctx: NodeContext) -> str:
    return "hello " + str(await ctx.context.get("name", "world"))


async def no_luck(ctx: NodeContext) -> None:
    raise RuntimeError("no luck")


def greeter() -> Flow:
    return Flow("greeter").node("greet", greet)


def broken() -> Flow:
    return Flow("broken").node("fail", no_luck)


# -- examples/order_processing.py (also what docs/distributed.md runs on arq) ----------------

EXAMPLE_PATH = Path(__file__).resolve().parents[2] / "examples" / "order_processing.py"


def _load_example() -> ModuleType:
    """The example module, loaded from its file (the repository root need not be importable)."""
    spec = importlib.util.spec_from_file_location("examples.order_processing", EXAMPLE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _load_example()


def order_processing() -> Flow:
    flow: Flow = EXAMPLE.flow
    return flow
