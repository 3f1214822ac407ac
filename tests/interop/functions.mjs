// The node functions of the interchange cases, TypeScript-runtime side. tests/interop/interop_functions.py
// implements each one identically for flowcraft; keep the two files in step.
// A TS function node returns {output, action}; the Python twin returns the plain value or a
// NodeResult.

const num = (value) => (typeof value === "number" ? value : 0);

export function makeFunctions() {
	const calls = new Map(); // per case run: how often each flaky node was called
	return {
		// the context value "x" (0 when absent)
		seed: async (ctx) => ({ output: num(await ctx.context.get("x")) }),
		// input + params.by (default 1); a non-number input counts as 0
		add: async (ctx) => ({ output: num(ctx.input) + (ctx.params?.by ?? 1) }),
		// the input itself (null when there is none)
		echo: async (ctx) => ({ output: ctx.input ?? null }),
		// input * 2
		double: async (ctx) => ({ output: num(ctx.input) * 2 }),
		// the sum of a list input
		total: async (ctx) => ({ output: (ctx.input ?? []).reduce((a, b) => a + b, 0) }),
		// increments the context counter named params.key (default "count") and returns it
		count: async (ctx) => {
			const key = ctx.params?.key ?? "count";
			const n = num(await ctx.context.get(key)) + 1;
			await ctx.context.set(key, n);
			return { output: n };
		},
		// the sum of the context values named in params.keys
		sumkeys: async (ctx) => {
			let sum = 0;
			for (const key of ctx.params.keys) sum += num(await ctx.context.get(key));
			return { output: sum };
		},
		// passes the input on and routes by the context value "choice"
		pick: async (ctx) => ({ output: ctx.input ?? null, action: await ctx.context.get("choice") }),
		// fails its first params.failures calls, then returns "ok after <calls>"
		flaky: async (ctx) => {
			const key = ctx.params.name;
			const n = (calls.get(key) ?? 0) + 1;
			calls.set(key, n);
			if (n <= ctx.params.failures) throw new Error(`flaky failure ${n}`);
			return { output: `ok after ${n}` };
		},
		// sleeps params.ms milliseconds, then returns "slow done"
		slow: async (ctx) => {
			await new Promise((resolve) => setTimeout(resolve, ctx.params.ms));
			return { output: "slow done" };
		},
		// always fails
		boom: async () => {
			throw new Error("boom");
		},
		// a constant, used as a fallback
		rescue: async () => ({ output: "rescued" }),
	};
}
