"""What node code sees and returns: NodeContext, NodeResult and the Node base class."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from flowcraft.context import Context


class NodeResult(msgspec.Struct):
    """A node's output plus an optional `action` that selects action-routed edges."""

    output: Any = None
    action: str | None = None


class NodeContext:
    """Everything one node execution may use. A fresh one is made per execution."""

    __slots__ = (
        "_logger", "attempt", "blueprint_id", "context", "dependencies", "input", "iteration",
        "node_id", "params", "run_id",
    )

    def __init__(
        self,
        *,
        context: Context,
        input: Any,
        params: Mapping[str, Any],
        dependencies: Mapping[str, Any],
        run_id: str,
        node_id: str,
        blueprint_id: str,
        attempt: int = 1,
        iteration: int = 0,
    ) -> None:
        self.context = context
        self.input = input
        self.params = params
        self.dependencies = dependencies
        self.run_id = run_id
        self.node_id = node_id
        self.blueprint_id = blueprint_id
        self.attempt = attempt
        self.iteration = iteration
        self._logger: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across redeliveries and retries of this node execution."""
        return f"{self.run_id}:{self.node_id}:{self.iteration}"

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        if self._logger is None:
            self._logger = logging.LoggerAdapter(
                logging.getLogger("flowcraft.node"),
                {"run_id": self.run_id, "node_id": self.node_id},
            )
        return self._logger

    def __repr__(self) -> str:
        return (f"NodeContext(run_id={self.run_id!r}, node_id={self.node_id!r}, "
                f"attempt={self.attempt}, iteration={self.iteration})")


class Node:
    """Base class of class nodes; override any lifecycle step.

    Order: `prep` once, `exec` per attempt (retried, timed out), `fallback` after the last
    failed attempt, `post`; `recover` runs last, once, whenever any error happened.
    """

    params: Mapping[str, Any]
    node_id: str

    def __init__(self) -> None:
        self.params = {}
        self.node_id = ""

    async def prep(self, ctx: NodeContext) -> Any:
        return ctx.input

    async def exec(self, prepared: Any, ctx: NodeContext) -> Any:
        return prepared

    async def fallback(self, error: BaseException, ctx: NodeContext) -> Any:
        raise error

    async def post(self, result: Any, ctx: NodeContext) -> Any:
        return result

    async def recover(self, error: BaseException, ctx: NodeContext) -> None:
        return None


NodeFunction = Callable[[NodeContext], Any]
"""An `async def f(ctx)` or a plain `def f(ctx)` (run in a worker thread)."""

Implementation = NodeFunction | type[Node]


def is_node_class(impl: object) -> bool:
    return inspect.isclass(impl) and issubclass(impl, Node)


def is_async_callable(impl: object) -> bool:
    if inspect.iscoroutinefunction(impl):
        return True
    call = getattr(impl, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return inspect.iscoroutinefunction(call)


def as_result(value: Any) -> NodeResult:
    """Anything that is not a NodeResult means `NodeResult(output=value)`."""
    if type(value) is NodeResult:
        return value
    if isinstance(value, NodeResult):
        return value
    return NodeResult(output=value)


AsyncNodeFunction = Callable[[NodeContext], Awaitable[Any]]

__all__ = [
    "AsyncNodeFunction",
    "Implementation",
    "Node",
    "NodeContext",
    "NodeFunction",
    "NodeResult",
    "as_result",
    "is_async_callable",
    "is_node_class",
]
