// Runs OUR builder's blueprints (exported/*.json, written by export_ours.py) in the TypeScript
// runtime (flowcraft 2.10.1) with the same node functions, compares each result with ours and
// prints one row per case. Exit code 1 if a case neither matches nor differs exactly as the
// contract clause in its `expect` says.
// Usage: node run_exported.mjs [DIR]
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { SubflowNode } from "flowcraft";
import { makeFunctions } from "./functions.mjs";
import { runInTs } from "./ts_run.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const dir = process.argv[2] ?? join(here, "exported");
const MISSING = "<missing>";

function canonical(value) {
	if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
	if (value && typeof value === "object")
		return `{${Object.keys(value)
			.sort()
			.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
			.join(",")}}`;
	return JSON.stringify(value ?? null);
}
const equal = (a, b) => canonical(a) === canonical(b);

// The keys both runtimes write (tests/interop/interop_run.py `comparable`, the same rules).
function comparable(context, blueprint) {
	const dropped = new Set();
	const prefixes = [];
	for (const node of blueprint.nodes) {
		if (node.uses !== "batch-scatter") continue;
		const s = node.id;
		const g = node.params.gatherNodeId;
		for (const k of [s, g, `${s}_currentIndex`, `${g}_hasMore`, `${g}_allWorkerIds`]) dropped.add(k);
		const base = s.endsWith("_scatter") ? s.slice(0, -"_scatter".length) : g;
		if ((node.params.outputKey ?? base) !== base) dropped.add(base);
		prefixes.push(`${node.params.workerUsesKey}_`);
	}
	const out = {};
	for (const [k, v] of Object.entries(context))
		if (!k.startsWith("_") && !dropped.has(k) && !prefixes.some((p) => k.startsWith(p))) out[k] = v;
	return out;
}

function verdict(data, ts) {
	const ours = data.py_result;
	if (ts.status === "threw") return [false, `TS threw: ${ts.error}`];
	const mine = comparable(ours.context, data.blueprint);
	const theirs = comparable(ts.context, data.blueprint);
	const expect = data.expect;
	const [ourStatus, tsStatus] = expect?.status ?? [ts.status, ts.status];
	if (ours.status !== ourStatus || ts.status !== tsStatus) return [false, `status ${ours.status} vs ${ts.status}`];
	if (expect) {
		for (const [key, [ourValue, tsValue]] of Object.entries(expect.keys)) {
			const got = [key in mine ? mine[key] : MISSING, key in theirs ? theirs[key] : MISSING];
			if (!equal(got, [ourValue, tsValue])) return [false, `${key}: ours ${canonical(got[0])}, TS ${canonical(got[1])}`];
			delete mine[key];
			delete theirs[key];
		}
	}
	if (!equal(mine, theirs)) return [false, `context ${canonical(mine)} vs ${canonical(theirs)}`];
	const errors = [ours.errors.map((e) => e.nodeId), ts.errors.map((e) => e.nodeId)];
	if (!expect?.status && !equal(errors[0], errors[1])) return [false, `errors ${canonical(errors)}`];
	return [true, expect ? `differs as ${expect.clause}` : "same"];
}

const rows = [];
let failures = 0;
for (const file of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
	const data = JSON.parse(readFileSync(join(dir, file), "utf8"));
	const F = makeFunctions();
	const registry = { ...Object.fromEntries(Object.keys(data.functions).map((k) => [k, F[data.functions[k]]])), SubflowNode };
	const ts = await runInTs(data.blueprint, registry, { context: data.context, resume: data.resume, children: data.children });
	const [ok, detail] = verdict(data, ts);
	if (!ok) failures++;
	rows.push([data.case, data.py_result.status, [...ts.phases.map((p) => p.status), ts.status].join(" > "), ok ? "ok" : "MISMATCH", detail]);
}
console.log("our builder -> TS runtime (flowcraft 2.10.1), compared with our runtime's result");
console.log(`  ${"case".padEnd(22)} ${"ours".padEnd(10)} ${"TS".padEnd(22)} verdict`);
for (const [name, ours, ts, ok, detail] of rows) console.log(`  ${name.padEnd(22)} ${ours.padEnd(10)} ${ts.padEnd(22)} ${ok}: ${detail}`);
console.log(`${rows.length - failures}/${rows.length} cases as expected`);
process.exit(failures ? 1 : 0);
