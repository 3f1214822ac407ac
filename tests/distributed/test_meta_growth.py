"""Issue 9 item 10: the run meta hash does not grow with join bookkeeping in a long loop.

Before, every iteration left its joins' fields behind (`j:` resolved counts, `t:` taken
counts of `any` joins, `e:` edge values of `all` joins); now a join's fields are deleted once
all its required edges are resolved, so what stays per iteration is its instances (`i:`) and
the iteration's parent (`p:`). Real redis-server, real in-process arq worker."""

from __future__ import annotations

from collections import Counter
from typing import Any

from dist_scenarios import counter_init, counter_step, echo, left, merge, right
from redis.asyncio import Redis

from flowcraft import Flow, FlowRuntime

ITERATIONS = 30


def joins_in_a_loop() -> Flow:
    """Each pass: a -> (L, R) -> M (`all` join) and Y (`any` join) -> end (`all` join)."""
    return (Flow("joins_loop").node("init", counter_init).node("a", counter_step)
            .node("L", left).node("R", right).node("M", merge).node("Y", echo, join="any")
            .node("end", echo).node("after", echo)
            .edge("init", "a").edge("a", "L").edge("a", "R")
            .edge("L", "M").edge("R", "M").edge("L", "Y").edge("R", "Y")
            .edge("M", "end").edge("Y", "end")
            .loop("lp", start="a", end="end", condition=f"n < {ITERATIONS}")
            .edge("lp", "after"))


async def test_item10_meta_hash_does_not_grow_in_long_loop(
        arq_worker: Any, flowcraft_client: Any, redis_url: str) -> None:
    flow = joins_in_a_loop()
    expected = await FlowRuntime().run(flow)
    async with arq_worker([flow]), flowcraft_client([flow]) as client:
        run_id = await client.start("joins_loop")
        result = await client.wait(run_id, timeout=60)
        redis = Redis.from_url(redis_url)
        try:
            fields = [f.decode() for f in await redis.hkeys(  # type: ignore[misc]
                client.store.keys(run_id).meta)]
        finally:
            await redis.aclose()
    assert result.status == "completed" == expected.status
    assert result.context == expected.context
    assert result.context["n"] == ITERATIONS
    kinds = Counter(f.split(":", 1)[0] for f in fields if ":" in f)
    assert kinds["j"] == kinds["t"] == kinds["e"] == kinds["x"] == 0, kinds
    # 7 instances per pass (a, L, R, M, Y, end, lp) plus init and after
    assert kinds["i"] == 7 * ITERATIONS + 2
    # everything else: one parent per fresh iteration, one loop counter, fixed metadata
    assert len(fields) - kinds["i"] <= ITERATIONS + 20, sorted(set(fields) - {
        f for f in fields if f.startswith("i:")})
