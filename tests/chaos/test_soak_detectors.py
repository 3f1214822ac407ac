"""The soak's checks are not vacuous: a short soak whose Redis state is tampered with before
the checks (a second completion event for a join, a body that ran without a commit, a counter
knocked off, a changed result, a run left running, a vanished run) must report each one."""

from __future__ import annotations

from typing import Any

import msgspec
from flowcraft_arq import FlowcraftClient
from redis.asyncio import Redis
from soak import Config, Soak, zero_violations


async def tamper(soak: Soak, redis: Redis, client: FlowcraftClient) -> None:
    diamonds = sorted(r for r, (kind, _) in soak.runs.items() if kind == "diamond")
    others = sorted(r for r, (kind, _) in soak.runs.items() if kind == "if_else")
    assert (len(diamonds), len(others)) == (14, 14)  # 28 runs, kinds taken in turn
    keys = [client.store.keys(r) for r in diamonds]
    # 1. a join (D) recorded twice: one more node:finish event, as a second commit would add
    await redis.xadd(keys[0].events, {"e1": msgspec.json.encode({
        "type": "node:finish", "run_id": diamonds[0], "blueprint_id": "chaos_diamond",
        "node_id": "D", "iteration": 0, "output": None})})
    # 2. a body that ran (trace) for an instance the engine never recorded
    for phase in ("start", "end"):
        await redis.rpush(soak.trace_key, msgspec.json.encode(
            [diamonds[1], "B", 7, f"{diamonds[1]}:B:7", phase, 1, 1]))
    # 3. the live counter of a finished run knocked off
    await redis.hset(keys[2].meta, "live", "-1")
    # 4. a result whose context differs from the in-memory run (results are built from it)
    await redis.hset(keys[3].ctx, "E", msgspec.json.encode("tampered"))
    # 5. a run left running with a fired instance
    other = client.store.keys(others[0])
    await redis.hset(other.meta, mapping={"status": "running", "i:0#0": "F0|||0|null"})
    # 6. a run whose keys vanished
    await redis.delete(*client.store.keys(others[1]).all())


async def test_the_soak_reports_every_kind_of_violation() -> None:
    soak = Soak(Config(seconds=6, runs=28, workers=2, kill_every_ms=0, seed=5,
                       kinds=("diamond", "if_else")))
    soak.cfg.kill_every_ms = 10**9
    soak.before_verify = tamper
    report: dict[str, Any] = await soak.run()
    print(report)
    assert report["completions_recorded_twice"] == 1
    assert report["joins_fired_twice"] == 1
    # the forged trace entry, A of the run put back to `running` (its record was overwritten)
    # and the 4 bodies of the vanished if/else run (A, one branch, D, E)
    assert report["ran_without_completion"] == 1 + 1 + 4
    assert report["started_without_completion"] == 1 + 1 + 4
    assert report["live_counter_off"] == 1
    assert report["context_mismatches"] == 1
    assert report["runs_stuck"] == 1 and report["instances_not_done"] == 0
    assert report["runs_lost"] == 1
    assert report["runs_completed"] == 28 - 2
    assert not zero_violations(report)
