"""Blueprints written by the TypeScript builder (flowcraft 2.10.1) load and run here (issue 13).

Each fixture under fixtures/ holds a blueprint the TS builder wrote and the result the TS runtime
gave (tests/interop/ts_fixtures.mjs, `make interop`). Here each one loads strictly and laxly and
runs with the same node functions (interop_functions.py); the results must be equal, except
where the contract deliberately differs from the reference, which is asserted as a difference
naming the clause. docs/interop.md lists the cases.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from interop_cases import EXPECTED as ALL_EXPECTED
from interop_cases import MISSING
from interop_functions import registry
from interop_run import comparable, load_both, run_case

from flowcraft import EventRecorder, FlowRuntime, load_blueprint

FIXTURES = Path(__file__).parent / "fixtures"
# Our builder writes loops one way; these two are TS wirings only.
TS_ONLY = {"loop_start_all", "loop_via_controller"}
OURS_ONLY = {"batch_concurrency"}
EXPECTED = {name: e for name, e in ALL_EXPECTED.items() if name not in OURS_ONLY}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ts_blueprint_loads_strict_and_lax_unchanged(name: str) -> None:
    data = fixture(name)
    strict, lax = load_both(data["blueprint"])
    assert strict == lax
    assert load_blueprint(strict.to_json(), strict=True) == strict


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_ts_blueprint_runs_here_with_the_reference_results(name: str) -> None:
    data = fixture(name)
    blueprint, _ = load_both(data["blueprint"])
    children = [load_blueprint(c) for c in data["children"]]
    # sleep: ours continues in memory; TS 2.10.1 pauses at every sleep (its final result,
    # after one resume, is what ours gives at once). Durable timers are compared below.
    durable = name != "sleep"
    resume = data["resume"] if durable else []
    ours = await run_case(blueprint, data["functions"], data["context"], resume, children,
                          durable_timers=durable)
    ts = data["ts_result"]
    mine, theirs = comparable(ours["context"], blueprint), comparable(ts["context"], blueprint)
    expected = EXPECTED[name]
    if expected is None:
        assert (ours["status"], mine) == (ts["status"], theirs)
    else:
        assert (ours["status"], ts["status"]) == (expected.status or (ts["status"],) * 2)
        for key, (our_value, ts_value) in expected.keys.items():
            assert (mine.pop(key, MISSING), theirs.pop(key, MISSING)) == (our_value, ts_value), \
                expected.clause
        assert mine == theirs
    errors = ([e["nodeId"] for e in ours["errors"]], [e["nodeId"] for e in ts["errors"]])
    if name == "timeout":  # the error is the difference
        assert errors == (["slow"], [])
        assert ours["errors"][0]["type"] == "NodeTimeoutError"
    else:
        assert errors[0] == errors[1]
    if durable:
        assert [(p["status"], p["awaiting"]) for p in ours["phases"]] == \
            [(p["status"], p["awaiting"]) for p in ts["phases"]]


async def test_ts_sleep_with_durable_timers_pauses_like_the_reference() -> None:
    data = fixture("sleep")
    blueprint, _ = load_both(data["blueprint"])
    ours = await run_case(blueprint, data["functions"], data["context"], data["resume"])
    assert [(p["status"], p["awaiting"]) for p in ours["phases"]] == \
        [(p["status"], p["awaiting"]) for p in data["ts_result"]["phases"]] == \
        [("awaiting", ["nap"])]
    assert ours["status"] == data["ts_result"]["status"] == "completed"


async def test_ts_batch_pair_runs_as_one_batch_node_named_by_its_base_id() -> None:
    data = fixture("batch")
    blueprint, _ = load_both(data["blueprint"])
    assert [(n.id, n.uses) for n in blueprint.nodes if n.id.startswith("work")] == \
        [("work_scatter", "batch-scatter"), ("work_gather", "batch-gather")]
    reg = {key: registry()[name] for key, name in data["functions"].items()}
    recorder = EventRecorder()
    result = await FlowRuntime(registry=reg, event_bus=recorder).run(
        blueprint, context=data["context"])
    assert result.status == "completed"
    assert recorder.node_order() == ["a", "work", "sum"]
    batch_events = [e for e in recorder.events if e.type.startswith("batch:")]
    assert [(e.type, getattr(e, "node_id", None)) for e in batch_events] == \
        [("batch:start", "work"), ("batch:finish", "work")]
    assert (result.context["work"], result.context["doubled"]) == ([2, 4, 6, 8], [2, 4, 6, 8])
    assert "work_scatter" not in result.context
