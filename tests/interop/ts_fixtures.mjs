// Builds every case of ts_cases.mjs with the TypeScript builder, runs it in the TypeScript
// runtime (flowcraft 2.10.1) and writes fixtures/<case>.json = {blueprint, functions, ts_result,
// ...}. `functions` maps the builder's process-order hash keys to our function names.
// Usage: node ts_fixtures.mjs [--out DIR]
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeFunctions } from "./functions.mjs";
import { cases } from "./ts_cases.mjs";
import { runInTs } from "./ts_run.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const outIndex = process.argv.indexOf("--out");
const outDir = outIndex > 0 ? process.argv[outIndex + 1] : join(here, "fixtures");
mkdirSync(outDir, { recursive: true });

function namesOf(flow, F) {
	const names = {};
	for (const [key, impl] of flow.getFunctionRegistry()) {
		const name = Object.keys(F).find((n) => F[n] === impl);
		names[key] = name ?? impl.name; // classes (SubflowNode) keep their own name
	}
	return names;
}

const rows = [];
for (const [name, spec] of Object.entries(cases)) {
	const F = makeFunctions();
	const built = spec.build(F);
	const blueprint = built.flow.toBlueprint();
	const children = (built.children ?? []).map((c) => c.toBlueprint());
	const registry = Object.fromEntries(built.flow.getFunctionRegistry());
	const functions = namesOf(built.flow, F);
	for (const c of built.children ?? []) {
		Object.assign(registry, Object.fromEntries(c.getFunctionRegistry()));
		Object.assign(functions, namesOf(c, F));
	}
	const ts_result = await runInTs(blueprint, registry, { context: built.context, resume: built.resume ?? [], children });
	const fixture = {
		case: name,
		about: spec.about,
		blueprint,
		children,
		functions,
		context: built.context,
		resume: built.resume ?? [],
		ts_result,
	};
	writeFileSync(join(outDir, `${name}.json`), `${JSON.stringify(fixture, null, 2)}\n`);
	rows.push([name, ts_result.status, ts_result.phases.map((p) => p.status).join(" > ")]);
}
console.log("TS builder -> TS runtime (fixtures written to %s)", outDir);
for (const [name, status, phases] of rows) console.log(`  ${name.padEnd(22)} ${phases ? `${phases} > ` : ""}${status}`);
