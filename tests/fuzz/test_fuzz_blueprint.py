"""Fuzzing load_blueprint and lint: every input loads or raises BlueprintError, and where the
input decides which, the test checks which.

Three kinds of input. Blueprints built valid by construction must load (and round-trip, and lint
clean but for orphans). Valid blueprints broken in one known way must be rejected with the error
that names that defect. Near-blueprints and arbitrary JSON or bytes are labelled where a rule
of the contract decides them; the rest is open and only has to fail cleanly (each test says so).

`make test` runs a few hundred examples; `make chaos` sets FLOWCRAFT_FUZZ_EXAMPLES=10000.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flowcraft import BlueprintError, WorkflowBlueprint, load_blueprint
from flowcraft.analysis import LintIssue, lint

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
VALID_EXPRESSIONS = ["true", "x > 1", "result.output", "len(x) == 2", "__import__", "a.__class__"]
INVALID_EXPRESSIONS = ["a &&", "((", "'", "1 +"]
INVALID_DURATIONS = ["1 parsec", "-1", -5, True]
expressions = st.sampled_from(VALID_EXPRESSIONS + INVALID_EXPRESSIONS) | st.text(max_size=12)
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
    "duration": st.sampled_from(["5s", "10ms", 10, *INVALID_DURATIONS]) | json_values,
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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_invalid_duration(value: Any) -> bool:
    # compared with their types: the JSON value 1 equals True but is a valid duration (1 ms)
    return any(type(value) is type(bad) and value == bad for bad in INVALID_DURATIONS)


def _node_must_fail(node: dict[str, Any], node_ids: list[str]) -> bool:
    """A rule of the contract (§2, §7, §8) that this node breaks whatever else it holds."""
    cfg, prm = node.get("config", {}), node.get("params", {})
    fallback = cfg.get("fallback")
    kind = node["uses"]
    inputs = node.get("inputs")
    return any((
        node["id"] == "",
        cfg.get("joinStrategy") == "some",
        _is_number(cfg.get("maxRetries")) and cfg["maxRetries"] < 1,
        _is_number(cfg.get("retryDelay")) and cfg["retryDelay"] < 0,
        _is_number(cfg.get("backoff")) and cfg["backoff"] < 0,
        _is_number(cfg.get("timeout")) and cfg["timeout"] <= 0,
        isinstance(fallback, str) and (fallback not in node_ids or fallback == node["id"]),
        not (inputs is None or isinstance(inputs, str) or (isinstance(inputs, dict) and all(
            isinstance(v, str) for v in inputs.values()))),
        kind == "loop-controller" and not isinstance(prm.get("condition"), str),
        kind == "loop-controller" and prm.get("condition") in INVALID_EXPRESSIONS,
        kind == "sleep" and ("duration" not in prm or _is_invalid_duration(prm["duration"])),
        kind == "subflow" and not isinstance(prm.get("blueprintId"), str),
        kind == "batch" and not (isinstance(prm.get("worker"), str)
                                 and isinstance(prm.get("inputKey"), str)),
    ))


def _near_must_fail(data: dict[str, Any], strict: bool) -> bool:
    """True when a rule decides that `data` must be rejected; False when it is open."""
    node_ids = [node["id"] for node in data["nodes"]]
    return any((
        len(set(node_ids)) != len(node_ids),
        any(e["source"] not in node_ids or e["target"] not in node_ids for e in data["edges"]),
        any(e.get(f) in INVALID_EXPRESSIONS for e in data["edges"]
            for f in ("condition", "transform")),
        any(_node_must_fail(node, node_ids) for node in data["nodes"]),
        strict and "extra" in data,
    ))


def _loads_cleanly(data: Any, strict: bool = False) -> WorkflowBlueprint | None:
    """The blueprint, or None after a BlueprintError with a message; nothing else may happen."""
    try:
        bp = load_blueprint(data, strict=strict)
    except BlueprintError as exc:
        assert str(exc)
        return None
    assert isinstance(bp, WorkflowBlueprint)
    assert load_blueprint(bp.to_json()) == bp
    return bp


@FUZZ
@given(near_blueprints, st.booleans())
def test_near_blueprints_load_or_raise_blueprint_error(data: dict[str, Any], strict: bool) -> None:
    """Near-blueprints that break a rule the generator can see (duplicate or empty ids, unknown
    edge ends or fallbacks, out-of-range config, known-bad expressions and durations, missing
    built-in params, a strict-mode extra field) must be rejected. The rest is open: the random
    text and JSON in them would need a second validator to judge, so they only must not crash."""
    must_fail = _near_must_fail(data, strict)
    for form in (data, json.dumps(data)):
        bp = _loads_cleanly(form, strict)
        if must_fail:
            assert bp is None, f"loaded, but breaks a rule: {data!r}"


def _expected_for_json(value: Any) -> str | None:
    """The message prefix a JSON value (or JSON text) must be rejected with; None if it loads.

    Only objects whose one key is a string `id` load: the generator almost never makes one."""
    if isinstance(value, str | bytes):
        try:
            value = msgspec.json.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return "blueprint is not valid JSON: "
    if not isinstance(value, dict):
        return f"blueprint must be a JSON object at `$`, got {type(value).__name__}"
    if not isinstance(value.get("id"), str):
        return "invalid blueprint: "
    if set(value) == {"id"}:
        return None
    return "open"


def _check_json_verdict(data: Any) -> None:
    expected = _expected_for_json(data)
    if expected == "open":  # an object with a string id and more keys: judged by the validator
        _loads_cleanly(data)
        return
    if expected is None:
        bp = _loads_cleanly(data)
        assert bp is not None
        assert (bp.id, bp.nodes, bp.edges, bp.metadata) == (
            _decoded_id(data), (), (), {})
        return
    with pytest.raises(BlueprintError) as info:
        load_blueprint(data)
    assert str(info.value).startswith(expected), (str(info.value), expected)


def _decoded_id(data: Any) -> str:
    value = msgspec.json.decode(data) if isinstance(data, str | bytes) else data
    blueprint_id = value["id"]
    assert isinstance(blueprint_id, str)
    return blueprint_id


@FUZZ
@given(json_values)
def test_arbitrary_json_is_rejected_cleanly(data: Any) -> None:
    """A JSON value loads only as an object with a string `id`; a string is read as JSON text.
    Objects with a string id and other keys are open (the validator judges their contents)."""
    _check_json_verdict(data)


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_rejected_cleanly(data: bytes) -> None:
    """Bytes are JSON text: not JSON, not an object, or no string `id` is rejected as such."""
    _check_json_verdict(data)


@FUZZ
@given(st.fixed_dictionaries({"id": st.text(max_size=6)}).map(json.dumps) | st.just('{"id": ""}'))
def test_an_object_with_only_a_string_id_loads(text: str) -> None:
    _check_json_verdict(text)
    _check_json_verdict(text.encode())


def _orphans(data: dict[str, Any]) -> list[LintIssue]:
    """The orphans lint reports: nodes with no edge (when there are several), fallbacks excepted."""
    if len(data["nodes"]) <= 1:
        return []
    connected = {e["source"] for e in data["edges"]} | {e["target"] for e in data["edges"]}
    fallbacks = {n.get("config", {}).get("fallback") for n in data["nodes"]}
    return [LintIssue("orphan-node", f"node {n['id']!r} has no edges", n["id"])
            for n in data["nodes"] if n["id"] not in connected and n["id"] not in fallbacks]


@FUZZ
@given(near_blueprints)
def test_lint_reports_or_rejects_but_never_crashes(data: dict[str, Any]) -> None:
    """lint raises exactly when the data is not a blueprint at all, with the same message as
    load_blueprint; a problem lint reports (other than an orphan) means load_blueprint rejects;
    a blueprint that loads lints to exactly its orphans. A blueprint that lints to orphans only
    may still be rejected (load checks more, e.g. retryDelay): that case is open here."""
    try:
        issues = lint(data)
    except BlueprintError as lint_error:
        with pytest.raises(BlueprintError) as info:
            load_blueprint(data)
        assert str(info.value) == str(lint_error)
        return
    bp = _loads_cleanly(data)
    if any(issue.code != "orphan-node" for issue in issues):
        assert bp is None, issues
    if bp is not None:
        assert issues == _orphans(data)


# ----------------------------------------------------------------------- valid by construction

USER_KEYS = ["fn", "k:a", "pkg.mod:work"]
finite_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8)


@st.composite
def valid_blueprints(draw: st.DrawFn) -> dict[str, Any]:
    """A blueprint every rule accepts: unique non-empty ids, edges only forward (no cycle),
    loop controllers never entered by an edge, valid config, params and expressions."""
    node_ids = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=6,
                             unique=True))
    made: list[dict[str, Any]] = []
    for node_id in node_ids:
        kind = draw(st.sampled_from([*USER_KEYS, "loop-controller", "sleep", "wait", "subflow",
                                     "batch"]))
        node: dict[str, Any] = {"id": node_id, "uses": kind}
        if kind == "loop-controller":
            node["params"] = {"condition": draw(st.sampled_from(VALID_EXPRESSIONS)),
                              "maxIterations": draw(st.integers(1, 50))}
        elif kind == "sleep":
            node["params"] = {"duration": draw(st.sampled_from(["5s", "10ms", "2m", 0, 250]))}
        elif kind == "subflow":
            node["params"] = {"blueprintId": draw(st.text(max_size=6)),
                              "inputs": {"a": "b"}, "outputs": {}}
        elif kind == "batch":
            node["params"] = {"worker": draw(st.sampled_from(USER_KEYS)), "inputKey": "items",
                              "concurrency": draw(st.integers(1, 4))}
        elif kind in USER_KEYS and draw(st.booleans()):
            node["params"] = draw(st.dictionaries(st.text(max_size=6), finite_json, max_size=3))
        others = [other for other in node_ids if other != node_id]
        node["config"] = draw(st.fixed_dictionaries({}, optional={
            "maxRetries": st.integers(1, 5),
            "retryDelay": st.floats(0, 100, allow_nan=False),
            "backoff": st.floats(0, 4, allow_nan=False),
            "timeout": st.none() | st.floats(0.5, 1000, allow_nan=False),
            "fallback": st.none() | (st.sampled_from(others) if others else st.none()),
            "joinStrategy": st.sampled_from(["all", "any"]),
        }))
        node["inputs"] = draw(st.none() | st.text(max_size=4)
                              | st.dictionaries(st.text(max_size=4), st.text(max_size=4),
                                                max_size=2))
        made.append(node)
    controllers = {n["id"] for n in made if n["uses"] == "loop-controller"}
    pairs = [(a, b) for i, a in enumerate(node_ids) for b in node_ids[i + 1:]
             if b not in controllers]
    chosen = draw(st.lists(st.sampled_from(pairs), max_size=8)) if pairs else []
    made_edges = [
        {"source": a, "target": b, **draw(st.fixed_dictionaries({}, optional={
            "action": st.none() | st.text(max_size=4),
            "condition": st.sampled_from(VALID_EXPRESSIONS),
            "transform": st.sampled_from(VALID_EXPRESSIONS)}))}
        for a, b in chosen]
    return {"id": draw(st.text(max_size=6)), "nodes": made, "edges": made_edges,
            "metadata": draw(st.dictionaries(st.text(max_size=4), finite_json, max_size=3))}


@FUZZ
@given(valid_blueprints(), st.booleans())
def test_valid_blueprints_load_round_trip_and_lint_to_their_orphans(
        data: dict[str, Any], strict: bool) -> None:
    for form in (data, json.dumps(data)):
        bp = load_blueprint(form, strict=strict)
        assert bp.id == data["id"]
        assert [n.id for n in bp.nodes] == [n["id"] for n in data["nodes"]]
        assert [(e.source, e.target) for e in bp.edges] == [
            (e["source"], e["target"]) for e in data["edges"]]
        assert load_blueprint(bp.to_json()) == bp
    assert lint(data) == _orphans(data)


# ------------------------------------------------------------------------ broken in one way

Breakage = Callable[[dict[str, Any], int], str]


def _set_config(key: str, value: Any, message: str) -> Breakage:
    def breaks(data: dict[str, Any], k: int) -> str:
        data["nodes"][k]["config"][key] = value
        return message.format(k=k, id=data["nodes"][k]["id"])
    return breaks


def _duplicate_id(data: dict[str, Any], k: int) -> str:
    assume(k > 0)
    first = data["nodes"][0]["id"]
    data["nodes"][k]["id"] = first
    return f"duplicate node id {first!r} at `$.nodes[{k}].id`"


def _empty_id(data: dict[str, Any], k: int) -> str:
    data["nodes"][k]["id"] = ""
    return f"empty node id at `$.nodes[{k}].id`"


def _id_not_a_string(data: dict[str, Any], k: int) -> str:
    data["nodes"][k]["id"] = 7
    return f"invalid blueprint: Expected `str`, got `int` - at `$.nodes[{k}].id`"


def _unknown_target(data: dict[str, Any], k: int) -> str:
    ghost = "ghost" + "".join(n["id"] for n in data["nodes"])  # longer than every id
    data["edges"].append({"source": data["nodes"][k]["id"], "target": ghost})
    return f"edge target {ghost!r} is not a node at `$.edges[{len(data['edges']) - 1}].target`"


def _fallback_to_itself(data: dict[str, Any], k: int) -> str:
    node = data["nodes"][k]
    node["config"]["fallback"] = node["id"]
    return (f"fallback {node['id']!r} of node {node['id']!r} is not another node of the "
            f"blueprint at `$.nodes[{k}].config.fallback`")


def _bad_condition(data: dict[str, Any], k: int) -> str:
    data["edges"].append({"source": data["nodes"][k]["id"], "target": data["nodes"][k]["id"],
                          "condition": "1 +"})
    return ("unexpected end of expression at position 3 in expression '1 +' "
            f"at `$.edges[{len(data['edges']) - 1}].condition`")


def _self_loop(data: dict[str, Any], k: int) -> str:
    node = data["nodes"][k]
    assume(node["uses"] != "loop-controller")
    data["edges"].append({"source": node["id"], "target": node["id"]})
    return f"cycle without a loop controller: {node['id']} -> {node['id']}"


def _bad_duration(data: dict[str, Any], k: int) -> str:
    node = data["nodes"][k]
    node["uses"], node["params"] = "sleep", {"duration": "1 parsec"}
    return ("invalid duration '1 parsec': expected ms or '500ms'/'5s'/'2m'/'1h'/'1d' "
            f"at `$.nodes[{k}].params` (node {node['id']!r})")


def _non_finite_param(data: dict[str, Any], k: int) -> str:
    node = data["nodes"][k]
    node["uses"], node["params"] = "fn", {"x": math.inf}
    return f"non-finite number inf at `$.nodes[{k}].params.x` (not valid JSON)"


BREAKAGES: dict[str, Breakage] = {
    "maxRetries 0": _set_config("maxRetries", 0, "maxRetries must be >= 1 (total attempts), "
                                "got 0 at `$.nodes[{k}].config.maxRetries` (node {id!r})"),
    "negative retryDelay": _set_config("retryDelay", -1, "negative retryDelay at "
                                       "`$.nodes[{k}].config.retryDelay` (node {id!r})"),
    "negative backoff": _set_config("backoff", -0.5, "negative backoff at "
                                    "`$.nodes[{k}].config.backoff` (node {id!r})"),
    "zero timeout": _set_config("timeout", 0, "timeout must be > 0 ms at "
                                "`$.nodes[{k}].config.timeout` (node {id!r})"),
    "duplicate id": _duplicate_id,
    "empty id": _empty_id,
    "id not a string": _id_not_a_string,
    "unknown edge target": _unknown_target,
    "fallback to itself": _fallback_to_itself,
    "bad condition": _bad_condition,
    "self loop": _self_loop,
    "bad sleep duration": _bad_duration,
    "non-finite param": _non_finite_param,
}


@FUZZ
@given(valid_blueprints(), st.sampled_from(sorted(BREAKAGES)), st.integers(0, 5))
def test_valid_blueprints_broken_one_way_are_rejected_naming_the_defect(
        data: dict[str, Any], breakage: str, index: int) -> None:
    k = index % len(data["nodes"])
    expected = BREAKAGES[breakage](data, k)
    with pytest.raises(BlueprintError) as info:
        load_blueprint(data)
    assert str(info.value) == expected
    if breakage != "non-finite param":  # JSON text cannot hold infinity
        with pytest.raises(BlueprintError) as info:
            load_blueprint(json.dumps(data))
        assert str(info.value) == expected


@FUZZ
@given(valid_blueprints(), st.integers(0, 5))
def test_an_unknown_field_is_rejected_only_in_strict_mode(data: dict[str, Any],
                                                          index: int) -> None:
    k = index % len(data["nodes"])
    data["nodes"][k]["colour"] = "red"
    assert [n.id for n in load_blueprint(data).nodes] == [n["id"] for n in data["nodes"]]
    with pytest.raises(BlueprintError) as info:
        load_blueprint(data, strict=True)
    assert str(info.value) == f"unknown field 'colour' at `$.nodes[{k}]` (strict mode)"
