"""Flows used by the CLI tests and by the fresh-process resume test (tests/resume_child.py).

Imported as the top-level module ``cli_flows``: the tests put ``tests/`` on ``PYTHONPATH`` for
their subprocesses, and pytest puts it on ``sys.path`` for the test process itself.
"""

from __future__ import annotations

from typing import Any

from flowcraft import Flow, NodeContext


async def greet(ctx: NodeContext) -> str:
    name = await ctx.context.get("name", "world")
    return f"hello {name}"


async def shout(ctx: NodeContext) -> str:
    return str(ctx.input).upper()


async def explode(ctx: NodeContext) -> Any:
    raise RuntimeError("kaboom in explode")


async def never(ctx: NodeContext) -> str:
    return "should not run"


async def draft(ctx: NodeContext) -> dict[str, Any]:
    return {"amount": await ctx.context.get("amount", 0)}


async def ship(ctx: NodeContext) -> str:
    return f"shipped {ctx.input['by']}"


async def cancel(ctx: NodeContext) -> str:
    return "cancelled"


# `flowcraft run cli_flows:ok --context '{"name": "ada"}'` -> greet, then shout.
ok = Flow("cli-ok").node("greet", greet).node("shout", shout).edge("greet", "shout")

# A run that fails in `explode`; `never` is poisoned.
failing = (
    Flow("cli-failing")
    .node("greet", greet)
    .node("explode", explode)
    .node("never", never)
    .edge("greet", "explode")
    .edge("explode", "never")
)


def build_hitl() -> Flow:
    """draft -> approval (wait) -> ship on "approve" / cancel on "reject"."""
    return (
        Flow("cli-hitl")
        .node("draft", draft)
        .wait("approval")
        .node("ship", ship)
        .node("cancel", cancel)
        .edge("draft", "approval")
        .edge("approval", "ship", action="approve")
        .edge("approval", "cancel", action="reject")
    )


hitl = build_hitl()

not_a_flow = 42
