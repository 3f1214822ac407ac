"""The flows of the parity test: every construct, the doc flows, and how runs are observed.

Imported as the top-level module ``parity_flows`` (pytest puts this directory on ``sys.path``),
so the in-memory runtime and the in-process arq workers call the very same function objects and
share the module-level counters below. Every flow is run through its blueprint plus a
*counting registry* (each node function wrapped by `counted`), which is how the test observes
how often each node function ran in each mode without touching the functions themselves.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from parity_doc_flows import (
    adder,
    broken,
    expense,
    greeter,
    normalise_email,
    order_processing,
    pager,
    pricing,
    readme_order,
    reminder,
    runaway,
    scoring,
    signup_flow,
)

from flowcraft import Flow, NodeContext, NodeResult, WorkflowBlueprint
from flowcraft.expressions import compile_expression

# -- observation: executions per node and batch items in flight ------------------------------

COUNTS: Counter[str] = Counter()
"""`"<blueprint id>/<node id>"` -> calls of that node's function (every attempt counts)."""

IN_FLIGHT: Counter[str] = Counter()
PEAK: Counter[str] = Counter()
"""Batch items running right now / at most, per blueprint id (each flow has one batch)."""


def reset_observations() -> None:
    COUNTS.clear()
    IN_FLIGHT.clear()
    PEAK.clear()


def _count(ctx: NodeContext) -> None:
    COUNTS[f"{ctx.blueprint_id}/{ctx.node_id}"] += 1


def counted(impl: Callable[..., Any]) -> Callable[..., Any]:
    """`impl` that also counts its calls; a plain `def` stays plain (it runs in a thread)."""
    if not inspect.isfunction(impl):
        raise TypeError(f"parity flows use function nodes only, got {impl!r}")
    if inspect.iscoroutinefunction(impl):

        @functools.wraps(impl)
        async def run_async(ctx: NodeContext) -> Any:
            _count(ctx)
            return await impl(ctx)

        return run_async

    @functools.wraps(impl)
    def run_sync(ctx: NodeContext) -> Any:
        _count(ctx)
        return impl(ctx)

    return run_sync


def counting_registry(flows: list[Flow]) -> dict[str, Callable[..., Any]]:
    """Every `uses` key of `flows`, mapped to its counted implementation."""
    registry: dict[str, Callable[..., Any]] = {}
    for flow in flows:
        for key, impl in flow.registry.items():
            registry[key] = counted(impl)
    return registry


# -- constructs the doc programs do not cover ------------------------------------------------


async def split(ctx: NodeContext) -> dict[str, Any]:
    await ctx.context.set("started", True)
    return {"x": int(await ctx.context.get("x", 1))}


async def branch(ctx: NodeContext) -> Any:
    await ctx.context.set(f"seen_{ctx.node_id}", ctx.input)
    return {"from": ctx.node_id, "value": ctx.input}


async def slow_branch(ctx: NodeContext) -> Any:
    await asyncio.sleep(0.6)
    return {"from": ctx.node_id, "value": ctx.input}


async def merge(ctx: NodeContext) -> Any:
    await ctx.context.set(f"{ctx.node_id}_input", ctx.input)
    return {"inputs": sorted(ctx.input) if isinstance(ctx.input, dict) else ctx.input}


def fan_out() -> Flow:
    """One node fans out to three branches (with transforms) that fan in to an `all` join."""
    return (Flow("fan_out").node("S", split).node("B1", branch).node("B2", branch)
            .node("B3", branch).node("J", merge).node("E", branch)
            .edge("S", "B1", transform="input.x * 2").edge("S", "B2", transform="input.x + 1")
            .edge("S", "B3", transform="context.started")
            .edge("B1", "J").edge("B2", "J").edge("B3", "J").edge("J", "E"))


def any_join() -> Flow:
    """B is fast, C slow: the `any` join runs once, with B's output; C still finishes."""
    return (Flow("any_join").node("S", split).node("B", branch).node("C", slow_branch)
            .node("J", merge, join="any").node("E", branch)
            .edge("S", "B").edge("S", "C").edge("B", "J").edge("C", "J").edge("J", "E"))


def if_else() -> Flow:
    """An if/else whose two branches merge into an `all` join: the join runs once."""
    return (Flow("if_else").node("S", split).node("yes", branch).node("no", branch)
            .node("J", merge)
            .edge("S", "yes", condition="S.x > 0").edge("S", "no", condition="S.x <= 0")
            .edge("yes", "J").edge("no", "J"))


async def decide(ctx: NodeContext) -> NodeResult:
    return NodeResult({"amount": await ctx.context.get("amount")},
                      str(await ctx.context.get("verdict")))


def triage() -> Flow:
    """Routing by action; an unmatched action takes only the action-less edge."""
    return (Flow("triage").node("decide", decide).node("approve", branch)
            .node("deny", branch).node("audit", branch)
            .edge("decide", "approve", action="approve").edge("decide", "deny", action="deny")
            .edge("decide", "audit"))


async def flaky(ctx: NodeContext) -> str:
    if ctx.attempt < 3:
        raise ConnectionError(f"flaky attempt {ctx.attempt}")
    return f"ok after {ctx.attempt}"


async def always_fails(ctx: NodeContext) -> str:
    raise RuntimeError(f"{ctx.node_id} always fails")


async def rescue(ctx: NodeContext) -> str:
    return f"rescued with {ctx.input!r}"


async def sleepy(ctx: NodeContext) -> str:
    await asyncio.sleep(2)
    return "woke"


async def late_boom(ctx: NodeContext) -> str:
    """Fails once its slow sibling is surely running (in both modes)."""
    await asyncio.sleep(0.3)
    raise ValueError(f"bad value in {ctx.node_id}")


def retries() -> Flow:
    return (Flow("retries").node("A", flaky, max_retries=3, retry_delay=10).node("B", branch)
            .edge("A", "B"))


def fallback() -> Flow:
    return (Flow("fallback").node("S", split).node("B", always_fails, max_retries=2,
                                                     fallback="F")
            .node("F", rescue).node("C", branch).edge("S", "B").edge("B", "C"))


def timeout() -> Flow:
    return (Flow("timeout").node("A", sleepy, timeout=50, max_retries=2).node("B", branch)
            .edge("A", "B"))


def fail_fast() -> Flow:
    """B fails while C runs: C finishes, D never starts, the `all` join J is poisoned."""
    return (Flow("fail_fast").node("S", split).node("B", late_boom).node("C", slow_branch)
            .node("D", branch).node("J", merge)
            .edge("S", "B").edge("S", "C").edge("C", "D").edge("B", "J").edge("D", "J"))


async def double(ctx: NodeContext) -> int:
    value = int(await ctx.context.get("x")) * 2
    await ctx.context.set("doubled", value)
    return value


async def bad_child(ctx: NodeContext) -> None:
    raise ValueError(f"child cannot take x={await ctx.context.get('x')}")


def doubler() -> Flow:
    return Flow("doubler").node("double", double)


def failing_child() -> Flow:
    return Flow("failing_child").node("double", double).node("bad", bad_child).edge(
        "double", "bad")


def parent_fails() -> Flow:
    return (Flow("parent_fails").node("S", split)
            .subflow("sub", blueprint_id="failing_child", inputs={"x": "x"})
            .node("after", branch).edge("S", "sub").edge("sub", "after"))


async def bump(ctx: NodeContext) -> int:
    n = int(await ctx.context.get("n", 0)) + 1
    await ctx.context.set("n", n)
    await ctx.context.set("x", n * 10)
    history = list(await ctx.context.get("history", []))
    await ctx.context.set("history", [*history, await ctx.context.get("last_doubled")])
    return n


async def summary(ctx: NodeContext) -> Any:
    return {"history": await ctx.context.get("history"),
            "last": await ctx.context.get("last_doubled"), "input": ctx.input}


def subflow_loop() -> Flow:
    """A subflow as the end of a loop body: a fresh child run per iteration."""
    return (Flow("subflow_loop").node("bump", bump)
            .subflow("sub", blueprint_id="doubler", inputs={"x": "x"},
                     outputs={"last_doubled": "doubled"})
            .node("summary", summary).edge("bump", "sub")
            .loop("lp", start="bump", end="sub", condition="n < 3").edge("lp", "summary"))


async def outer_step(ctx: NodeContext) -> int:
    outer = int(await ctx.context.get("outer", 0)) + 1
    await ctx.context.set("outer", outer)
    await ctx.context.set("inner", 0)
    return outer


async def inner_step(ctx: NodeContext) -> str:
    inner = int(await ctx.context.get("inner")) + 1
    await ctx.context.set("inner", inner)
    outer = await ctx.context.get("outer")
    pairs = list(await ctx.context.get("pairs", []))
    await ctx.context.set("pairs", [*pairs, [outer, inner]])
    return f"{outer}.{inner}"


def nested_loops() -> Flow:
    """An inner loop of exactly 3 iterations (max_iterations=3) inside 3 outer passes."""
    return (Flow("nested_loops").node("o1", outer_step).node("i1", inner_step)
            .node("o2", branch).node("after", branch)
            .edge("o1", "i1")
            .loop("inner_loop", start="i1", end="i1", condition="inner < 3", max_iterations=3)
            .edge("inner_loop", "o2")
            .loop("outer_loop", start="o1", end="o2", condition="outer < 3")
            .edge("outer_loop", "after"))


def nested_loop_join() -> Flow:
    """Nested loops without a tight limit; the inner loop's exit feeds an `all` join in the
    outer body, next to a plain branch."""
    return (Flow("nested_loop_join").node("o1", outer_step).node("i1", inner_step)
            .node("side", branch).node("J", merge).node("after", branch)
            .edge("o1", "i1").edge("o1", "side")
            .loop("inner_loop", start="i1", end="i1", condition="inner < 3")
            .edge("inner_loop", "J").edge("side", "J")
            .loop("outer_loop", start="o1", end="J", condition="outer < 3")
            .edge("outer_loop", "after"))


async def tick(ctx: NodeContext) -> int:
    n = int(await ctx.context.get("n", 0)) + 1
    await ctx.context.set("n", n)
    return n


def loop_join() -> Flow:
    """A loop's exit and a plain branch feed one `all` join."""
    return (Flow("loop_join").node("S", split).node("body", tick).node("X", branch)
            .node("J", merge).node("E", branch)
            .edge("S", "body").edge("S", "X")
            .loop("lp", start="body", end="body", condition="n < 3")
            .edge("lp", "J").edge("X", "J").edge("J", "E"))


def loop_join_slow() -> Flow:
    """As `loop_join`, but the plain branch arrives at the join after the loop has ended."""
    return (Flow("loop_join_slow").node("S", split).node("body", tick).node("X", slow_branch)
            .node("J", merge).node("E", branch)
            .edge("S", "body").edge("S", "X")
            .loop("lp", start="body", end="body", condition="n < 3")
            .edge("lp", "J").edge("X", "J").edge("J", "E"))


def loop_body_join() -> Flow:
    """An `all` join inside a loop body runs once per iteration, with that iteration's inputs."""
    return (Flow("loop_body_join").node("head", tick).node("L", branch).node("R", branch)
            .node("J", merge).node("after", branch)
            .edge("head", "L").edge("head", "R").edge("L", "J").edge("R", "J")
            .loop("lp", start="head", end="J", condition="n < 3").edge("lp", "after"))


def two_waits() -> Flow:
    """Two pending waits; resuming one continues only its branch; both feed an `all` join."""
    return (Flow("two_waits").node("S", split).wait("w1").wait("w2").node("B", branch)
            .node("C", branch).node("J", merge)
            .edge("S", "w1").edge("S", "w2").edge("w1", "B").edge("w2", "C")
            .edge("B", "J").edge("C", "J"))


async def make_items(ctx: NodeContext) -> int:
    count = int(await ctx.context.get("count", 6))
    await ctx.context.set("items", list(range(1, count + 1)))
    return count


async def work_item(ctx: NodeContext) -> dict[str, Any]:
    """A batch item that stays in flight for a while, so concurrency is observable."""
    key = ctx.blueprint_id  # one batch per flow
    IN_FLIGHT[key] += 1
    PEAK[key] = max(PEAK[key], IN_FLIGHT[key])
    try:
        await asyncio.sleep(0.1)
        if ctx.input == 13:
            raise ValueError(f"cannot work item {ctx.params['index']}")
        return {"item": ctx.input, "index": ctx.params["index"], "value": ctx.input * 10}
    finally:
        IN_FLIGHT[key] -= 1


def batch(concurrency: int) -> Flow:
    return (Flow(f"batch_c{concurrency}").node("A", make_items)
            .batch("work", work_item, input_key="items", output_key="worked",
                   concurrency=concurrency)
            .node("B", branch).edge("A", "work").edge("work", "B"))


# -- a custom expression evaluator (CONTRACT §7) --------------------------------------------


class ScopeRecorder:
    """A user's evaluator: the built-in language, plus a record of the names in every scope it
    is given (for conditions, transforms and loop conditions alike)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, frozenset[str]]] = []

    def evaluate(self, expression: str, scope: Mapping[str, Any]) -> Any:
        self.seen.append((expression, frozenset(scope)))
        return compile_expression(expression).evaluate(scope)


async def note(ctx: NodeContext) -> str:
    await ctx.context.set("gamma", 3)
    return "noted"


def evaluated() -> Flow:
    """An edge condition and a loop condition, both answered by the custom evaluator."""
    return (Flow("evaluated").node("A", note).node("body", tick).node("after", branch)
            .edge("A", "body", condition="alpha > 0")
            .loop("lp", start="body", end="body", condition="n < 2").edge("lp", "after"))


# -- every flow of the module ----------------------------------------------------------------

ALL_FLOWS: list[Flow] = [
    readme_order(), pager(), runaway(), pricing(), normalise_email(), signup_flow(), reminder(),
    expense(), scoring(), adder(), greeter(), broken(), order_processing(),
    fan_out(), any_join(), if_else(), triage(), retries(), fallback(), timeout(), fail_fast(),
    doubler(), failing_child(), parent_fails(), subflow_loop(), nested_loops(), loop_join(),
    nested_loop_join(), loop_join_slow(), loop_body_join(), two_waits(),
    batch(1), batch(2), batch(3), evaluated(),
]
REGISTRY = counting_registry(ALL_FLOWS)
BLUEPRINTS: dict[str, WorkflowBlueprint] = {f.id: f.to_blueprint() for f in ALL_FLOWS}
