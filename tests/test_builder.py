"""Contract §3 (building flows) and §12.19 (Flow version)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import flows_for_tests
import pytest

from flowcraft import (
    BlueprintError,
    EdgeDefinition,
    Flow,
    FlowRuntime,
    Node,
    NodeConfig,
    NodeContext,
    WorkflowBlueprint,
    load_blueprint,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = Path(__file__).resolve().parent


async def fetch(ctx: NodeContext) -> Any:
    return {"total": 1}


async def charge(ctx: NodeContext) -> Any:
    return "charged"


def sync_node(ctx: NodeContext) -> Any:
    return "sync"


class ModuleLevelNode(Node):
    async def exec(self, prepared: Any, ctx: NodeContext) -> Any:
        return prepared


def key_of(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def nodes_by_id(bp: WorkflowBlueprint) -> dict[str, Any]:
    return {n.id: n for n in bp.nodes}


# --------------------------------------------------------------------------- basic building


def test_s3_to_blueprint_nodes_and_edges() -> None:
    flow = (
        Flow("order")
        .node("fetch", fetch, params={"limit": 5}, inputs="order_id")
        .node("charge", charge, inputs={"total": "fetch.total"}, config=NodeConfig(max_retries=3))
        .node("ship", sync_node)
        .edge("fetch", "charge", action="ok", condition="result.output.total > 0")
        .edge("charge", "ship", transform="input")
    )
    bp = flow.to_blueprint()
    assert isinstance(bp, WorkflowBlueprint)
    assert bp.id == "order"
    assert [n.id for n in bp.nodes] == ["fetch", "charge", "ship"]
    nodes = nodes_by_id(bp)
    assert nodes["fetch"].params == {"limit": 5}
    assert nodes["fetch"].inputs == "order_id"
    assert nodes["fetch"].config == NodeConfig()
    assert nodes["charge"].inputs == {"total": "fetch.total"}
    assert nodes["charge"].config.max_retries == 3
    assert nodes["ship"].params == {}
    assert nodes["ship"].inputs is None
    assert bp.edges == (
        EdgeDefinition(
            source="fetch", target="charge", action="ok", condition="result.output.total > 0"
        ),
        EdgeDefinition(source="charge", target="ship", transform="input"),
    )


def test_s3_blueprint_round_trips_through_json() -> None:
    bp = (
        Flow("rt", version="4")
        .node("a", fetch, max_retries=2, retry_delay=10)
        .node("b", charge, join="any")
        .edge("a", "b", action="x")
        .to_blueprint()
    )
    assert load_blueprint(bp.to_json()) == bp


def test_s3_to_blueprint_is_repeatable() -> None:
    flow = Flow("rep").node("a", fetch).node("b", lambda ctx: 1).edge("a", "b")
    assert flow.to_blueprint() == flow.to_blueprint()
    assert flow.to_blueprint().to_json() == flow.to_blueprint().to_json()


# --------------------------------------------------------------------------- uses keys / registry


def test_s3_uses_key_module_level_function() -> None:
    flow = Flow("f").node("fetch", fetch).node("s", sync_node)
    nodes = nodes_by_id(flow.to_blueprint())
    assert nodes["fetch"].uses == key_of(fetch)
    assert nodes["fetch"].uses.endswith(":fetch")
    assert nodes["s"].uses == key_of(sync_node)
    assert flow.registry[key_of(fetch)] is fetch
    assert flow.registry[key_of(sync_node)] is sync_node


def test_s3_uses_key_module_level_class() -> None:
    flow = Flow("f").node("cls", ModuleLevelNode)
    (node,) = flow.to_blueprint().nodes
    assert node.uses == key_of(ModuleLevelNode)
    assert node.uses.endswith(":ModuleLevelNode")
    assert flow.registry[node.uses] is ModuleLevelNode


def test_s3_uses_key_lambda_is_flow_and_node_id() -> None:
    lam = lambda ctx: 1  # noqa: E731
    flow = Flow("my-flow").node("step_one", lam)
    (node,) = flow.to_blueprint().nodes
    assert node.uses == "my-flow:step_one"
    assert flow.registry["my-flow:step_one"] is lam


def test_s3_uses_key_closure_is_flow_and_node_id() -> None:
    factor = 3

    async def inner(ctx: NodeContext) -> Any:
        return factor

    flow = Flow("closures").node("scaled", inner)
    (node,) = flow.to_blueprint().nodes
    assert node.uses == "closures:scaled"
    assert flow.registry["closures:scaled"] is inner


def test_s3_uses_key_local_class_is_flow_and_node_id() -> None:
    class LocalNode(Node):
        async def exec(self, prepared: Any, ctx: NodeContext) -> Any:
            return 1

    flow = Flow("locals").node("loc", LocalNode)
    (node,) = flow.to_blueprint().nodes
    assert node.uses == "locals:loc"
    assert flow.registry["locals:loc"] is LocalNode


def test_s3_two_lambdas_get_distinct_keys() -> None:
    a = lambda ctx: "a"  # noqa: E731
    b = lambda ctx: "b"  # noqa: E731
    flow = Flow("two").node("a", a).node("b", b).edge("a", "b")
    nodes = nodes_by_id(flow.to_blueprint())
    assert nodes["a"].uses == "two:a"
    assert nodes["b"].uses == "two:b"
    assert flow.registry["two:a"] is a
    assert flow.registry["two:b"] is b


def test_s3_explicit_uses_wins() -> None:
    lam = lambda ctx: 1  # noqa: E731
    flow = (
        Flow("explicit")
        .node("x", fetch, uses="custom.fetch")
        .node("y", lam, uses="custom.lambda")
        .edge("x", "y")
    )
    nodes = nodes_by_id(flow.to_blueprint())
    assert nodes["x"].uses == "custom.fetch"
    assert nodes["y"].uses == "custom.lambda"
    assert flow.registry["custom.fetch"] is fetch
    assert flow.registry["custom.lambda"] is lam
    assert key_of(fetch) not in flow.registry


def test_s3_same_function_twice_shares_key() -> None:
    flow = Flow("twice").node("a", fetch).node("b", fetch).edge("a", "b")
    nodes = nodes_by_id(flow.to_blueprint())
    assert nodes["a"].uses == nodes["b"].uses == key_of(fetch)
    assert flow.registry[key_of(fetch)] is fetch


def test_s3_registry_covers_every_uses_key() -> None:
    flow = flows_for_tests.build_flow()
    bp = flow.to_blueprint()
    for node in bp.nodes:
        assert node.uses in flow.registry, node.uses
        assert callable(flow.registry[node.uses])


def run_uses_subprocess(noise: bool, hash_seed: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR)])
    env["PYTHONHASHSEED"] = hash_seed
    code = f"import flows_for_tests; flows_for_tests.main(noise={noise!r})"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_s3_uses_keys_deterministic_across_processes() -> None:
    first = run_uses_subprocess(noise=False, hash_seed="1")
    second = run_uses_subprocess(noise=True, hash_seed="12345")
    assert first == second
    in_process = flows_for_tests.uses_keys(flows_for_tests.build_flow())
    assert first == in_process
    assert first == {
        "fetch": "flows_for_tests:fetch",
        "sync_total": "flows_for_tests:sync_total",
        "charge": "flows_for_tests:Charge",
        "lam": "sub-order:lam",
        "closure": "sub-order:closure",
        "explicit": "my.explicit.key",
    }


# --------------------------------------------------------------------------- config shortcuts


def test_s3_keyword_shortcuts_set_config() -> None:
    flow = (
        Flow("short")
        .node("a", fetch)
        .node("b", fetch)
        .node(
            "main",
            charge,
            max_retries=3,
            retry_delay=100,
            timeout=500,
            fallback="fb",
            join="any",
        )
        .node("fb", sync_node)
        .edge("a", "main")
        .edge("b", "main")
    )
    nodes = nodes_by_id(flow.to_blueprint())
    cfg = nodes["main"].config
    assert cfg == NodeConfig(
        max_retries=3, retry_delay=100, timeout=500, fallback="fb", join_strategy="any"
    )
    assert cfg.backoff == 2.0
    assert nodes["a"].config == NodeConfig()


def test_s3_config_object_is_used() -> None:
    cfg = NodeConfig(max_retries=5, retry_delay=20, backoff=3.0, timeout=900)
    flow = Flow("cfg").node("a", fetch, config=cfg)
    (node,) = flow.to_blueprint().nodes
    assert node.config == cfg


@pytest.mark.parametrize(
    ("kwargs", "attr", "value"),
    [
        ({"max_retries": 4}, "max_retries", 4),
        ({"retry_delay": 250}, "retry_delay", 250),
        ({"timeout": 75}, "timeout", 75),
        ({"join": "any"}, "join_strategy", "any"),
        ({"join": "all"}, "join_strategy", "all"),
    ],
)
def test_s3_single_keyword_shortcut(kwargs: dict[str, Any], attr: str, value: Any) -> None:
    (node,) = Flow("one").node("a", fetch, **kwargs).to_blueprint().nodes
    assert getattr(node.config, attr) == value


# --------------------------------------------------------------------------- bad wiring


def test_s3_edge_to_unknown_node_is_blueprint_error() -> None:
    with pytest.raises(BlueprintError) as info:
        Flow("bad").node("a", fetch).edge("a", "nowhere_node").to_blueprint()
    assert "nowhere_node" in str(info.value)


def test_s3_duplicate_node_id_is_blueprint_error() -> None:
    with pytest.raises(BlueprintError) as info:
        Flow("bad").node("twin_node", fetch).node("twin_node", charge).to_blueprint()
    assert "twin_node" in str(info.value)


def test_s3_unknown_fallback_is_blueprint_error() -> None:
    with pytest.raises(BlueprintError) as info:
        Flow("bad").node("a", fetch, fallback="no_such_fb").to_blueprint()
    assert "no_such_fb" in str(info.value)


def test_s3_cycle_is_blueprint_error() -> None:
    with pytest.raises(BlueprintError):
        (
            Flow("bad")
            .node("a", fetch)
            .node("b", charge)
            .node("c", sync_node)
            .edge("a", "b")
            .edge("b", "c")
            .edge("c", "b")
            .to_blueprint()
        )


def test_s3_bad_condition_is_blueprint_error() -> None:
    with pytest.raises(BlueprintError):
        (
            Flow("bad")
            .node("a", fetch)
            .node("b", charge)
            .edge("a", "b", condition="result.output ==")
            .to_blueprint()
        )


def test_s3_zero_max_retries_is_blueprint_error() -> None:
    with pytest.raises(BlueprintError):
        Flow("bad").node("a", fetch, max_retries=0).to_blueprint()


# --------------------------------------------------------------------------- mermaid


def test_s3_to_mermaid() -> None:
    flow = (
        Flow("mm")
        .node("fetch_order", fetch)
        .node("charge_card", charge)
        .node("ship_it", sync_node)
        .node("refund_it", lambda ctx: None)
        .edge("fetch_order", "charge_card", action="ok")
        .edge("fetch_order", "refund_it", action="bad")
        .edge("charge_card", "ship_it")
    )
    text = flow.to_mermaid()
    assert isinstance(text, str)
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].strip() == "flowchart TD"
    # a line per node in order, then a line per edge labelled with its action
    assert [line.strip() for line in lines[1:]] == [
        'fetch_order["fetch_order"]',
        'charge_card["charge_card"]',
        'ship_it["ship_it"]',
        'refund_it["refund_it"]',
        'fetch_order -- "ok" --> charge_card',
        'fetch_order -- "bad" --> refund_it',
        "charge_card --> ship_it",
    ]


# --------------------------------------------------------------------------- metadata / version


def test_s12_19_flow_version_sets_metadata() -> None:
    bp = Flow("versioned", version="2").node("a", fetch).to_blueprint()
    assert bp.metadata["version"] == "2"
    assert bp.id == "versioned"


def test_s12_19_flow_version_positional_id() -> None:
    flow = Flow("ids")
    bp = flow.node("a", fetch).to_blueprint()
    assert bp.id == "ids"
    assert bp.metadata.get("version") is None


# --------------------------------------------------------------------------- TS shapes (issue 13)


def test_i13_loop_is_written_as_the_ts_builder_writes_it() -> None:
    bp = (
        Flow("lp")
        .node("pre", "k:pre").node("body", "k:body").node("post", "k:post")
        .edge("pre", "body")
        .loop("L", start="body", end="body", condition="count < 3", max_iterations=7)
        .edge("L", "post")
        .to_blueprint()
    )
    data = json.loads(bp.to_json())
    assert data["nodes"] == [
        {"id": "pre", "uses": "k:pre"},
        # the start node's one entry is an `any` join: the TS runtime runs an `all` start node
        # only once the controller has run, which is never
        {"id": "body", "uses": "k:body", "config": {"joinStrategy": "any"}},
        {"id": "post", "uses": "k:post"},
        {"id": "L", "uses": "loop-controller",
         "params": {"condition": "count < 3", "maxIterations": 7},
         "config": {"joinStrategy": "any"}},
    ]
    assert data["edges"] == [
        {"source": "pre", "target": "body"},
        {"source": "body", "target": "L"},
        {"source": "L", "target": "body", "action": "continue", "transform": 'context["body"]'},
        {"source": "L", "target": "post", "action": "break", "transform": 'context["body"]'},
    ]


def test_i13_loop_exit_keeps_an_explicit_action_and_transform_and_edges_drawn_first() -> None:
    bp = (
        Flow("lp2")
        .node("a", "k:a").node("b", "k:b").node("x", "k:x").node("y", "k:y")
        .edge("L", "x", transform="input")  # drawn before the loop exists
        .edge("a", "b")
        .loop("L", start="a", end="b", condition="n < 2")
        .edge("L", "y", action="done")
        .to_blueprint()
    )
    exits = [(e.target, e.action, e.transform) for e in bp.edges
             if e.source == "L" and e.action != "continue"]
    assert exits == [("x", "break", "input"), ("y", "done", 'context["b"]')]
    # `a` has no entry edge at all (the flow begins with the loop): its join is left alone
    assert bp.node("a").config.join_strategy == "all"


def test_i13_loop_start_with_two_entries_stays_an_all_join() -> None:
    bp = (
        Flow("lp3")
        .node("p", "k:p").node("q", "k:q").node("s", "k:s")
        .edge("p", "s").edge("q", "s")
        .loop("L", start="s", end="s", condition="n < 2")
        .to_blueprint()
    )
    assert bp.node("s").config.join_strategy == "all"


def test_i13_batch_is_a_scatter_gather_pair_with_rewired_edges() -> None:
    bp = (
        Flow("bt")
        .node("a", "k:a")
        .edge("a", "work")  # drawn before the batch exists
        .batch("work", "k:double", input_key="items", output_key="doubled", concurrency=3,
               max_retries=2)
        .node("sum", "k:sum")
        .edge("work", "sum")
        .to_blueprint()
    )
    data = json.loads(bp.to_json())
    assert data["nodes"][1:3] == [
        {"id": "work_scatter", "uses": "batch-scatter", "inputs": "items",
         "params": {"workerUsesKey": "k:double", "outputKey": "doubled",
                    "gatherNodeId": "work_gather", "concurrency": 3},
         "config": {"maxRetries": 2}},
        {"id": "work_gather", "uses": "batch-gather",
         "params": {"outputKey": "doubled", "gatherNodeId": "work_gather"}},
    ]
    assert [(e["source"], e["target"]) for e in data["edges"]] == [
        ("a", "work_scatter"), ("work_scatter", "work_gather"), ("work_gather", "sum")]


def test_i13_batch_default_output_key_is_the_batch_id_and_loops_read_it() -> None:
    bp = (
        Flow("bl")
        .node("bump", "k:bump")
        .batch("work", "k:w", input_key="items")
        .edge("bump", "work")
        .loop("lp", start="bump", end="work", condition="n < 3")
        .node("after", "k:after", fallback="work")
        .edge("lp", "after")
        .to_blueprint()
    )
    assert bp.node("work_scatter").params["outputKey"] == "work"
    assert [(e.source, e.target, e.transform) for e in bp.edges if e.source == "lp"] == [
        ("lp", "bump", 'context["work"]'), ("lp", "after", 'context["work"]')]
    assert ("work_gather", "lp") in [(e.source, e.target) for e in bp.edges]
    assert bp.node("after").config.fallback == "work_scatter"


async def test_i13_builder_batch_runs_under_its_batch_id() -> None:
    async def double(ctx: NodeContext) -> int:
        return int(ctx.input) * 2

    async def total(ctx: NodeContext) -> int:
        return sum(ctx.input)

    flow = (Flow("bt_run").batch("work", double, input_key="items")
            .node("sum", total).edge("work", "sum"))
    result = await FlowRuntime().run(flow, context={"items": [1, 2, 3]})
    assert result.status == "completed"
    assert (result.context["work"], result.context["sum"]) == ([2, 4, 6], 12)
    assert sorted(k for k in result.context if k.startswith("work")) == ["work"]
