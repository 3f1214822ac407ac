"""Run an interchange case in our runtime and reduce a result to what both runtimes share.

Shared by the fixture tests (TS blueprints here) and export_ours.py (our blueprints, whose
results the TS side compares with).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from interop_functions import registry

from flowcraft import FlowRuntime, WorkflowBlueprint, WorkflowResult, load_blueprint
from flowcraft.interop import batch_pairs


def _summary(result: WorkflowResult) -> dict[str, Any]:
    return {"status": result.status, "context": result.context,
            "errors": [{"nodeId": e.node_id, "type": e.type} for e in result.errors],
            "awaiting": list(result.awaiting)}


async def run_case(blueprint: WorkflowBlueprint, functions: Mapping[str, str],
                   context: Mapping[str, Any], resume: list[dict[str, Any]] | None = None,
                   children: Sequence[WorkflowBlueprint] = (), *,
                   durable_timers: bool = True) -> dict[str, Any]:
    """Run (durable timers on by default: TS pauses at a sleep), then resume as the case says."""
    ours = registry()
    reg = {key: ours[name] for key, name in functions.items() if name in ours}
    runtime = FlowRuntime(registry=reg, blueprints={c.id: c for c in children})
    result = await runtime.run(blueprint, context=dict(context), durable_timers=durable_timers)
    phases: list[dict[str, Any]] = []
    for step in resume or []:
        if result.status != "awaiting":
            break
        phases.append(_summary(result))
        await asyncio.sleep(0.02)
        result = await runtime.resume(blueprint, result, node_id=step["nodeId"],
                                      output=step.get("output"), action=step.get("action"))
    return {**_summary(result), "phases": phases}


def comparable(context: Mapping[str, Any], blueprint: WorkflowBlueprint) -> dict[str, Any]:
    """The keys both runtimes write: no `_` keys, no batch bookkeeping (TS records its
    scatter/gather nodes, chunk counters and one key per item; we record the batch id)."""
    dropped: set[str] = set()
    prefixes: list[str] = []
    for pair in batch_pairs(blueprint):
        s, g = pair.scatter.id, pair.gather.id
        dropped |= {s, g, f"{s}_currentIndex", f"{g}_hasMore", f"{g}_allWorkerIds"}
        if pair.node.params["outputKey"] != pair.batch_id:
            dropped.add(pair.batch_id)
        prefixes.append(pair.scatter.params["workerUsesKey"] + "_")
    return {k: v for k, v in context.items()
            if not k.startswith("_") and k not in dropped
            and not any(k.startswith(p) for p in prefixes)}


def load_both(data: Any) -> tuple[WorkflowBlueprint, WorkflowBlueprint]:
    return load_blueprint(data, strict=True), load_blueprint(data)
