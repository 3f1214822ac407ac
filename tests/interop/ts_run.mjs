// Runs a blueprint in the TypeScript runtime, resumes it as a case says, and returns a result
// that can be committed: random ids (execution ids, batch uuids) are replaced by fixed text.
import { FlowRuntime, UnsafeEvaluator } from "flowcraft";

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

export function stable(value) {
	if (typeof value === "string") return TIME.test(value) ? "<time>" : value.replace(UUID, "<uuid>");
	if (Array.isArray(value)) return value.map(stable);
	if (value && typeof value === "object") {
		const out = {};
		for (const [k, v] of Object.entries(value)) if (k !== "_executionId") out[stable(k)] = stable(v);
		return out;
	}
	return value;
}

function summary(result) {
	const ctx = result.context ?? {};
	return {
		status: result.status,
		context: stable(ctx),
		errors: (result.errors ?? []).map((e) => ({ nodeId: e.nodeId ?? null, message: e.message })),
		awaiting: ctx._awaitingNodeIds ?? [],
	};
}

// registry: usesKey -> function or class; children: blueprints a subflow may run
export async function runInTs(blueprint, registry, { context = {}, resume = [], children = [] } = {}) {
	const blueprints = Object.fromEntries(children.map((bp) => [bp.id, bp]));
	// The default PropertyEvaluator reads property paths only ("x > 0" is rejected), which would
	// leave even the TS builder's own loops (`context["end"]` transforms) broken; TS users who
	// write conditions configure the UnsafeEvaluator, and so do we.
	const runtime = new FlowRuntime({ blueprints, evaluator: new UnsafeEvaluator() });
	const functionRegistry = new Map(Object.entries(registry));
	const phases = [];
	let result;
	try {
		result = await runtime.run(structuredClone(blueprint), structuredClone(context), { functionRegistry });
	} catch (error) {
		return { status: "threw", error: String(error?.message ?? error), phases };
	}
	for (const step of resume) {
		if (result.status !== "awaiting") break;
		phases.push(summary(result));
		await new Promise((r) => setTimeout(r, 20));
		const data = { output: step.output };
		if (step.action !== undefined) data.action = step.action;
		try {
			result = await runtime.resume(structuredClone(blueprint), result.serializedContext, data, step.nodeId, { functionRegistry });
		} catch (error) {
			return { status: "threw", error: String(error?.message ?? error), phases };
		}
	}
	return { ...summary(result), phases };
}
