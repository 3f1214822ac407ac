"""flowcraft.analysis: graph facts and the linter."""

from __future__ import annotations

import pytest

from flowcraft import BlueprintError, Flow, NodeContext, load_blueprint
from flowcraft.analysis import lint, predecessors, start_nodes, successors, terminal_nodes


async def noop(ctx: NodeContext) -> None:
    return None


def diamond() -> Flow:
    return (Flow("d").node("a", noop).node("b", noop).node("c", noop).node("d", noop)
            .edge("a", "b").edge("a", "c").edge("b", "d").edge("c", "d"))


def test_graph_facts_of_a_diamond() -> None:
    bp = diamond().to_blueprint()
    assert start_nodes(bp) == ["a"]
    assert terminal_nodes(bp) == ["d"]
    assert predecessors(bp)["d"] == ["b", "c"]
    assert successors(bp)["a"] == ["b", "c"]


def test_loop_back_edge_does_not_hide_the_start_node() -> None:
    bp = (Flow("l").node("a", noop).loop("L", start="a", end="a", condition="false")
          .node("z", noop).edge("L", "z").to_blueprint())
    assert start_nodes(bp) == ["a"]
    assert terminal_nodes(bp) == ["z"]


def test_fallback_node_is_never_a_start_node() -> None:
    bp = Flow("f").node("a", noop, fallback="fb").node("fb", noop).to_blueprint()
    assert start_nodes(bp) == ["a"]


def test_lint_of_a_good_flow_is_empty() -> None:
    flow = diamond()
    assert lint(flow.to_blueprint(), flow.registry) == []


def test_lint_reports_every_problem_at_once() -> None:
    data = {
        "id": "bad",
        "nodes": [
            {"id": "a", "uses": "tests:missing"},
            {"id": "b", "uses": "tests:noop", "config": {"fallback": "ghost"}},
            {"id": "lonely", "uses": "tests:noop"},
            {"id": "a", "uses": "tests:noop"},
        ],
        "edges": [
            {"source": "a", "target": "b", "condition": "result.output >"},
            {"source": "b", "target": "nowhere"},
        ],
    }
    issues = lint(data, registry={"tests:noop": noop})
    codes = sorted(issue.code for issue in issues)
    assert codes == ["bad-expression", "duplicate-id", "missing-implementation",
                     "orphan-node", "unknown-fallback", "unknown-node"]
    by_code = {issue.code: issue for issue in issues}
    assert "nowhere" in by_code["unknown-node"].message
    assert by_code["missing-implementation"].node_id == "a"
    assert by_code["orphan-node"].node_id == "lonely"


def test_lint_reports_a_cycle_without_loop_controller() -> None:
    data = {"id": "c", "nodes": [{"id": "a", "uses": "x"}, {"id": "b", "uses": "x"}],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}]}
    issues = lint(data)
    assert [i.code for i in issues] == ["cycle"]
    # the search starts from the first node in blueprint order
    assert issues[0].message == "cycle without a loop controller: a -> b -> a"
    with pytest.raises(BlueprintError, match="cycle"):
        load_blueprint(data)


def test_lint_rejects_data_that_is_not_a_blueprint() -> None:
    with pytest.raises(BlueprintError):
        lint(b"{not json")
    with pytest.raises(BlueprintError):
        lint({"id": 3, "nodes": "x"})


# --------------------------------------------------------------------------- TS shapes (issue 13)


def test_lint_accepts_a_ts_batch_pair_and_checks_its_worker_key() -> None:
    data = {"id": "tsb", "nodes": [
        {"id": "work_scatter", "uses": "batch-scatter", "inputs": "items",
         "params": {"workerUsesKey": "fn_worker", "outputKey": "out",
                    "gatherNodeId": "work_gather"}},
        {"id": "work_gather", "uses": "batch-gather", "params": {"gatherNodeId": "work_gather"}}],
        "edges": [{"source": "work_scatter", "target": "work_gather"}]}
    assert lint(data, registry={"fn_worker": noop}) == []
    issues = lint(data, registry={})
    assert [(i.code, i.message) for i in issues] == [
        ("missing-implementation",
         "node 'work_scatter' uses 'fn_worker', which no registry entry provides")]


def test_lint_reports_a_bad_batch_pair_and_a_loop_entered_through_an_all_controller() -> None:
    data = {"id": "bad", "nodes": [
        {"id": "g", "uses": "batch-gather"},
        {"id": "pre", "uses": "k"}, {"id": "body", "uses": "k"},
        {"id": "L", "uses": "loop-controller", "params": {"condition": "n < 2"}}],
        "edges": [{"source": "pre", "target": "L"},
                  {"source": "L", "target": "body", "action": "continue"},
                  {"source": "body", "target": "L"}]}
    issues = lint(data)
    assert [i.code for i in issues] == ["orphan-node", "ts-shape", "loop-entry"]
    del issues[0]
    assert issues[0].message == ("batch-gather 'g' at `$.nodes[0]` has no batch-scatter naming "
                                 "it in params.gatherNodeId")
    assert issues[1].message.startswith(
        "loop controller 'L' is entered from 'pre' (`$.edges[0]`) but is an `all` join")


def test_start_nodes_of_a_loop_entered_through_its_controller() -> None:
    data = {"id": "via", "nodes": [
        {"id": "pre", "uses": "k"}, {"id": "body", "uses": "k"},
        {"id": "L", "uses": "loop-controller", "params": {"condition": "n < 2"},
         "config": {"joinStrategy": "any"}}],
        "edges": [{"source": "pre", "target": "L"},
                  {"source": "L", "target": "body", "action": "continue"},
                  {"source": "body", "target": "L"}]}
    assert start_nodes(load_blueprint(data)) == ["pre"]
