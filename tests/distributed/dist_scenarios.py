"""Flows shared by the distributed tests, in-process and subprocess workers alike.

Imported as the top-level module ``dist_scenarios`` (pytest puts this directory on
``sys.path``; subprocess workers get it on ``PYTHONPATH``), so every `uses` key is the same in
every process. Node functions are module-level and deterministic; "slow" and "late" nodes make
the in-memory and the distributed schedules agree on which nodes have finished when a run fails.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path
from typing import Any

from flowcraft import FatalError, Flow, Node, NodeContext, NodeResult

# -- node functions --------------------------------------------------------------------------


async def start(ctx: NodeContext) -> dict[str, Any]:
    await ctx.context.set("started", True)
    return {"x": int(await ctx.context.get("x", 1)), "tag": "s"}


async def left(ctx: NodeContext) -> str:
    await ctx.context.set("left_seen", ctx.input)
    return "L"


async def right(ctx: NodeContext) -> str:
    return "R"


async def slow_right(ctx: NodeContext) -> str:
    await asyncio.sleep(0.3)
    return "R-slow"


async def slow3(ctx: NodeContext) -> str:
    await asyncio.sleep(3)
    return "slow3"


async def merge(ctx: NodeContext) -> Any:
    await ctx.context.set("merge_input", ctx.input)
    return {"merged": sorted(ctx.input) if isinstance(ctx.input, dict) else ctx.input}


async def finish(ctx: NodeContext) -> str:
    return f"done:{ctx.input}"


async def late_boom(ctx: NodeContext) -> str:
    await asyncio.sleep(0.4)
    raise RuntimeError("boom in late_boom")


async def early_boom(ctx: NodeContext) -> str:
    """Fails after its sibling started (both modes) but before the sibling finishes."""
    await asyncio.sleep(0.1)
    raise ValueError("bad value in early_boom")


async def boom(ctx: NodeContext) -> str:
    raise ValueError("bad value in boom")


async def never(ctx: NodeContext) -> str:
    await ctx.context.set("never_ran", True)
    return "never"


async def flaky(ctx: NodeContext) -> str:
    """Fails on attempts 1 and 2 of each execution, succeeds on the 3rd."""
    if ctx.attempt < 3:
        raise ConnectionError(f"flaky attempt {ctx.attempt}")
    return f"ok after {ctx.attempt}"


async def always_fails(ctx: NodeContext) -> str:
    raise RuntimeError("always fails")


async def rescue(ctx: NodeContext) -> str:
    return f"rescued {ctx.node_id} with {ctx.input!r}"


async def fatal(ctx: NodeContext) -> str:
    raise FatalError("stop right now")


async def sleepy(ctx: NodeContext) -> str:
    await asyncio.sleep(5)
    return "woke"


async def decide(ctx: NodeContext) -> NodeResult:
    amount = int(await ctx.context.get("amount", 0))
    return NodeResult({"amount": amount}, "approve" if amount < 100 else "reject")


async def approve(ctx: NodeContext) -> str:
    return f"approved {ctx.input['amount']}"


async def reject(ctx: NodeContext) -> str:
    return f"rejected {ctx.input['amount']}"


async def audit(ctx: NodeContext) -> str:
    return "audited"


async def number(ctx: NodeContext) -> int:
    await ctx.context.set("base", 100)
    return 21


async def echo(ctx: NodeContext) -> Any:
    return ctx.input


async def counter_init(ctx: NodeContext) -> int:
    await ctx.context.set("n", 0)
    return 0


async def counter_step(ctx: NodeContext) -> int:
    n = int(await ctx.context.get("n")) + 1
    await ctx.context.set("n", n)
    await ctx.context.set(f"seen_{n}", ctx.iteration >= 0)
    return n


async def writer(ctx: NodeContext) -> str:
    await ctx.context.set("scratch", {"a": [1, 2, 3]})
    await ctx.context.set("temp", "x")
    await ctx.context.delete("temp")
    return "wrote"


async def reader(ctx: NodeContext) -> Any:
    return {"scratch": await ctx.context.get("scratch"), "temp": await ctx.context.has("temp"),
            "input": ctx.input}


class Pricing(Node):
    async def prep(self, ctx: NodeContext) -> Any:
        return await ctx.context.get("amount", 5)

    async def exec(self, prepared: Any, ctx: NodeContext) -> Any:
        return prepared * 2

    async def post(self, result: Any, ctx: NodeContext) -> Any:
        await ctx.context.set("priced", result)
        return NodeResult(result, "priced")


# -- flows -----------------------------------------------------------------------------------


def diamond() -> Flow:
    return (Flow("diamond").node("A", start).node("B", left).node("C", right).node("D", merge)
            .node("E", finish)
            .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D").edge("D", "E"))


def if_else() -> Flow:
    return (Flow("if_else").node("A", start).node("B", left).node("C", right).node("D", merge)
            .edge("A", "B", condition="A.x > 0").edge("A", "C", condition="A.x <= 0")
            .edge("B", "D").edge("C", "D"))


def any_join() -> Flow:
    return (Flow("any_join").node("A", start).node("B", left).node("C", slow_right)
            .node("D", merge, join="any").node("E", finish)
            .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D").edge("D", "E"))


def poison() -> Flow:
    """B fails (late, after C finished); the `all` join D is poisoned and never runs."""
    return (Flow("poison").node("A", start).node("B", late_boom).node("C", right)
            .node("D", never).node("E", finish)
            .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D").edge("D", "E"))


def cancel_pill() -> Flow:
    """B fails first; C succeeds later; the `any` join D is cancelled and never runs."""
    return (Flow("cancel_pill").node("A", start).node("B", early_boom).node("C", slow_right)
            .node("D", never, join="any")
            .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D"))


def retries() -> Flow:
    return (Flow("retries").node("A", flaky, max_retries=3, retry_delay=10).node("B", echo)
            .edge("A", "B"))


def retries_exhausted() -> Flow:
    return (Flow("retries_exhausted").node("A", flaky, max_retries=2).node("B", never)
            .edge("A", "B"))


def fallback() -> Flow:
    return (Flow("fallback").node("A", start).node("B", always_fails, fallback="F")
            .node("F", rescue).node("C", echo)
            .edge("A", "B").edge("B", "C"))


def fatal_flow() -> Flow:
    return (Flow("fatal").node("A", fatal, max_retries=5, fallback="F").node("F", rescue)
            .node("B", never).edge("A", "B"))


def timeout_flow() -> Flow:
    return Flow("timeout").node("A", sleepy, timeout=50).node("B", never).edge("A", "B")


def transforms() -> Flow:
    return (Flow("transforms").node("A", number).node("B", echo).node("C", echo)
            .node("D", echo)
            .edge("A", "B", transform="input * 2")
            .edge("A", "C", transform="context.base + input")
            .edge("A", "D", transform="input + 1"))


def actions() -> Flow:
    return (Flow("actions").node("A", decide).node("B", approve).node("C", reject)
            .node("D", audit)
            .edge("A", "B", action="approve").edge("A", "C", action="reject")
            .edge("A", "D"))


def unmatched_action() -> Flow:
    """The action matches no edge: only the action-less edge is taken."""
    return (Flow("unmatched").node("P", Pricing).node("B", approve).node("D", audit)
            .edge("P", "B", action="approve").edge("P", "D"))


def inputs_flow() -> Flow:
    return (Flow("inputs").node("A", start).node("B", echo, inputs="A.x")
            .node("C", echo, inputs={"x": "A.x", "tag": "A.tag", "raw": "x"})
            .edge("A", "B").edge("B", "C"))


def context_flow() -> Flow:
    return (Flow("context").node("W", writer).node("R", reader)
            .node("S", echo).edge("W", "R").edge("R", "S", condition="scratch.a[1] == 2"))


def skip_cascade() -> Flow:
    """A condition skips B; the skip cascades through C into the join D, which still runs."""
    return (Flow("skip_cascade").node("A", start).node("B", left).node("C", right)
            .node("X", right).node("D", merge)
            .edge("A", "B", condition="A.x > 100").edge("B", "C").edge("C", "D")
            .edge("A", "X").edge("X", "D"))


def loop_flow() -> Flow:
    return (Flow("loop").node("init", counter_init).node("a", counter_step).node("b", echo)
            .node("after", echo)
            .edge("init", "a").edge("a", "b")
            .loop("lp", start="a", end="b", condition="n < 3")
            .edge("lp", "after"))


def loop_limit() -> Flow:
    return (Flow("loop_limit").node("init", counter_init).node("a", counter_step)
            .edge("init", "a")
            .loop("lp", start="a", end="a", condition="n < 100", max_iterations=4))


def wait_flow() -> Flow:
    return (Flow("wait_flow").node("A", start).wait("approval").node("B", echo)
            .edge("A", "approval").edge("approval", "B"))


def sleep_flow() -> Flow:
    return (Flow("sleep_flow").node("A", start).sleep("nap", duration="300ms").node("B", echo)
            .edge("A", "nap").edge("nap", "B"))


def two_waits() -> Flow:
    return (Flow("two_waits").node("A", start).wait("w1").wait("w2").node("B", echo)
            .node("C", echo).node("J", merge)
            .edge("A", "w1").edge("A", "w2").edge("w1", "B").edge("w2", "C")
            .edge("B", "J").edge("C", "J"))


def wait_actions() -> Flow:
    return (Flow("wait_actions").node("A", start).wait("review").node("ok", echo)
            .node("no", echo)
            .edge("A", "review").edge("review", "ok", action="approve")
            .edge("review", "no", action="reject"))


async def double(ctx: NodeContext) -> int:
    value = int(await ctx.context.get("x")) * 2
    await ctx.context.set("doubled", value)
    return value


async def note(ctx: NodeContext) -> str:
    return f"doubled to {ctx.input}"


def child_flow() -> Flow:
    return Flow("child").node("double", double).node("note", note).edge("double", "note")


def failing_child() -> Flow:
    return Flow("failing_child").node("double", double).node("bad", boom).edge("double", "bad")


def waiting_child() -> Flow:
    return (Flow("waiting_child").node("double", double).wait("ask").node("note", note)
            .edge("double", "ask").edge("ask", "note"))


async def prep(ctx: NodeContext) -> int:
    await ctx.context.set("value", 21)
    return 21


async def after(ctx: NodeContext) -> Any:
    return {"got": ctx.input, "result": await ctx.context.get("result")}


def parent_flow(child: str = "child", name: str = "parent") -> Flow:
    return (Flow(name).node("prep", prep)
            .subflow("sub", blueprint_id=child, inputs={"x": "value"},
                     outputs={"result": "doubled"})
            .node("after", after).edge("prep", "sub").edge("sub", "after"))


SUBFLOW_CHILDREN = [child_flow(), failing_child(), waiting_child()]
SUBFLOW_PARENTS = [parent_flow(), parent_flow("failing_child", "parent_fails"),
                   parent_flow("waiting_child", "parent_waits")]

HITL_FLOWS = [wait_flow(), two_waits(), wait_actions()]

async def make_lines(ctx: NodeContext) -> int:
    count = int(await ctx.context.get("count", 5))
    await ctx.context.set("lines", list(range(1, count + 1)))
    await ctx.context.set("empty", [])
    await ctx.context.set("scalar", 7)
    return count


async def price(ctx: NodeContext) -> dict[str, Any]:
    if ctx.input == 13:
        raise ValueError(f"cannot price item {ctx.params['index']}")
    return {"item": ctx.input, "index": ctx.params["index"], "price": ctx.input * 10}


def batch_flow(input_key: str = "lines", name: str = "batch") -> Flow:
    return (Flow(name).node("A", make_lines)
            .batch("priced", price, input_key=input_key, output_key="prices")
            .node("B", echo).edge("A", "priced").edge("priced", "B"))


SCENARIOS: dict[str, Any] = {
    "diamond": (diamond, {"x": 3}),
    "if_else_true": (if_else, {"x": 5}),
    "if_else_false": (if_else, {"x": -5}),
    "any_join": (any_join, {}),
    "poison_pill": (poison, {}),
    "cancel_pill": (cancel_pill, {}),
    "retries": (retries, {}),
    "retries_exhausted": (retries_exhausted, {}),
    "fallback": (fallback, {}),
    "fatal": (fatal_flow, {}),
    "timeout": (timeout_flow, {}),
    "transforms": (transforms, {}),
    "action_approve": (actions, {"amount": 10}),
    "action_reject": (actions, {"amount": 1000}),
    "unmatched_action": (unmatched_action, {"amount": 3}),
    "inputs": (inputs_flow, {"x": 7}),
    "context_rw": (context_flow, {}),
    "skip_cascade": (skip_cascade, {}),
    "loop": (loop_flow, {}),
    "loop_limit": (loop_limit, {}),
    "sleep": (sleep_flow, {}),
    "batch": (batch_flow, {"count": 6}),
    "batch_item_fails": (lambda: batch_flow(name="batch_fail"), {"count": 15}),
    "batch_empty": (lambda: batch_flow("empty", "batch_empty"), {}),
    "batch_not_a_list": (lambda: batch_flow("scalar", "batch_scalar"), {}),
}

ALL_FLOWS = [factory() for factory, _ in SCENARIOS.values()] + HITL_FLOWS


# -- random DAGs -----------------------------------------------------------------------------


async def dag_node(ctx: NodeContext) -> int:
    """Output depends only on the node's input and params: identical in every mode."""
    value = ctx.input
    total = int(ctx.params.get("w", 1))
    if ctx.params.get("any"):
        pass  # an `any` join runs with whichever input came first: do not depend on it
    elif isinstance(value, dict):
        total += sum(int(v) for v in value.values())
    elif isinstance(value, int):
        total += value
    await ctx.context.set(f"w_{ctx.node_id}", total % 97)
    return total % 1009


def random_dag(seed: int, size: int = 20) -> Flow:
    """A random DAG with conditions, `any` joins and fan-in, built deterministically."""
    rng = random.Random(seed)
    flow = Flow(f"dag{seed}")
    for i in range(size):
        join_any = rng.random() < 0.2
        flow.node(f"n{i}", dag_node, params={"w": rng.randint(1, 50), "any": join_any},
                  join="any" if join_any else "all")
    for i in range(1, size):
        parents = rng.sample(range(i), k=min(i, rng.choice((1, 1, 2, 3))))
        for p in sorted(parents):
            condition = None
            if rng.random() < 0.25:
                condition = f"n{p} % 3 != {rng.randint(0, 2)}"
            flow.edge(f"n{p}", f"n{i}", condition=condition)
    return flow


DAG_FLOWS = {seed: random_dag(seed) for seed in range(3)}


# -- fault injection -------------------------------------------------------------------------


def _marker(name: str) -> Path | None:
    directory = os.environ.get("FLOWCRAFT_TEST_MARKERS")
    return Path(directory) / name if directory else None


async def crash_once(ctx: NodeContext) -> str:
    """SIGKILLs its own worker process the first time it runs (per marker directory)."""
    marker = _marker(f"crash-{ctx.run_id}-{ctx.node_id}")
    if marker is not None and not marker.exists():
        marker.write_text("crashed")
        await asyncio.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)
    return f"survived {ctx.node_id}"


async def count_runs(ctx: NodeContext) -> str:
    marker = _marker(f"runs-{ctx.run_id}-{ctx.node_id}")
    if marker is not None:
        with marker.open("a") as fh:
            fh.write("x\n")
    return f"counted {ctx.node_id}"


def crash_flow() -> Flow:
    return (Flow("crash").node("A", count_runs).node("B", crash_once).node("C", count_runs)
            .node("D", count_runs)
            .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D"))


def commit_crash_flow() -> Flow:
    return (Flow("commit_crash").node("A", count_runs).node("B", count_runs)
            .node("C", count_runs).node("D", count_runs)
            .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D"))


FAULT_FLOWS = [crash_flow(), commit_crash_flow()]
