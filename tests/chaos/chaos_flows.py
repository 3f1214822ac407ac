"""The blueprints the chaos soak runs, shared by the harness, the worker subprocesses and the
in-memory reference runs.

Imported as the top-level module ``chaos_flows`` everywhere (the harness puts this directory on
``sys.path``; worker subprocesses get it on ``PYTHONPATH``; pytest prepends it), so every
`uses` key (``chaos_flows:<function>``) is the same in every process.

Every node body:

1. appends ``(run, node, iteration, idempotency_key, "start", pid, attempt, wall time)`` to the
   harness's trace list through the ``trace`` dependency (an RPUSH to a Redis list the harness
   owns);
2. sleeps a little (random jitter, so SIGKILLs land mid-node);
3. computes an output that depends only on its input and the context (deterministic, so the
   final context can be compared with an in-memory run of the same blueprint and input);
4. appends the same tuple with phase ``"end"``.

The trace is at-least-once like the bodies themselves: after a SIGKILL the same instance
appears again. The harness never counts completions from it; it only asks "did an instance
whose body ran get its completion recorded by the engine?".
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowcraft import Flow, NodeContext, NodeResult

TRACE_KEY = "chaos:trace"
JITTER_S = float(os.environ.get("CHAOS_JITTER_S", "0.08"))


def retrying_redis(url: str, **kwargs: Any) -> Redis:
    """A redis-py client that reconnects and retries through a Redis restart (~30 s)."""
    return Redis.from_url(
        url, retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=60),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionError, OSError],
        socket_connect_timeout=2, health_check_interval=0, **kwargs)


class Trace:
    """The `trace` dependency of the worker processes: RPUSH one JSON array per body phase."""

    def __init__(self, url: str, key: str = TRACE_KEY) -> None:
        self.url = url
        self.key = key
        self._redis: Redis | None = None

    async def record(self, ctx: NodeContext, phase: str) -> None:
        """RPUSH the entry; never fails the node because of the harness's own Redis traffic
        (a connection reset in redis-py's handshake escapes its retries, so retry here too:
        an error here would fail the node and the run, and be counted against the engine)."""
        if self._redis is None:
            self._redis = retrying_redis(self.url)
        entry = msgspec.json.encode([ctx.run_id, ctx.node_id, ctx.iteration,
                                     ctx.idempotency_key, phase, os.getpid(), ctx.attempt,
                                     time.time()])
        for delay in [0.05 * 2**n for n in range(6)] + [1.0] * 60:
            try:
                await self._redis.rpush(self.key, entry)
                return
            except (RedisError, OSError):
                await asyncio.sleep(delay)
        await self._redis.rpush(self.key, entry)


class NullTrace:
    """The `trace` dependency of the in-memory reference runs."""

    async def record(self, ctx: NodeContext, phase: str) -> None:
        return None


async def _enter(ctx: NodeContext) -> None:
    await ctx.dependencies["trace"].record(ctx, "start")
    if JITTER_S > 0:
        await asyncio.sleep(random.random() * JITTER_S)


async def _leave(ctx: NodeContext) -> None:
    await ctx.dependencies["trace"].record(ctx, "end")


# -- node bodies (deterministic outputs) -------------------------------------------------------


async def start(ctx: NodeContext) -> dict[str, Any]:
    await _enter(ctx)
    x = int(await ctx.context.get("x", 0))
    await ctx.context.set("started", {"x": x})
    await _leave(ctx)
    return {"x": x}


async def left(ctx: NodeContext) -> str:
    await _enter(ctx)
    await ctx.context.set("left_seen", ctx.input)
    await _leave(ctx)
    return f"L{ctx.input['x']}"


async def right(ctx: NodeContext) -> str:
    await _enter(ctx)
    await _leave(ctx)
    return f"R{ctx.input['x']}"


async def merge(ctx: NodeContext) -> dict[str, Any]:
    """An `all` join: its input is {predecessor: output} of the taken edges."""
    await _enter(ctx)
    await ctx.context.set("merge_input", ctx.input)
    await _leave(ctx)
    return {"from": sorted(ctx.input), "values": [ctx.input[k] for k in sorted(ctx.input)]}


async def finish(ctx: NodeContext) -> str:
    await _enter(ctx)
    await _leave(ctx)
    return f"done:{msgspec.json.encode(ctx.input).decode()}"


async def spread(ctx: NodeContext) -> int:
    """Fan-out worker: its output depends on its position (a param) and the run's x."""
    await _enter(ctx)
    value = int(ctx.input["x"]) * int(ctx.params["i"]) + int(ctx.params["i"])
    await ctx.context.set(f"spread_{ctx.params['i']}", value)
    await _leave(ctx)
    return value


async def gather_all(ctx: NodeContext) -> dict[str, Any]:
    await _enter(ctx)
    await _leave(ctx)
    return {"n": len(ctx.input), "sum": sum(int(v) for v in ctx.input.values()),
            "keys": sorted(ctx.input)}


async def gather_any(ctx: NodeContext) -> str:
    """An `any` join: which predecessor arrives first differs between runs, so the output
    must not depend on it (only that exactly one arrived)."""
    await _enter(ctx)
    await ctx.context.set("any_fired", len(ctx.input))
    await _leave(ctx)
    return "any-fired"


async def loop_init(ctx: NodeContext) -> int:
    await _enter(ctx)
    await ctx.context.set("n", 0)
    await ctx.context.set("acc", [])
    await _leave(ctx)
    return 0


async def loop_step(ctx: NodeContext) -> int:
    await _enter(ctx)
    n = int(await ctx.context.get("n")) + 1
    acc = list(await ctx.context.get("acc"))
    acc.append(n * n)
    await ctx.context.set("n", n)
    await ctx.context.set("acc", acc)
    await _leave(ctx)
    return n


async def loop_body(ctx: NodeContext) -> int:
    await _enter(ctx)
    await ctx.context.set(f"body_{ctx.input}", ctx.input * 10)
    await _leave(ctx)
    return int(ctx.input) * 10


async def make_lines(ctx: NodeContext) -> int:
    await _enter(ctx)
    count = int(await ctx.context.get("count", 3))
    await ctx.context.set("lines", list(range(1, count + 1)))
    await _leave(ctx)
    return count


async def price(ctx: NodeContext) -> dict[str, Any]:
    await _enter(ctx)
    await _leave(ctx)
    return {"item": ctx.input, "index": ctx.params["index"], "price": ctx.input * 7}


async def total(ctx: NodeContext) -> int:
    await _enter(ctx)
    await _leave(ctx)
    return sum(int(p["price"]) for p in ctx.input)


async def decide(ctx: NodeContext) -> NodeResult:
    await _enter(ctx)
    x = int(await ctx.context.get("x", 0))
    await _leave(ctx)
    return NodeResult({"x": x}, "big" if x >= 10 else "small")


async def approved(ctx: NodeContext) -> dict[str, Any]:
    await _enter(ctx)
    await _leave(ctx)
    return {"approved": ctx.input}


async def rejected(ctx: NodeContext) -> dict[str, Any]:
    await _enter(ctx)
    await _leave(ctx)
    return {"rejected": ctx.input}


async def nest_init(ctx: NodeContext) -> int:
    await _enter(ctx)
    await ctx.context.set("i", 0)
    await ctx.context.set("trail", [])
    await _leave(ctx)
    return 0


async def outer_step(ctx: NodeContext) -> int:
    """The outer loop's entry: next i, and the inner loop starts over."""
    await _enter(ctx)
    i = int(await ctx.context.get("i")) + 1
    await ctx.context.set("i", i)
    await ctx.context.set("j", 0)
    await _leave(ctx)
    return i


async def inner_step(ctx: NodeContext) -> int:
    """The inner loop (one node): records (i, j) in order, so a lost or repeated step shows."""
    await _enter(ctx)
    i = int(await ctx.context.get("i"))
    j = int(await ctx.context.get("j")) + 1
    trail = list(await ctx.context.get("trail"))
    trail.append(i * 10 + j)
    await ctx.context.set("j", j)
    await ctx.context.set("trail", trail)
    await _leave(ctx)
    return j


async def outer_close(ctx: NodeContext) -> dict[str, Any]:
    await _enter(ctx)
    i = int(await ctx.context.get("i"))
    await ctx.context.set(f"closed_{i}", ctx.input)
    await _leave(ctx)
    return {"i": i, "j": ctx.input}


# -- flows -----------------------------------------------------------------------------------

FAN_WIDTH = 8


def diamond() -> Flow:
    return (Flow("chaos_diamond").node("A", start).node("B", left).node("C", right)
            .node("D", merge).node("E", finish)
            .edge("A", "B").edge("A", "C").edge("B", "D").edge("C", "D").edge("D", "E"))


def fan() -> Flow:
    """S -> w0..w7 -> Jall (`all`) and -> Jany (`any`) -> End (`all`). Odd workers only run
    for even x, so some edges into both joins are skipped (dead-path elimination)."""
    flow = Flow("chaos_fan").node("S", start)
    for i in range(FAN_WIDTH):
        flow.node(f"w{i}", spread, params={"i": i})
        flow.edge("S", f"w{i}", condition="S.x % 2 == 0" if i % 2 else None)
    flow.node("Jall", gather_all).node("Jany", gather_any, join="any").node("End", merge)
    for i in range(FAN_WIDTH):
        flow.edge(f"w{i}", "Jall").edge(f"w{i}", "Jany")
    return flow.edge("Jall", "End").edge("Jany", "End")


def if_else() -> Flow:
    """An if/else that merges into an `all` join: the join runs once, with the taken branch."""
    return (Flow("chaos_if_else").node("A", start).node("B", left).node("C", right)
            .node("D", merge).node("E", finish)
            .edge("A", "B", condition="A.x > 5").edge("A", "C", condition="A.x <= 5")
            .edge("B", "D").edge("C", "D").edge("D", "E"))


def loop() -> Flow:
    return (Flow("chaos_loop").node("init", loop_init).node("step", loop_step)
            .node("body", loop_body).node("after", finish)
            .edge("init", "step").edge("step", "body")
            .loop("lp", start="step", end="body", condition="n < limit", max_iterations=50)
            .edge("lp", "after"))


def batch() -> Flow:
    return (Flow("chaos_batch").node("A", make_lines)
            .batch("priced", price, input_key="lines", output_key="prices")
            .node("T", total).edge("A", "priced").edge("priced", "T"))


def sleep() -> Flow:
    return (Flow("chaos_sleep").node("A", start).sleep("nap", duration="1s").node("B", finish)
            .edge("A", "nap").edge("nap", "B"))


def wait() -> Flow:
    """A wait resumed by the harness's driver, routing on the action it resumes with."""
    return (Flow("chaos_wait").node("A", decide).wait("approval").node("ok", approved)
            .node("no", rejected).node("E", finish)
            .edge("A", "approval").edge("approval", "ok", action="approve")
            .edge("approval", "no", action="reject").edge("ok", "E").edge("no", "E"))


# -- the shapes of issue 9 (big fan-outs and batches, concurrency, nested loops, subflows whose
# child waits, long sleeps under the periodic reconcile, a second key prefix) ------------------

BIG = int(os.environ.get("CHAOS_BIG", "200"))
"""Width of `fan_big` and size of `batch_big` (the harness sets it, in its own process with
`configure` and in the workers' environment, so both build the same blueprint)."""
BATCH_CONCURRENCY = 3
LONG_SLEEP_S = 6.0
"""Longer than the `stalled_after` of every reconcile the soak runs (client and workers)."""


def fan_big() -> Flow:
    """S -> w0..w{BIG-1} -> J (`all`) -> End: one node with BIG successors into one join."""
    flow = Flow("chaos_fan_big").node("S", start)
    for i in range(BIG):
        flow.node(f"w{i}", spread, params={"i": i}).edge("S", f"w{i}").edge(f"w{i}", "J")
    return flow.node("J", gather_all).node("End", finish).edge("J", "End")


def batch_big() -> Flow:
    """A batch of BIG items (the input's `count`)."""
    return (Flow("chaos_batch_big").node("A", make_lines)
            .batch("priced", price, input_key="lines", output_key="prices")
            .node("T", total).edge("A", "priced").edge("priced", "T"))


def batch_concurrency() -> Flow:
    return (Flow("chaos_batch_conc").node("A", make_lines)
            .batch("priced", price, input_key="lines", output_key="prices",
                   concurrency=BATCH_CONCURRENCY)
            .node("T", total).edge("A", "priced").edge("priced", "T"))


def nested_loop() -> Flow:
    """for i in 1..il: for j in 1..jl: trail += [10 i + j] (loop `inner` inside loop `outer`)."""
    return (Flow("chaos_nested_loop").node("init", nest_init).node("outer_step", outer_step)
            .node("inner_step", inner_step).node("close", outer_close).node("after", finish)
            .edge("init", "outer_step").edge("outer_step", "inner_step")
            .loop("inner", start="inner_step", end="inner_step", condition="j < jl",
                  max_iterations=20)
            .edge("inner", "close")
            .loop("outer", start="outer_step", end="close", condition="i < il",
                  max_iterations=20)
            .edge("outer", "after"))


def subflow_child() -> Flow:
    """The child of `subflow_wait`: it waits for the driver in the middle."""
    return (Flow("chaos_child").node("A", start).wait("ask").node("B", finish)
            .edge("A", "ask").edge("ask", "B"))


def subflow_wait() -> Flow:
    """A parent whose subflow's child waits: the parent awaits on `sub` until the driver
    resumes it there, which resumes the child."""
    return (Flow("chaos_subflow_wait").node("P", start)
            .subflow("sub", blueprint_id="chaos_child", inputs={"x": "x"},
                     outputs={"child_started": "started"})
            .node("E", finish).edge("P", "sub").edge("sub", "E"))


def sleep_reconcile() -> Flow:
    """A sleep longer than the reconcile passes' `stalled_after`: B must not run early."""
    return (Flow("chaos_sleep_long").node("A", start)
            .sleep("nap", duration=f"{int(LONG_SLEEP_S * 1000)}ms").node("B", finish)
            .edge("A", "nap").edge("nap", "B"))


FACTORIES = {"diamond": diamond, "fan": fan, "if_else": if_else, "loop": loop,
             "batch": batch, "sleep": sleep, "wait": wait,
             "fan_big": fan_big, "batch_big": batch_big, "batch_conc": batch_concurrency,
             "nested_loop": nested_loop, "subflow_wait": subflow_wait,
             "sleep_reconcile": sleep_reconcile, "subflow_child": subflow_child}
FLOWS: dict[str, Flow] = {}
"""Every blueprint the workers serve, by name (`subflow_child` is only run as a child)."""

KINDS = ("diamond", "fan", "if_else", "loop", "batch", "sleep", "wait")
"""The original small shapes (other chaos tests run each of them)."""
SHAPES = ("fan_big", "batch_big", "batch_conc", "nested_loop", "subflow_wait",
          "sleep_reconcile", "prefix2")
"""The shapes of issue 9; `prefix2` runs the `fan` blueprint on a second app (key prefix)."""
ALL_KINDS = KINDS + SHAPES
BIG_KINDS = frozenset({"fan_big", "batch_big"})
OTHER_APP = {"prefix2": "fan"}
"""Kinds run by the second app, and the blueprint they run."""
SLEEPS = {"sleep": 1.0, "sleep_reconcile": LONG_SLEEP_S}
"""Kinds whose B must start at least this long after A ended (A -> nap -> B)."""
CONCURRENCY = {"batch_conc": ("priced", BATCH_CONCURRENCY)}
"""Kinds with a batch whose items may not run more than this many at once."""
CHILDREN = {"subflow_wait": ["sub#0"]}
"""Child runs each run of a kind makes: `{run}/{suffix}`."""


def configure(big: int) -> None:
    """(Re)build the blueprints with fan-outs and batches of `big`."""
    global BIG
    BIG = big
    FLOWS.clear()
    FLOWS.update({name: factory() for name, factory in FACTORIES.items()})


configure(BIG)


def flow_of(kind: str) -> Flow:
    return FLOWS[OTHER_APP.get(kind, kind)]


def make_input(kind: str, rng: random.Random) -> dict[str, Any]:
    """A random input for a run of `kind`; small ranges so reference runs can be cached."""
    x = rng.randint(-3, 14)
    if kind == "loop":
        return {"limit": rng.randint(1, 4)}
    if kind == "batch":
        return {"count": rng.randint(1, 8)}
    if kind == "batch_big":
        return {"count": BIG}
    if kind == "batch_conc":
        return {"count": rng.randint(1, 24)}
    if kind == "nested_loop":
        return {"il": rng.randint(1, 3), "jl": rng.randint(1, 3)}
    return {"x": x}


def resume_args(context: dict[str, Any]) -> dict[str, Any]:
    """How the driver resumes the `wait` flow's approval node for a run's input."""
    x = int(context.get("x", 0))
    return {"node_id": "approval", "output": {"by": "driver", "x": x},
            "action": "approve" if x % 2 == 0 else "reject"}


def resume_steps(kind: str, context: dict[str, Any]) -> list[dict[str, Any]]:
    """The resumes the driver applies, in order, each time a run of `kind` awaits."""
    if kind == "wait":
        return [resume_args(context)]
    if kind == "subflow_wait":
        # the parent awaits on its subflow node; resuming it there resumes the child's wait
        return [{"node_id": "sub", "output": {"by": "driver", "x": int(context["x"])}}]
    return []


def join_nodes(flow: Flow) -> set[str]:
    """Nodes with two or more incoming forward edges (joins), from the blueprint."""
    blueprint = flow.to_blueprint()
    controllers = {n.id for n in blueprint.nodes if n.uses == "loop-controller"}
    counts: dict[str, int] = {}
    for edge in blueprint.edges:
        if edge.source not in controllers:  # a loop's back edge does not make a join
            counts[edge.target] = counts.get(edge.target, 0) + 1
    return {node for node, n in counts.items() if n >= 2}
