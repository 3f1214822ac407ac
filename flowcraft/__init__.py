"""flowcraft: an asyncio-native workflow engine. This module is the public surface."""

from flowcraft.blueprint import (
    EdgeDefinition,
    NodeConfig,
    NodeDefinition,
    WorkflowBlueprint,
    load_blueprint,
)
from flowcraft.builder import Flow
from flowcraft.context import Context
from flowcraft.errors import (
    BlueprintError,
    BlueprintVersionError,
    ContextError,
    ExpressionError,
    FatalError,
    FlowcraftError,
    LoopLimitError,
    NodeExecutionError,
    NodeTimeoutError,
    ResumeError,
    RunNotFoundError,
    SubflowError,
)
from flowcraft.eventlog import JsonlEventStore
from flowcraft.events import Event, EventRecorder
from flowcraft.nodes import Node, NodeContext, NodeResult
from flowcraft.result import WorkflowError, WorkflowResult
from flowcraft.runtime.runtime import FlowRuntime
from flowcraft.runtime.stepper import Stepper

__version__ = "0.1.0"

__all__ = [
    "BlueprintError",
    "BlueprintVersionError",
    "Context",
    "ContextError",
    "EdgeDefinition",
    "Event",
    "EventRecorder",
    "ExpressionError",
    "FatalError",
    "Flow",
    "FlowRuntime",
    "FlowcraftError",
    "JsonlEventStore",
    "LoopLimitError",
    "Node",
    "NodeConfig",
    "NodeContext",
    "NodeDefinition",
    "NodeExecutionError",
    "NodeResult",
    "NodeTimeoutError",
    "ResumeError",
    "RunNotFoundError",
    "Stepper",
    "SubflowError",
    "WorkflowBlueprint",
    "WorkflowError",
    "WorkflowResult",
    "__version__",
    "load_blueprint",
]
