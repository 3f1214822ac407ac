"""The narrow interface a built-in construct needs from whoever runs it.

Loop, batch, subflow, sleep and wait are each written once (`flowcraft.builtins`) against this
protocol. The in-memory runtime implements it for one run in this process; the distributed
worker implements it for one job, handing batch items and child runs to the queue.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flowcraft.events import Event
    from flowcraft.expressions import ExpressionEvaluator
    from flowcraft.nodes import NodeContext, NodeResult
    from flowcraft.result import WorkflowResult
    from flowcraft.runtime.graph import CompiledNode


class Host(Protocol):
    """One run (in memory) or one job (distributed), as a construct sees it."""

    @property
    def evaluator(self) -> ExpressionEvaluator | None:
        """The user's expression evaluator, if any (it sees the whole context)."""

    async def scope(self, names: Collection[str]) -> Mapping[str, Any]:
        """The context as an expression scope: at least `names`; all of it when a custom
        evaluator is set (it may look at anything)."""

    async def loop_count(self, node: CompiledNode, iteration: int) -> int:
        """How often the loop of controller `node` continued since it was entered."""

    async def delay(self, node: CompiledNode, ctx: NodeContext, ms: float) -> NodeResult:
        """Let `ms` pass before the node's successors run (sleep)."""

    async def fan_out(self, node: CompiledNode, ctx: NodeContext,
                      items: list[Any]) -> list[Any] | None:
        """Run the batch worker once per item; the outputs in item order, or None when the
        items were handed to the queue (the batch completes when the last one does)."""

    async def run_child(self, node: CompiledNode, ctx: NodeContext, blueprint_id: str,
                        context: dict[str, Any], run_id: str) -> WorkflowResult | None:
        """Run blueprint `blueprint_id` as a child run; its result, or None when the child
        was handed to the queue (the subflow node completes when the child ends)."""

    async def emit(self, event: Event) -> None:
        """Record an event of the run."""


__all__ = ["Host"]
