"""The node functions of the interchange cases, flowcraft side.

tests/interop/functions.mjs implements each one identically for the TypeScript runtime; keep the
two files in step. Every blueprint names them by these plain keys (`uses="add"`), so one
registry serves the TS builder's blueprints (through their `functions` table) and ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from flowcraft import NodeContext, NodeResult


def _num(value: Any) -> Any:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


async def seed(ctx: NodeContext) -> Any:
    """The context value "x" (0 when absent)."""
    return _num(await ctx.context.get("x"))


async def add(ctx: NodeContext) -> Any:
    """input + params.by (default 1); a non-number input counts as 0."""
    return _num(ctx.input) + ctx.params.get("by", 1)


async def echo(ctx: NodeContext) -> Any:
    return ctx.input


async def double(ctx: NodeContext) -> Any:
    return _num(ctx.input) * 2


async def total(ctx: NodeContext) -> Any:
    return sum(ctx.input or [])


async def count(ctx: NodeContext) -> int:
    """Increments the context counter named params.key (default "count") and returns it."""
    key = ctx.params.get("key", "count")
    n = int(_num(await ctx.context.get(key))) + 1
    await ctx.context.set(key, n)
    return n


async def sumkeys(ctx: NodeContext) -> Any:
    """The sum of the context values named in params.keys."""
    result: Any = 0
    for key in ctx.params["keys"]:
        result += _num(await ctx.context.get(key))
    return result


async def pick(ctx: NodeContext) -> NodeResult:
    """Passes the input on and routes by the context value "choice"."""
    return NodeResult(output=ctx.input, action=await ctx.context.get("choice"))


async def slow(ctx: NodeContext) -> str:
    """Sleeps params.ms milliseconds, then returns "slow done"."""
    await asyncio.sleep(ctx.params["ms"] / 1000)
    return "slow done"


async def boom(ctx: NodeContext) -> Any:
    raise RuntimeError("boom")


async def rescue(ctx: NodeContext) -> str:
    return "rescued"


def registry() -> dict[str, Callable[..., Any]]:
    """A fresh registry: `flaky` keeps its call counts per registry, as the TS side per run."""
    calls: dict[str, int] = {}

    async def flaky(ctx: NodeContext) -> str:
        name = ctx.params["name"]
        calls[name] = calls.get(name, 0) + 1
        if calls[name] <= ctx.params["failures"]:
            raise RuntimeError(f"flaky failure {calls[name]}")
        return f"ok after {calls[name]}"

    return {"seed": seed, "add": add, "echo": echo, "double": double, "total": total,
            "count": count, "sumkeys": sumkeys, "pick": pick, "flaky": flaky, "slow": slow,
            "boom": boom, "rescue": rescue}
