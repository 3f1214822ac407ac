"""The interchange cases built with our builder (ts_cases.mjs builds them with the TS builder),
and the expected outcome of each: equal in both runtimes, or a deliberate difference that names
the contract clause. Node implementations are the plain keys of interop_functions.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowcraft import Flow

MISSING = "<missing>"


class Differs:
    """A deliberate difference: `keys` maps a context key to (ours, TS); every other key, and
    the status unless `status` gives (ours, TS), must still be equal."""

    def __init__(self, clause: str, keys: dict[str, tuple[Any, Any]],
                 status: tuple[str, str] | None = None) -> None:
        self.clause = clause
        self.keys = keys
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {"clause": self.clause, "keys": {k: list(v) for k, v in self.keys.items()},
                "status": list(self.status) if self.status else None}


SAME = None
TS_SUBFLOW_OUTPUT = {"x": 2, "_outputs.seed": 2, "seed": 2, "_inputs.child_out": 2,
                     "_outputs.child_out": 7, "child_out": 7}
OUR_SUBFLOW_OUTPUT = {"x": 2, "seed": 2, "child_out": 7}

EXPECTED: dict[str, Differs | None] = {
    "chain": SAME,
    "all_join": SAME,
    "join_input": Differs(
        "§4 Inputs: a join node gets dict[predecessor_id, output], never the last finisher's",
        {"d": ({"b": 2, "c": 11}, 11)}),
    "any_join_one_branch": SAME,
    "any_join_twice": Differs(
        "§6 Joins: `any` runs once, when its first incoming edge is taken",
        {"d": (1, 2), "tally": (1, 2)}),
    "ifelse_all_merge": Differs(
        "§6 Joins: an if/else that merges into an `all` join runs the join once",
        {"d": (2, MISSING), "e": (2, MISSING)}),
    "routing_action": SAME,
    "unmatched_action": Differs(
        "§6 Routing: an unmatched action never runs every successor",
        {"yes": (MISSING, 1), "no": (MISSING, -1)}),
    "conditions_transform": SAME,
    "retries": SAME,
    "failure": SAME,
    "timeout": Differs(
        "§2 NodeConfig.timeout, §6 Retries and timeouts: timeouts are enforced",
        {"slow": (MISSING, "slow done"), "after": (MISSING, "slow done")},
        status=("failed", "completed")),
    "fallback": SAME,
    "sleep": SAME,
    "wait": SAME,
    "wait_action": Differs(
        "§8 wait: resume(..., action=) routes on the action (TS 2.10.1's resume drops it)",
        {"yes": ("fine", MISSING)}),
    "loop": SAME,
    "loop_two_nodes": SAME,
    "loop_start_all": Differs(
        "§8 loop: the edge back into `start` never blocks the first iteration",
        {"count": (3, MISSING), "body": (3, MISSING), "L": (None, MISSING),
         "post": (3, MISSING)}),
    "loop_via_controller": SAME,
    "batch": SAME,
    "batch_concurrency": SAME,
    "subflow": Differs(
        "§12.11 Subflow: the subflow node's output is the child's final context without "
        "`_`-prefixed keys",
        {"sub": (OUR_SUBFLOW_OUTPUT, TS_SUBFLOW_OUTPUT),
         "after": (OUR_SUBFLOW_OUTPUT, TS_SUBFLOW_OUTPUT)}),
}


class Case:
    def __init__(self, about: str, flow: Flow, context: dict[str, Any],
                 resume: list[dict[str, Any]] | None = None,
                 children: list[Flow] | None = None) -> None:
        self.about = about
        self.flow = flow
        self.context = context
        self.resume = resume or []
        self.children = children or []


def _diamond(name: str, impl: str, **join_kw: Any) -> Flow:
    return (Flow(name).node("a", "seed").node("b", "add", params={"by": 1})
            .node("c", "add", params={"by": 10}).node("d", impl, **join_kw)
            .edge("a", "b").edge("a", "c").edge("b", "d").edge("c", "d"))


def _ifelse(name: str, impl: str, **join_kw: Any) -> Flow:
    return (Flow(name).node("a", "seed").node("b", "add", params={"by": 1})
            .node("c", "add", params={"by": 10}).node("d", impl, **join_kw).node("e", "echo")
            .edge("a", "b", condition="x > 0").edge("a", "c", condition="x <= 0")
            .edge("b", "d").edge("c", "d").edge("d", "e"))


def _decide(name: str) -> Flow:
    return (Flow(name).node("a", "seed").node("decide", "pick")
            .node("yes", "add", params={"by": 1}).node("no", "add", params={"by": -1})
            .edge("a", "decide").edge("decide", "yes", action="approve")
            .edge("decide", "no", action="reject"))


def _then(name: str, node: str, **kw: Any) -> Flow:
    return (Flow(name).node("a", "seed").node(node.split(":")[0], node.split(":")[1], **kw)
            .node("after", "echo").edge("a", node.split(":")[0])
            .edge(node.split(":")[0], "after"))


def _loop(name: str) -> Flow:
    return (Flow(name).node("pre", "seed").node("body", "count").node("post", "echo")
            .edge("pre", "body").loop("L", start="body", end="body", condition="count < 3")
            .edge("L", "post"))


CASES: dict[str, Callable[[], Case]] = {
    "chain": lambda: Case("a three-node chain", Flow("chain").node("a", "seed")
                          .node("b", "add", params={"by": 2}).node("c", "add", params={"by": 3})
                          .edge("a", "b").edge("b", "c"), {"x": 1}),
    "all_join": lambda: Case(
        "a diamond into an `all` join that reads its inputs from the context",
        _diamond("all_join", "sumkeys", params={"keys": ["b", "c"]}).node("e", "echo")
        .edge("d", "e"), {"x": 1}),
    "join_input": lambda: Case("a diamond whose join echoes its input",
                               _diamond("join_input", "echo"), {"x": 1}),
    "any_join_one_branch": lambda: Case(
        "an if/else into an `any` join: one branch is taken",
        _ifelse("any_join_one_branch", "count", params={"key": "tally"}, join="any"), {"x": 1}),
    "any_join_twice": lambda: Case(
        "two branches of different length into an `any` join",
        Flow("any_join_twice").node("a", "seed").node("b", "add", params={"by": 1})
        .node("c", "add", params={"by": 10}).node("c2", "add", params={"by": 100})
        .node("d", "count", params={"key": "tally"}, join="any").node("e", "echo")
        .edge("a", "b").edge("a", "c").edge("c", "c2").edge("b", "d").edge("c2", "d")
        .edge("d", "e"), {"x": 1}),
    "ifelse_all_merge": lambda: Case(
        "an if/else merging into an `all` join",
        _ifelse("ifelse_all_merge", "sumkeys", params={"keys": ["b", "c"]}), {"x": 1}),
    "routing_action": lambda: Case("routing by the action a node returns",
                                   _decide("routing_action"), {"x": 5, "choice": "approve"}),
    "unmatched_action": lambda: Case("an action that no edge names",
                                     _decide("unmatched_action"), {"x": 5, "choice": "maybe"}),
    "conditions_transform": lambda: Case(
        "edge conditions over `result` and the context, and an edge transform",
        Flow("conditions_transform").node("a", "seed").node("big", "add", params={"by": 1})
        .node("small", "add", params={"by": 2})
        .edge("a", "big", condition="result.output > 5")
        .edge("a", "small", condition="result.output <= 5 && x == 3", transform="input * 10"),
        {"x": 3}),
    "retries": lambda: Case(
        "a node that fails twice and succeeds on its third and last attempt",
        _then("retries", "f:flaky", params={"name": "f", "failures": 2}, max_retries=3),
        {"x": 1}),
    "failure": lambda: Case(
        "a node that fails all its attempts",
        _then("failure", "f:flaky", params={"name": "f", "failures": 5}, max_retries=2),
        {"x": 1}),
    "timeout": lambda: Case("a node slower than its 50 ms timeout",
                            _then("timeout", "slow:slow", params={"ms": 300}, timeout=50),
                            {"x": 1}),
    "fallback": lambda: Case(
        "a failing node rescued by its fallback node",
        _then("fallback", "risky:boom", max_retries=2, fallback="rescue")
        .node("rescue", "rescue"), {"x": 1}),
    "sleep": lambda: Case(
        "a 10 ms sleep between two nodes (TS pauses the run; resumed once)",
        Flow("sleep").node("a", "seed").sleep("nap", duration=10).node("after", "echo")
        .edge("a", "nap").edge("nap", "after"), {"x": 4}, [{"nodeId": "nap"}]),
    "wait": lambda: Case(
        "a wait resumed with an output",
        Flow("wait").node("a", "seed").wait("approval").node("after", "echo")
        .edge("a", "approval").edge("approval", "after"), {"x": 4},
        [{"nodeId": "approval", "output": {"ok": True}}]),
    "wait_action": lambda: Case(
        "a wait resumed with an action that picks the branch",
        Flow("wait_action").node("a", "seed").wait("approval").node("yes", "echo")
        .node("no", "echo").edge("a", "approval").edge("approval", "yes", action="approve")
        .edge("approval", "no", action="reject"), {"x": 4},
        [{"nodeId": "approval", "output": "fine", "action": "approve"}]),
    "loop": lambda: Case("a do-while loop entered through its start node, left by a break edge",
                         _loop("loop"), {"x": 1}),
    "loop_two_nodes": lambda: Case(
        "a do-while loop whose body is two nodes",
        Flow("loop_two_nodes").node("pre", "seed").node("step", "count")
        .node("scaled", "add", params={"by": 100}).node("post", "echo")
        .edge("pre", "step").edge("step", "scaled")
        .loop("L", start="step", end="scaled", condition="count < 4").edge("L", "post"),
        {"x": 1}),
    "batch": lambda: Case(
        "a batch (scatter/gather pair) doubling a list, then a sum",
        Flow("batch").node("a", "seed")
        .batch("work", "double", input_key="items", output_key="doubled")
        .node("sum", "total").edge("a", "work").edge("work", "sum"),
        {"x": 1, "items": [1, 2, 3, 4]}),
    "batch_concurrency": lambda: Case(
        "a batch with concurrency 2 and the default output key (the batch id)",
        Flow("batch_concurrency").node("a", "seed")
        .batch("work", "double", input_key="items", concurrency=2)
        .node("sum", "total").edge("a", "work").edge("work", "sum"),
        {"x": 1, "items": [1, 2, 3, 4, 5]}),
    "subflow": lambda: Case(
        "a subflow with inputs and outputs mappings",
        Flow("subflow").node("a", "seed")
        .subflow("sub", blueprint_id="child", inputs={"x": "x"}, outputs={"y": "child_out"})
        .node("after", "echo").edge("a", "sub").edge("sub", "after"), {"x": 2},
        children=[Flow("child").node("seed", "seed").node("child_out", "add", params={"by": 5})
                  .edge("seed", "child_out")]),
}
