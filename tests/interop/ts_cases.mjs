// The interchange cases as the TypeScript builder writes them. tests/interop/py_cases.py builds
// the same flows with ours. Each case: build(F) -> {flow, children?, context, resume?}, where F
// holds this run's node functions (functions.mjs) and `resume` lists resume calls made in turn.
import { createFlow, SubflowNode } from "flowcraft";

const child = (F) =>
	createFlow("child").node("seed", F.seed).node("child_out", F.add, { params: { by: 5 } }).edge("seed", "child_out");

export const cases = {
	chain: {
		about: "a three-node chain",
		build: (F) => ({
			flow: createFlow("chain")
				.node("a", F.seed)
				.node("b", F.add, { params: { by: 2 } })
				.node("c", F.add, { params: { by: 3 } })
				.edge("a", "b")
				.edge("b", "c"),
			context: { x: 1 },
		}),
	},
	all_join: {
		about: "a diamond into an `all` join that reads its inputs from the context",
		build: (F) => ({
			flow: createFlow("all_join")
				.node("a", F.seed)
				.node("b", F.add, { params: { by: 1 } })
				.node("c", F.add, { params: { by: 10 } })
				.node("d", F.sumkeys, { params: { keys: ["b", "c"] }, config: { joinStrategy: "all" } })
				.node("e", F.echo)
				.edge("a", "b")
				.edge("a", "c")
				.edge("b", "d")
				.edge("c", "d")
				.edge("d", "e"),
			context: { x: 1 },
		}),
	},
	join_input: {
		about: "a diamond whose join echoes its input",
		build: (F) => ({
			flow: createFlow("join_input")
				.node("a", F.seed)
				.node("b", F.add, { params: { by: 1 } })
				.node("c", F.add, { params: { by: 10 } })
				.node("d", F.echo)
				.edge("a", "b")
				.edge("a", "c")
				.edge("b", "d")
				.edge("c", "d"),
			context: { x: 1 },
		}),
	},
	any_join_one_branch: {
		about: "an if/else into an `any` join: one branch is taken",
		build: (F) => ({
			flow: createFlow("any_join_one_branch")
				.node("a", F.seed)
				.node("b", F.add, { params: { by: 1 } })
				.node("c", F.add, { params: { by: 10 } })
				.node("d", F.count, { params: { key: "tally" }, config: { joinStrategy: "any" } })
				.node("e", F.echo)
				.edge("a", "b", { condition: "x > 0" })
				.edge("a", "c", { condition: "x <= 0" })
				.edge("b", "d")
				.edge("c", "d")
				.edge("d", "e"),
			context: { x: 1 },
		}),
	},
	any_join_twice: {
		about: "two branches of different length into an `any` join",
		build: (F) => ({
			flow: createFlow("any_join_twice")
				.node("a", F.seed)
				.node("b", F.add, { params: { by: 1 } })
				.node("c", F.add, { params: { by: 10 } })
				.node("c2", F.add, { params: { by: 100 } })
				.node("d", F.count, { params: { key: "tally" }, config: { joinStrategy: "any" } })
				.node("e", F.echo)
				.edge("a", "b")
				.edge("a", "c")
				.edge("c", "c2")
				.edge("b", "d")
				.edge("c2", "d")
				.edge("d", "e"),
			context: { x: 1 },
		}),
	},
	ifelse_all_merge: {
		about: "an if/else merging into an `all` join",
		build: (F) => ({
			flow: createFlow("ifelse_all_merge")
				.node("a", F.seed)
				.node("b", F.add, { params: { by: 1 } })
				.node("c", F.add, { params: { by: 10 } })
				.node("d", F.sumkeys, { params: { keys: ["b", "c"] } })
				.node("e", F.echo)
				.edge("a", "b", { condition: "x > 0" })
				.edge("a", "c", { condition: "x <= 0" })
				.edge("b", "d")
				.edge("c", "d")
				.edge("d", "e"),
			context: { x: 1 },
		}),
	},
	routing_action: {
		about: "routing by the action a node returns",
		build: (F) => ({
			flow: createFlow("routing_action")
				.node("a", F.seed)
				.node("decide", F.pick)
				.node("yes", F.add, { params: { by: 1 } })
				.node("no", F.add, { params: { by: -1 } })
				.edge("a", "decide")
				.edge("decide", "yes", { action: "approve" })
				.edge("decide", "no", { action: "reject" }),
			context: { x: 5, choice: "approve" },
		}),
	},
	unmatched_action: {
		about: "an action that no edge names",
		build: (F) => ({
			flow: createFlow("unmatched_action")
				.node("a", F.seed)
				.node("decide", F.pick)
				.node("yes", F.add, { params: { by: 1 } })
				.node("no", F.add, { params: { by: -1 } })
				.edge("a", "decide")
				.edge("decide", "yes", { action: "approve" })
				.edge("decide", "no", { action: "reject" }),
			context: { x: 5, choice: "maybe" },
		}),
	},
	conditions_transform: {
		about: "edge conditions over `result` and the context, and an edge transform",
		build: (F) => ({
			flow: createFlow("conditions_transform")
				.node("a", F.seed)
				.node("big", F.add, { params: { by: 1 } })
				.node("small", F.add, { params: { by: 2 } })
				.edge("a", "big", { condition: "result.output > 5" })
				.edge("a", "small", { condition: "result.output <= 5 && x == 3", transform: "input * 10" }),
			context: { x: 3 },
		}),
	},
	retries: {
		about: "a node that fails twice and succeeds on its third and last attempt",
		build: (F) => ({
			flow: createFlow("retries")
				.node("a", F.seed)
				.node("f", F.flaky, { params: { name: "f", failures: 2 }, config: { maxRetries: 3 } })
				.node("after", F.echo)
				.edge("a", "f")
				.edge("f", "after"),
			context: { x: 1 },
		}),
	},
	failure: {
		about: "a node that fails all its attempts",
		build: (F) => ({
			flow: createFlow("failure")
				.node("a", F.seed)
				.node("f", F.flaky, { params: { name: "f", failures: 5 }, config: { maxRetries: 2 } })
				.node("after", F.echo)
				.edge("a", "f")
				.edge("f", "after"),
			context: { x: 1 },
		}),
	},
	timeout: {
		about: "a node slower than its 50 ms timeout",
		build: (F) => ({
			flow: createFlow("timeout")
				.node("a", F.seed)
				.node("slow", F.slow, { params: { ms: 300 }, config: { timeout: 50 } })
				.node("after", F.echo)
				.edge("a", "slow")
				.edge("slow", "after"),
			context: { x: 1 },
		}),
	},
	fallback: {
		about: "a failing node rescued by its fallback node",
		build: (F) => ({
			flow: createFlow("fallback")
				.node("a", F.seed)
				.node("risky", F.boom, { config: { maxRetries: 2, fallback: "rescue" } })
				.node("rescue", F.rescue)
				.node("after", F.echo)
				.edge("a", "risky")
				.edge("risky", "after"),
			context: { x: 1 },
		}),
	},
	sleep: {
		about: "a 10 ms sleep between two nodes (TS pauses the run; resumed once)",
		build: (F) => ({
			flow: createFlow("sleep").node("a", F.seed).sleep("nap", { duration: 10 }).node("after", F.echo).edge("a", "nap").edge("nap", "after"),
			context: { x: 4 },
			resume: [{ nodeId: "nap" }],
		}),
	},
	wait: {
		about: "a wait resumed with an output",
		build: (F) => ({
			flow: createFlow("wait").node("a", F.seed).wait("approval").node("after", F.echo).edge("a", "approval").edge("approval", "after"),
			context: { x: 4 },
			resume: [{ nodeId: "approval", output: { ok: true } }],
		}),
	},
	wait_action: {
		about: "a wait resumed with an action that picks the branch",
		build: (F) => ({
			flow: createFlow("wait_action")
				.node("a", F.seed)
				.wait("approval")
				.node("yes", F.echo)
				.node("no", F.echo)
				.edge("a", "approval")
				.edge("approval", "yes", { action: "approve" })
				.edge("approval", "no", { action: "reject" }),
			context: { x: 4 },
			resume: [{ nodeId: "approval", output: "fine", action: "approve" }],
		}),
	},
	loop: {
		about: "a do-while loop entered through its start node (an `any` join, so the TS runtime starts it)",
		build: (F) => ({
			flow: createFlow("loop")
				.node("pre", F.seed)
				.node("body", F.count, { config: { joinStrategy: "any" } })
				.node("post", F.echo)
				.loop("L", { startNodeId: "body", endNodeId: "body", condition: "count < 3" })
				.edge("pre", "body")
				.edge("L", "post"),
			context: { x: 1 },
		}),
	},
	loop_two_nodes: {
		about: "a do-while loop whose body is two nodes",
		build: (F) => ({
			flow: createFlow("loop_two_nodes")
				.node("pre", F.seed)
				.node("step", F.count, { config: { joinStrategy: "any" } })
				.node("scaled", F.add, { params: { by: 100 } })
				.node("post", F.echo)
				.edge("pre", "step")
				.edge("step", "scaled")
				.loop("L", { startNodeId: "step", endNodeId: "scaled", condition: "count < 4" })
				.edge("L", "post"),
			context: { x: 1 },
		}),
	},
	loop_start_all: {
		about: "a loop entered through its start node left as an `all` join (the TS builder's default)",
		build: (F) => ({
			flow: createFlow("loop_start_all")
				.node("pre", F.seed)
				.node("body", F.count)
				.node("post", F.echo)
				.loop("L", { startNodeId: "body", endNodeId: "body", condition: "count < 3" })
				.edge("pre", "body")
				.edge("L", "post"),
			context: { x: 1 },
		}),
	},
	loop_via_controller: {
		about: "a loop entered through its controller, as the reference's own loop tests wire it",
		build: (F) => ({
			flow: createFlow("loop_via_controller")
				.node("pre", F.seed)
				.node("body", F.count)
				.node("post", F.echo)
				.loop("L", { startNodeId: "body", endNodeId: "body", condition: "count < 3" })
				.edge("pre", "L")
				.edge("L", "post"),
			context: { x: 1, count: 0 },
		}),
	},
	batch: {
		about: "a batch (scatter/gather pair) doubling a list, then a sum",
		build: (F) => ({
			flow: createFlow("batch")
				.node("a", F.seed)
				.batch("work", F.double, { inputKey: "items", outputKey: "doubled" })
				.node("sum", F.total)
				.edge("a", "work")
				.edge("work", "sum"),
			context: { x: 1, items: [1, 2, 3, 4] },
		}),
	},
	subflow: {
		about: "a subflow with inputs and outputs mappings",
		build: (F) => ({
			flow: createFlow("subflow")
				.node("a", F.seed)
				.node("sub", SubflowNode, { params: { blueprintId: "child", inputs: { x: "x" }, outputs: { y: "child_out" } } })
				.node("after", F.echo)
				.edge("a", "sub")
				.edge("sub", "after"),
			children: [child(F)],
			context: { x: 2 },
		}),
	},
};
