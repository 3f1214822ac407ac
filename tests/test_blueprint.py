"""Contract §2 (blueprint data), §7/§12.16 (expressions at load time), §8 (cycles), §11 (errors)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from flowcraft import (
    BlueprintError,
    EdgeDefinition,
    ExpressionError,
    FlowcraftError,
    NodeConfig,
    NodeDefinition,
    WorkflowBlueprint,
    load_blueprint,
)


def base_dict() -> dict[str, Any]:
    """A small valid blueprint in the JSON (camelCase) format."""
    return {
        "id": "orders",
        "nodes": [
            {"id": "fetch", "uses": "fetch-order", "params": {"limit": 3}, "inputs": "order_id"},
            {
                "id": "charge",
                "uses": "charge-card",
                "inputs": {"total": "fetch.total"},
                "config": {
                    "maxRetries": 3,
                    "retryDelay": 250,
                    "backoff": 3.0,
                    "timeout": 1500,
                    "fallback": "manual",
                    "joinStrategy": "any",
                },
            },
            {"id": "manual", "uses": "manual-review"},
        ],
        "edges": [
            {
                "source": "fetch",
                "target": "charge",
                "action": "ok",
                "condition": "result.output.total > 0",
                "transform": "input",
            },
        ],
        "metadata": {"version": "7", "owner": "team-a"},
    }


def check_base(bp: WorkflowBlueprint) -> None:
    assert isinstance(bp, WorkflowBlueprint)
    assert bp.id == "orders"
    assert [n.id for n in bp.nodes] == ["fetch", "charge", "manual"]
    assert isinstance(bp.nodes, tuple)
    assert isinstance(bp.edges, tuple)
    fetch, charge, manual = bp.nodes
    assert isinstance(fetch, NodeDefinition)
    assert fetch.uses == "fetch-order"
    assert fetch.params == {"limit": 3}
    assert fetch.inputs == "order_id"
    assert fetch.config == NodeConfig()
    assert charge.inputs == {"total": "fetch.total"}
    cfg = charge.config
    assert isinstance(cfg, NodeConfig)
    assert cfg.max_retries == 3
    assert cfg.retry_delay == 250
    assert cfg.backoff == 3.0
    assert cfg.timeout == 1500
    assert cfg.fallback == "manual"
    assert cfg.join_strategy == "any"
    assert manual.params == {}
    assert manual.inputs is None
    (edge,) = bp.edges
    assert isinstance(edge, EdgeDefinition)
    assert (edge.source, edge.target, edge.action) == ("fetch", "charge", "ok")
    assert edge.condition == "result.output.total > 0"
    assert edge.transform == "input"
    assert bp.metadata == {"version": "7", "owner": "team-a"}


# --------------------------------------------------------------------------- loading / defaults


def test_s2_node_config_defaults() -> None:
    cfg = NodeConfig()
    assert cfg.max_retries == 1
    assert cfg.retry_delay == 0
    assert cfg.backoff == 2.0
    assert cfg.timeout is None
    assert cfg.fallback is None
    assert cfg.join_strategy == "all"


def test_s2_definition_defaults() -> None:
    node = NodeDefinition(id="a", uses="x")
    assert node.params == {}
    assert node.inputs is None
    assert node.config == NodeConfig()
    edge = EdgeDefinition(source="a", target="b")
    assert edge.action is None and edge.condition is None and edge.transform is None
    bp = WorkflowBlueprint(id="bp", nodes=(node,), edges=())
    assert bp.metadata == {}


def test_s2_load_from_dict() -> None:
    check_base(load_blueprint(base_dict()))


def test_s2_load_from_str() -> None:
    check_base(load_blueprint(json.dumps(base_dict())))


def test_s2_load_from_bytes() -> None:
    check_base(load_blueprint(json.dumps(base_dict()).encode()))


def test_s2_load_does_not_mutate_input_dict() -> None:
    data = base_dict()
    snapshot = copy.deepcopy(data)
    load_blueprint(data)
    assert data == snapshot


def test_s2_to_json_round_trip() -> None:
    bp = load_blueprint(base_dict())
    raw = bp.to_json()
    assert isinstance(raw, bytes)
    again = load_blueprint(raw)
    assert again == bp
    check_base(again)
    # and a second round gives the same document
    assert load_blueprint(again.to_json()) == bp


def test_s2_to_json_uses_camel_case_keys() -> None:
    doc = json.loads(load_blueprint(base_dict()).to_json())
    cfg = doc["nodes"][1]["config"]
    assert cfg["maxRetries"] == 3
    assert cfg["retryDelay"] == 250
    assert cfg["joinStrategy"] == "any"
    assert cfg["fallback"] == "manual"
    assert "max_retries" not in cfg
    assert "retry_delay" not in cfg
    assert "join_strategy" not in cfg


def test_s2_to_json_round_trip_of_constructed_blueprint() -> None:
    bp = WorkflowBlueprint(
        id="built",
        nodes=(
            NodeDefinition(id="a", uses="u.a"),
            NodeDefinition(
                id="b",
                uses="u.b",
                params={"p": [1, 2]},
                config=NodeConfig(max_retries=2, retry_delay=10, join_strategy="any"),
            ),
        ),
        edges=(EdgeDefinition(source="a", target="b", action="go"),),
        metadata={"version": "1"},
    )
    assert load_blueprint(bp.to_json()) == bp


# --------------------------------------------------------------------------- immutability


def test_s2_blueprint_is_frozen() -> None:
    bp = load_blueprint(base_dict())
    with pytest.raises(AttributeError, match="immutable type: 'WorkflowBlueprint'"):
        bp.id = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable type: 'NodeDefinition'"):
        bp.nodes[0].uses = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable type: 'NodeConfig'"):
        bp.nodes[1].config.max_retries = 9  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable type: 'EdgeDefinition'"):
        bp.edges[0].target = "manual"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="'tuple' object has no attribute 'append'"):
        bp.nodes.append(bp.nodes[0])  # type: ignore[attr-defined]
    assert bp.id == "orders"
    assert bp.nodes[1].config.max_retries == 3


# --------------------------------------------------------------------------- TS Flowcraft format

TS_EXPORT = """
{
  "id": "ts-order-flow",
  "nodes": [
    {
      "id": "validate",
      "uses": "validateOrder",
      "params": {"strict": true},
      "_sourceLocation": {"file": "src/flows/order.ts", "line": 12, "column": 5}
    },
    {
      "id": "charge",
      "uses": "chargeCard",
      "config": {"maxRetries": 4, "retryDelay": 1500, "backoff": 1.5, "timeout": 30000,
                 "fallback": "refund", "joinStrategy": "all"},
      "_sourceLocation": {"file": "src/flows/order.ts", "line": 20, "column": 5}
    },
    {
      "id": "refund",
      "uses": "refundOrder",
      "_sourceLocation": {"file": "src/flows/order.ts", "line": 31, "column": 5}
    },
    {
      "id": "notify",
      "uses": "sendEmail",
      "inputs": {"to": "validate.email"},
      "config": {"joinStrategy": "any"},
      "_sourceLocation": {"file": "src/flows/order.ts", "line": 40, "column": 5}
    }
  ],
  "edges": [
    {"source": "validate", "target": "charge", "action": "valid",
     "condition": "result.output.total > 0 && result.output.currency === 'EUR'",
     "_sourceLocation": {"file": "src/flows/order.ts", "line": 50, "column": 3}},
    {"source": "validate", "target": "notify", "action": "invalid",
     "_sourceLocation": {"file": "src/flows/order.ts", "line": 51, "column": 3}},
    {"source": "charge", "target": "notify", "transform": "input.receipt",
     "_sourceLocation": {"file": "src/flows/order.ts", "line": 52, "column": 3}}
  ],
  "metadata": {"version": "3", "createdBy": "flowcraft-ts"}
}
"""


def test_s2_ts_flowcraft_export_loads_in_non_strict_mode() -> None:
    bp = load_blueprint(TS_EXPORT)
    assert bp.id == "ts-order-flow"
    assert [n.id for n in bp.nodes] == ["validate", "charge", "refund", "notify"]
    nodes = {n.id: n for n in bp.nodes}
    charge = nodes["charge"].config
    assert charge.max_retries == 4
    assert charge.retry_delay == 1500
    assert charge.backoff == 1.5
    assert charge.timeout == 30000
    assert charge.fallback == "refund"
    assert charge.join_strategy == "all"
    assert nodes["notify"].config.join_strategy == "any"
    assert nodes["notify"].config.max_retries == 1
    assert nodes["notify"].inputs == {"to": "validate.email"}
    assert nodes["validate"].params == {"strict": True}
    assert [(e.source, e.target, e.action) for e in bp.edges] == [
        ("validate", "charge", "valid"),
        ("validate", "notify", "invalid"),
        ("charge", "notify", None),
    ]
    assert bp.edges[2].transform == "input.receipt"
    assert bp.metadata["version"] == "3"
    # unknown keys are dropped, not carried along
    assert "_sourceLocation" not in bp.to_json().decode()


def test_s2_ts_flowcraft_export_is_rejected_in_strict_mode() -> None:
    with pytest.raises(BlueprintError) as info:
        load_blueprint(TS_EXPORT, strict=True)
    assert "_sourceLocation" in str(info.value)


# --------------------------------------------------------------------------- validation errors


def assert_blueprint_error(data: Any, *fragments: str, strict: bool = False) -> BlueprintError:
    with pytest.raises(BlueprintError) as info:
        load_blueprint(data, strict=strict)
    err = info.value
    assert isinstance(err, FlowcraftError)
    msg = str(err)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in error message {msg!r}"
    return err


def test_s2_unknown_node_field_rejected_in_strict_mode() -> None:
    data = base_dict()
    data["nodes"][1]["colour"] = "blue"
    assert_blueprint_error(data, "colour", "nodes[1]", strict=True)
    # default (non-strict) mode ignores it
    assert load_blueprint(data).nodes[1].id == "charge"


def test_s2_unknown_config_field_rejected_in_strict_mode() -> None:
    data = base_dict()
    data["nodes"][1]["config"]["retryJitter"] = 5
    assert_blueprint_error(data, "retryJitter", "nodes[1]", strict=True)
    assert load_blueprint(data).nodes[1].config.max_retries == 3


def test_s2_unknown_top_level_and_edge_fields_rejected_in_strict_mode() -> None:
    data = base_dict()
    data["edges"][0]["weight"] = 2
    assert_blueprint_error(data, "weight", "edges[0]", strict=True)
    data = base_dict()
    data["author"] = "me"
    assert_blueprint_error(data, "author", strict=True)


def test_s2_valid_blueprint_loads_in_strict_mode() -> None:
    check_base(load_blueprint(base_dict(), strict=True))


def test_s2_wrong_type_of_uses() -> None:
    data = base_dict()
    data["nodes"][1]["uses"] = 42
    assert_blueprint_error(data, "nodes[1]", "uses")


def test_s2_wrong_type_of_max_retries() -> None:
    data = base_dict()
    data["nodes"][1]["config"]["maxRetries"] = "three"
    assert_blueprint_error(data, "Expected `int`, got `str`", "at `$.nodes[1].config.maxRetries`")


def test_s2_wrong_type_of_nodes_list() -> None:
    data = base_dict()
    data["nodes"] = {"fetch": {"uses": "x"}}
    assert_blueprint_error(data, "nodes")


def test_s2_missing_required_field() -> None:
    data = base_dict()
    del data["nodes"][2]["uses"]
    assert_blueprint_error(data, "nodes[2]", "uses")


def test_s2_invalid_join_strategy() -> None:
    data = base_dict()
    data["nodes"][1]["config"]["joinStrategy"] = "some"
    assert_blueprint_error(data, "nodes[1]")


def test_s2_malformed_json_text_is_blueprint_error() -> None:
    assert_blueprint_error('{"id": "x", "nodes": [')


def test_s2_duplicate_node_ids() -> None:
    data = base_dict()
    data["nodes"].append({"id": "dup_node", "uses": "a"})
    data["nodes"].append({"id": "dup_node", "uses": "b"})
    assert_blueprint_error(data, "dup_node")


def test_s2_edge_to_unknown_target() -> None:
    data = base_dict()
    data["edges"].append({"source": "fetch", "target": "ghost_target"})
    assert_blueprint_error(data, "ghost_target")


def test_s2_edge_from_unknown_source() -> None:
    data = base_dict()
    data["edges"].append({"source": "ghost_source", "target": "charge"})
    assert_blueprint_error(data, "ghost_source")


def test_s2_fallback_naming_unknown_node() -> None:
    data = base_dict()
    data["nodes"][1]["config"]["fallback"] = "missing_fallback"
    assert_blueprint_error(
        data, "fallback 'missing_fallback' of node 'charge' is not another node",
        "at `$.nodes[1].config.fallback`")


@pytest.mark.parametrize("value", [0, -1])
def test_s2_max_retries_below_one(value: int) -> None:
    data = base_dict()
    data["nodes"][1]["config"]["maxRetries"] = value
    assert_blueprint_error(
        data, f"maxRetries must be >= 1 (total attempts), got {value}",
        "at `$.nodes[1].config.maxRetries` (node 'charge')")


def test_s2_negative_retry_delay() -> None:
    data = base_dict()
    data["nodes"][1]["config"]["retryDelay"] = -5
    assert_blueprint_error(
        data, "negative retryDelay at `$.nodes[1].config.retryDelay` (node 'charge')")


def test_s2_zero_retry_delay_is_valid() -> None:
    data = base_dict()
    data["nodes"][1]["config"]["retryDelay"] = 0
    assert load_blueprint(data).nodes[1].config.retry_delay == 0


# ------------------------------------------------------------------- expressions (§7, §12.16)


def test_s7_bad_condition_expression_is_expression_error() -> None:
    data = base_dict()
    data["edges"][0]["condition"] = "result.output.total > "
    with pytest.raises(ExpressionError) as info:
        load_blueprint(data)
    assert isinstance(info.value, BlueprintError)
    msg = str(info.value)
    assert msg.endswith("in expression 'result.output.total > ' at `$.edges[0].condition`"), msg


def test_s7_bad_transform_expression_is_expression_error() -> None:
    data = base_dict()
    data["edges"][0]["transform"] = "input * * 2"
    with pytest.raises(ExpressionError):
        load_blueprint(data)


def test_s12_16_too_long_expression_rejected() -> None:
    data = base_dict()
    data["edges"][0]["condition"] = " + ".join(["1"] * 4000)  # ~16k characters
    with pytest.raises(ExpressionError):
        load_blueprint(data)


def test_s12_16_too_deeply_nested_expression_rejected() -> None:
    data = base_dict()
    data["edges"][0]["condition"] = "(" * 150 + "1" + ")" * 150
    with pytest.raises(ExpressionError):
        load_blueprint(data)


def test_s7_both_spellings_load() -> None:
    data = base_dict()
    data["edges"][0]["condition"] = (
        "(result.output?.total >= 1 && !(result.action === 'x')) or len(result.output.items) != 0"
    )
    assert load_blueprint(data).edges[0].condition == data["edges"][0]["condition"]


# --------------------------------------------------------------------------- cycles (§8)


def test_s8_cycle_without_loop_controller_is_rejected() -> None:
    data = {
        "id": "cyclic",
        "nodes": [
            {"id": "entry", "uses": "e"},
            {"id": "cyc_x", "uses": "x"},
            {"id": "cyc_y", "uses": "y"},
        ],
        "edges": [
            {"source": "entry", "target": "cyc_x"},
            {"source": "cyc_x", "target": "cyc_y"},
            {"source": "cyc_y", "target": "cyc_x"},
        ],
    }
    # nodes are searched in blueprint order, so the cycle is reported from cyc_x
    assert_blueprint_error(data, "cycle without a loop controller: cyc_x -> cyc_y -> cyc_x")


def test_s8_self_loop_without_controller_is_rejected() -> None:
    data = {
        "id": "selfloop",
        "nodes": [{"id": "me_node", "uses": "m"}],
        "edges": [{"source": "me_node", "target": "me_node"}],
    }
    assert_blueprint_error(data, "me_node")


def test_s8_cycle_through_loop_controller_is_accepted() -> None:
    data = {
        "id": "looping",
        "nodes": [
            {"id": "a", "uses": "a"},
            {"id": "b", "uses": "b"},
            {"id": "ctl", "uses": "loop-controller", "params": {"condition": "count < 3"}},
            {"id": "done", "uses": "d"},
        ],
        "edges": [
            {"source": "a", "target": "b"},
            {"source": "b", "target": "ctl"},
            {"source": "ctl", "target": "a", "action": "continue"},
            {"source": "ctl", "target": "done", "action": "break"},
        ],
    }
    bp = load_blueprint(data)
    assert [n.id for n in bp.nodes] == ["a", "b", "ctl", "done"]
    assert load_blueprint(bp.to_json()) == bp


# --------------------------------------------------------------------------- errors (§11)


def test_s11_error_hierarchy() -> None:
    assert issubclass(BlueprintError, FlowcraftError)
    assert issubclass(ExpressionError, FlowcraftError)


# --------------------------------------------------------------------------- TS shapes (issue 13)


def ts_batch(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "tsb",
        "nodes": [
            {"id": "a", "uses": "k:a"},
            {"id": "work_scatter", "uses": "batch-scatter", "inputs": "items",
             "params": {"workerUsesKey": "k:w", "outputKey": "out",
                        "gatherNodeId": "work_gather"}},
            {"id": "work_gather", "uses": "batch-gather",
             "params": {"outputKey": "out", "gatherNodeId": "work_gather"},
             "config": {"joinStrategy": "all"}},
        ],
        "edges": [{"source": "a", "target": "work_scatter"},
                  {"source": "work_scatter", "target": "work_gather"}],
    }
    data.update(changes)
    return data


def test_i13_ts_batch_pair_loads_strict() -> None:
    bp = load_blueprint(ts_batch(), strict=True)
    assert [n.uses for n in bp.nodes] == ["k:a", "batch-scatter", "batch-gather"]


def test_i13_batch_pair_normalizes_to_one_batch_node() -> None:
    from flowcraft.interop import normalize

    bp = normalize(load_blueprint(ts_batch()))
    assert [(n.id, n.uses, n.params) for n in bp.nodes] == [
        ("a", "k:a", {}),
        ("work", "batch", {"worker": "k:w", "inputKey": "items", "outputKey": "out"})]
    assert [(e.source, e.target) for e in bp.edges] == [("a", "work")]


def test_i13_batch_scatter_must_name_a_gather() -> None:
    data = ts_batch()
    data["nodes"][1]["params"]["gatherNodeId"] = "a"
    assert_blueprint_error(data, "params.gatherNodeId must name a batch-gather node at "
                           "`$.nodes[1]` (batch-scatter 'work_scatter')")


def test_i13_batch_gather_without_scatter_is_rejected() -> None:
    data = ts_batch()
    data["nodes"].append({"id": "lonely", "uses": "batch-gather"})
    assert_blueprint_error(data, "batch-gather 'lonely' at `$.nodes[3]` has no batch-scatter")


def test_i13_batch_scatter_with_a_second_edge_is_rejected() -> None:
    data = ts_batch()
    data["nodes"].append({"id": "side", "uses": "k:side"})
    data["edges"].append({"source": "work_scatter", "target": "side"})
    assert_blueprint_error(data, "a batch pair is wired scatter -> gather only",
                           "draw edges into the scatter and out of the gather")


def test_i13_batch_scatter_needs_a_worker_and_an_input_key() -> None:
    data = ts_batch()
    del data["nodes"][1]["params"]["workerUsesKey"]
    assert_blueprint_error(data, "params.workerUsesKey must be a uses key at `$.nodes[1]`")
    data = ts_batch()
    del data["nodes"][1]["inputs"]
    assert_blueprint_error(data, "inputs must be the context key of the item list at "
                           "`$.nodes[1]`")


def test_i13_ts_subflow_class_name_is_checked_as_a_subflow() -> None:
    data = {"id": "p", "nodes": [{"id": "sub", "uses": "SubflowNode", "params": {}}],
            "edges": []}
    assert_blueprint_error(data, "subflow needs a string blueprintId at `$.nodes[0].params`")


def via_controller(join: str | None) -> dict[str, Any]:
    controller: dict[str, Any] = {"id": "L", "uses": "loop-controller",
                                  "params": {"condition": "count < 3"}}
    if join:
        controller["config"] = {"joinStrategy": join}
    return {"id": "via", "nodes": [{"id": "pre", "uses": "k:pre"},
                                   {"id": "body", "uses": "k:body"}, controller,
                                   {"id": "post", "uses": "k:post"}],
            "edges": [{"source": "pre", "target": "L"},
                      {"source": "L", "target": "body", "action": "continue"},
                      {"source": "body", "target": "L"},
                      {"source": "L", "target": "post", "action": "break"}]}


def test_i13_loop_entered_through_an_any_controller_loads() -> None:
    bp = load_blueprint(via_controller("any"), strict=True)
    from flowcraft.interop import controller_entries

    assert controller_entries(bp) == {"L": [0]}


def test_i13_loop_entered_through_an_all_controller_is_rejected_with_what_to_do() -> None:
    assert_blueprint_error(
        via_controller(None),
        "loop controller 'L' is entered from 'pre' (`$.edges[0]`) but is an `all` join",
        'give the controller config.joinStrategy "any"',
        "or enter the loop through its start node")


def test_i13_loop_entered_both_ways_is_rejected() -> None:
    data = via_controller("any")
    data["edges"].append({"source": "pre", "target": "body"})
    assert_blueprint_error(
        data, "and its start node 'body' also from 'pre' (`$.edges[4]`): enter the loop one "
        "way")
