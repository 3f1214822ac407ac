"""Step through a run one wave of ready nodes at a time, for tests and debugging."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from flowcraft.blueprint import WorkflowBlueprint
from flowcraft.builder import Flow
from flowcraft.events import WorkflowStart
from flowcraft.result import WorkflowResult
from flowcraft.runtime.runtime import FlowRuntime
from flowcraft.runtime.scheduler import Instance


class StepState(msgspec.Struct, frozen=True):
    """A snapshot between steps: what is ready next, what ran so far, the context."""

    ready: list[str]
    completed: list[str]
    context: dict[str, Any]
    status: str


class Stepper:
    """`await step.next()` runs every node that is ready now (concurrently) and stops; the
    nodes they make ready wait for the next call."""

    def __init__(self, runtime: FlowRuntime, flow: Flow | WorkflowBlueprint | str,
                 context: Mapping[str, Any] | None = None, run_id: str | None = None) -> None:
        self._run = runtime.prepare(flow, context, run_id)
        self._run.pending = self._run.start_instances()
        self._run.step_mode = True
        self._started = False
        self._completed: list[str] = []
        self.result: WorkflowResult | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def state(self) -> StepState:
        run = self._run
        ready = [i[0].id for i in run.pending]
        status = self.result.status if self.result is not None else "running"
        return StepState(ready=[] if self.done else ready, completed=list(self._completed),
                         context=msgspec.to_builtins(run.data), status=status)

    async def next(self) -> list[str]:
        """Run the ready wave; return the ids of the nodes it ran ([] once done)."""
        if self.result is not None:
            return []
        run = self._run
        if not self._started:
            self._started = True
            await run.emit(WorkflowStart(run_id=run.run_id, blueprint_id=run.blueprint_id,
                                         context=dict(run.data)))
        wave: list[Instance] = run.pending
        run.pending = []
        await run.run_lanes(wave)
        ran = [instance[0].id for instance in wave]
        self._completed.extend(ran)
        if not run.pending or run.stopping:
            self.result = await run.finish()
        return ran

    async def run_to_end(self) -> WorkflowResult:
        while self.result is None:
            await self.next()
        return self.result


__all__ = ["StepState", "Stepper"]
