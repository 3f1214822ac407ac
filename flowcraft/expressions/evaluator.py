"""The seam for a custom expression engine: what the runtime asks of one, and nothing more.

Both hosts (the in-memory runtime and the distributed worker) accept `evaluator=`; when it is
None they evaluate the blueprint's compiled `Expression` directly, so the built-in language
needs no adapter class of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ExpressionEvaluator(Protocol):
    """What the runtime needs from an expression engine; pass your own as `evaluator=`."""

    def evaluate(self, expression: str, scope: Mapping[str, Any]) -> Any: ...


__all__ = ["ExpressionEvaluator"]
