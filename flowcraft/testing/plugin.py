"""The pytest plugin (entry point `pytest11`): `event_recorder`, `flow_runtime`, `run_flow`.

Fixtures are plain (not async) so they work with any async test runner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from flowcraft.blueprint import WorkflowBlueprint
from flowcraft.builder import Flow
from flowcraft.events import EventRecorder
from flowcraft.result import WorkflowResult
from flowcraft.runtime.runtime import FlowRuntime

RunFlow = Callable[..., Awaitable[WorkflowResult]]


@pytest.fixture
def event_recorder() -> EventRecorder:
    """Collects every event of the runs made through `flow_runtime` / `run_flow`."""
    return EventRecorder()


@pytest.fixture
def flow_runtime(event_recorder: EventRecorder) -> FlowRuntime:
    """A FlowRuntime with the test's EventRecorder attached."""
    return FlowRuntime(event_bus=event_recorder)


@pytest.fixture
def run_flow(flow_runtime: FlowRuntime) -> RunFlow:
    """`await run_flow(flow, context={...})` runs a flow on `flow_runtime`."""

    async def run(flow: Flow | WorkflowBlueprint | str,
                  context: Mapping[str, Any] | None = None, **kwargs: Any) -> WorkflowResult:
        return await flow_runtime.run(flow, context=context, **kwargs)

    return run
