"""The error hierarchy. Every error flowcraft raises on purpose derives from FlowcraftError."""

from __future__ import annotations


class FlowcraftError(Exception):
    """Base class of all flowcraft errors."""


class BlueprintError(FlowcraftError):
    """A blueprint (or a flow being built) is malformed; the message names the offending path."""


class ExpressionError(BlueprintError):
    """An expression cannot be parsed, or exceeds the size/depth bounds.

    It is a BlueprintError so that loading a blueprint with a bad condition raises one type.
    """


class ContextError(FlowcraftError):
    """A context value cannot be stored (it is not msgspec-JSON encodable)."""


class NodeExecutionError(FlowcraftError):
    """A node failed after all its attempts; wraps the cause."""

    def __init__(self, message: str, *, node_id: str, attempt: int = 0,
                 cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.attempt = attempt
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


class NodeTimeoutError(FlowcraftError):
    """An attempt exceeded the node's `timeout`; counts as a failed attempt."""


class FatalError(FlowcraftError):
    """Raised by node code to stop retries and skip fallbacks."""


class ResumeError(FlowcraftError):
    """A resume named a node that is not awaiting, or was ambiguous."""


class BlueprintVersionError(FlowcraftError):
    """A job's blueprint version differs from the one the worker knows."""


class RunNotFoundError(FlowcraftError):
    """No run with the given id exists (or it has expired)."""


class LoopLimitError(FlowcraftError):
    """A loop ran `max_iterations` times and its condition still held."""


class SubflowError(FlowcraftError):
    """A subflow ended failed, cancelled or stalled; the message carries the child's errors."""


__all__ = [
    "BlueprintError",
    "BlueprintVersionError",
    "ContextError",
    "ExpressionError",
    "FatalError",
    "FlowcraftError",
    "LoopLimitError",
    "NodeExecutionError",
    "NodeTimeoutError",
    "ResumeError",
    "RunNotFoundError",
    "SubflowError",
]
