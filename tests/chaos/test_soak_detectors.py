"""The soak's checks are not vacuous: a short soak whose Redis state is tampered with before
the checks (a second completion event for a join, a body that ran without a commit, a counter
knocked off, a changed result, a run left running, a vanished run, a node that started before
its sleep ended, a subflow's child run left running, a batch running more items at once than
its concurrency) must report each one."""

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
            [diamonds[1], "B", 7, f"{diamonds[1]}:B:7", phase, 1, 1, 0.0]))
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
    soak = Soak(Config(seconds=6, runs=28, workers=2, workers2=0, kill_every_ms=0, seed=5,
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


async def tamper_new_shapes(soak: Soak, redis: Redis, client: FlowcraftClient) -> None:
    sleeps = sorted(r for r, (kind, _) in soak.runs.items() if kind == "sleep")
    parents = sorted(r for r, (kind, _) in soak.runs.items() if kind == "subflow_wait")
    batches = sorted((r for r, (kind, _) in soak.runs.items() if kind == "batch_conc"),
                     key=lambda r: soak.runs[r][1]["count"])
    assert (len(sleeps), len(parents), len(batches)) == (3, 3, 3)
    # 1. B of a sleep run started half a second after A ended (its sleep is 1 s): a second
    # delivery of B's job, woken early by a reconcile, as issue 9 item 3 describes
    ends = [msgspec.json.decode(raw) for raw in await redis.lrange(soak.trace_key, 0, -1)]
    a_end = min(e[7] for e in ends if e[0] == sleeps[0] and e[1] == "A" and e[4] == "end")
    await redis.rpush(soak.trace_key, msgspec.json.encode(
        [sleeps[0], "B", 0, f"{sleeps[0]}:B:0", "start", 1, 2, a_end + 0.5]))
    # 2. the child run of a completed parent left running
    await redis.hset(client.store.keys(f"{parents[0]}/sub#0").meta, "status", "running")
    # 3. four items of a batch with concurrency 3 ran at the same time (in four processes)
    run = batches[-1]
    assert soak.runs[run][1]["count"] >= 4
    for item in range(4):
        for phase, at in (("start", 1e10 + item), ("end", 1e10 + 10)):
            await redis.rpush(soak.trace_key, msgspec.json.encode(
                [run, f"priced[{item}]", 0, f"{run}:priced[{item}]:0", phase, 100 + item, 2,
                 at]))


async def test_the_soak_reports_early_wakeups_unfinished_child_runs_and_concurrency() -> None:
    soak = Soak(Config(seconds=3, runs=9, workers=1, workers2=0, kill_every_ms=0, seed=6,
                       kinds=("sleep", "subflow_wait", "batch_conc")))
    soak.cfg.kill_every_ms = 10**9
    soak.before_verify = tamper_new_shapes
    report: dict[str, Any] = await soak.run()
    print(report)
    assert report["woke_early"] == 1 and report["by_shape"]["sleep"]["woke_early"] == 1
    assert report["sleep_min_slack_s"]["sleep"] < -0.4
    assert report["child_runs"] == 3 and report["child_runs_not_completed"] == 1
    assert report["by_shape"]["subflow_wait"]["child_runs_not_completed"] == 1
    assert report["concurrency_exceeded"] == 1
    assert report["by_shape"]["batch_conc"]["most_items_at_once"] == 4
    assert report["runs_completed"] == report["runs_submitted"] == 9
    assert report["context_mismatches"] == 0 and report["runs_stuck"] == 0
    assert not zero_violations(report)
