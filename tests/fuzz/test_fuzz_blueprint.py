"""Fuzzing load_blueprint: any input either loads or raises BlueprintError, nothing else.

`make test` runs a few hundred examples; `make chaos` sets FLOWCRAFT_FUZZ_EXAMPLES=10000.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcraft import BlueprintError, WorkflowBlueprint, load_blueprint
from flowcraft.analysis import lint

EXAMPLES = int(os.environ.get("FLOWCRAFT_FUZZ_EXAMPLES", "200"))
# `make test` replays a fixed sequence so CI is reproducible; `make chaos` explores at random.
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                derandomize="FLOWCRAFT_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4),
                           max_leaves=20)
ids = st.sampled_from(["a", "b", "c", "d", "", "loop", "a.b", "_x"]) | st.text(max_size=6)
uses = st.sampled_from(["fn", "loop-controller", "sleep", "wait", "subflow", "batch"])
expressions = st.sampled_from(["true", "x > 1", "result.output", "a &&", "((", "len(x) == 2",
                               "__import__", "a.__class__", "'", "1 +"]) | st.text(max_size=12)
config = st.fixed_dictionaries({}, optional={
    "maxRetries": st.integers(-2, 5) | json_values,
    "retryDelay": st.floats(-10, 100, allow_nan=False) | json_values,
    "backoff": st.floats(-1, 4, allow_nan=False),
    "timeout": st.none() | st.floats(-5, 1000, allow_nan=False),
    "fallback": st.none() | ids,
    "joinStrategy": st.sampled_from(["all", "any", "some"]),
})
params = st.fixed_dictionaries({}, optional={
    "condition": expressions | json_values,
    "maxIterations": st.integers(-1, 5) | json_values,
    "duration": st.sampled_from(["5s", "1 parsec", "-1", "10ms", 10, -5, True]) | json_values,
    "blueprintId": ids | json_values,
    "worker": ids, "inputKey": ids, "concurrency": st.integers(-1, 4) | json_values,
    "inputs": json_values, "outputs": json_values,
})
nodes = st.fixed_dictionaries({"id": ids, "uses": uses},
                              optional={"params": params, "config": config,
                                        "inputs": st.none() | ids | json_values,
                                        "_sourceLocation": json_values})
edges = st.fixed_dictionaries({"source": ids, "target": ids},
                              optional={"action": st.none() | ids, "condition": expressions,
                                        "transform": expressions})
near_blueprints = st.fixed_dictionaries(
    {"id": ids, "nodes": st.lists(nodes, max_size=6), "edges": st.lists(edges, max_size=8)},
    optional={"metadata": json_values, "extra": json_values})


def _loads_or_rejects(data: Any, strict: bool = False) -> None:
    try:
        bp = load_blueprint(data, strict=strict)
    except BlueprintError as exc:
        assert str(exc)
        return
    assert isinstance(bp, WorkflowBlueprint)
    assert load_blueprint(bp.to_json()) == bp


@FUZZ
@given(near_blueprints, st.booleans())
def test_near_blueprints_load_or_raise_blueprint_error(data: dict[str, Any], strict: bool) -> None:
    _loads_or_rejects(data, strict)
    _loads_or_rejects(json.dumps(data), strict)


@FUZZ
@given(json_values)
def test_arbitrary_json_is_rejected_cleanly(data: Any) -> None:
    _loads_or_rejects(data)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_rejected_cleanly(data: bytes) -> None:
    _loads_or_rejects(data)


@FUZZ
@given(near_blueprints)
def test_lint_reports_or_rejects_but_never_crashes(data: dict[str, Any]) -> None:
    try:
        issues = lint(data)
    except BlueprintError:
        return
    loads = True
    try:
        load_blueprint(data)
    except BlueprintError:
        loads = False
    if loads:
        assert issues == [] or all(i.code == "orphan-node" for i in issues)
