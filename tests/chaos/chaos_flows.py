"""The blueprints the chaos soak runs, shared by the harness, the worker subprocesses and the
in-memory reference runs.

Imported as the top-level module ``chaos_flows`` everywhere (the harness puts this directory on
``sys.path``; worker subprocesses get it on ``PYTHONPATH``; pytest prepends it), so every
`uses` key (``chaos_flows:<function>``) is the same in every process.

Every node body:

1. appends ``(run, node, iteration, idempotency_key, "start", pid, attempt)`` to the harness's
   trace list through the ``trace`` dependency (an RPUSH to a Redis list the harness owns);
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
                                     ctx.idempotency_key, phase, os.getpid(), ctx.attempt])
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


FACTORIES = {"diamond": diamond, "fan": fan, "if_else": if_else, "loop": loop,
             "batch": batch, "sleep": sleep, "wait": wait}
FLOWS: dict[str, Flow] = {kind: factory() for kind, factory in FACTORIES.items()}
KINDS = tuple(FLOWS)


def make_input(kind: str, rng: random.Random) -> dict[str, Any]:
    """A random input for a run of `kind`; small ranges so reference runs can be cached."""
    x = rng.randint(-3, 14)
    if kind == "loop":
        return {"limit": rng.randint(1, 4)}
    if kind == "batch":
        return {"count": rng.randint(1, 8)}
    return {"x": x}


def resume_args(context: dict[str, Any]) -> dict[str, Any]:
    """How the driver resumes the `wait` flow's approval node for a run's input."""
    x = int(context.get("x", 0))
    return {"node_id": "approval", "output": {"by": "driver", "x": x},
            "action": "approve" if x % 2 == 0 else "reject"}


def join_nodes(flow: Flow) -> set[str]:
    """Nodes with two or more incoming forward edges (joins), from the blueprint."""
    blueprint = flow.to_blueprint()
    controllers = {n.id for n in blueprint.nodes if n.uses == "loop-controller"}
    counts: dict[str, int] = {}
    for edge in blueprint.edges:
        if edge.source not in controllers:  # a loop's back edge does not make a join
            counts[edge.target] = counts.get(edge.target, 0) + 1
    return {node for node, n in counts.items() if n >= 2}
