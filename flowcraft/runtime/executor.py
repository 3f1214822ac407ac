"""One node execution: middleware, attempts with timeout and backoff, fallbacks, lifecycle.

Used unchanged by the in-memory runtime and by distributed workers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import anyio.to_thread

from flowcraft.errors import FatalError, FlowcraftError, NodeExecutionError, NodeTimeoutError
from flowcraft.events import Emit, NodeFallback, NodeRetry
from flowcraft.nodes import (
    Node,
    NodeContext,
    NodeResult,
    as_result,
    is_async_callable,
    is_node_class,
)
from flowcraft.runtime.graph import CompiledNode

log = logging.getLogger("flowcraft.executor")


def _failure(cause: BaseException, attempt: int, node_id: str) -> NodeExecutionError:
    """A node failed for good: all attempts and fallbacks are spent."""
    return NodeExecutionError(f"node {node_id!r} failed on attempt {attempt}: {cause}",
                              node_id=node_id, attempt=attempt, cause=cause)


Attempt = Callable[[NodeContext], Awaitable[Any]]


class RecoveredResult(NodeResult):
    """The result of a blueprint fallback node that stood in for the failed node: its output
    flows along the failed node's edges and is recorded under `fallback_id`."""

    fallback_id: str = ""


def failure_of(exc: FlowcraftError, attempt: int) -> tuple[BaseException, int]:
    """What a failed node records: the cause a NodeExecutionError wraps (and its attempt), or
    any other flowcraft error itself at the given attempt."""
    if isinstance(exc, NodeExecutionError):
        return exc.cause or exc, exc.attempt
    return exc, attempt


def _function_attempt(impl: Any) -> Attempt:
    if is_async_callable(impl):
        coro_fn: Attempt = impl
        return coro_fn

    async def run_sync(ctx: NodeContext) -> Any:
        # abandon_on_cancel: a timeout or cancellation must not wait for the thread to return.
        return await anyio.to_thread.run_sync(impl, ctx, abandon_on_cancel=True)

    return run_sync


def retry_delay_s(node: CompiledNode, attempt: int) -> float:
    """Seconds to wait before `attempt` (>= 2): retry_delay * backoff ** (attempt - 2) ms."""
    cfg = node.config
    return cfg.retry_delay * cfg.backoff ** (attempt - 2) / 1000.0


class Executor:
    """Runs nodes with the runtime's middleware and event bus."""

    def __init__(self, middleware: Sequence[Any] = (), emit: Emit | None = None) -> None:
        self.before = [m.before_node for m in middleware if hasattr(m, "before_node")]
        self.after = [m.after_node for m in middleware if hasattr(m, "after_node")]
        self.around = [m.around_node for m in middleware if hasattr(m, "around_node")]
        self.emit = emit
        self.plain = not (self.before or self.after or self.around)
        # `execute`, or with no middleware the part of it that runs the node (a frame less).
        self.call: Callable[[CompiledNode, NodeContext, CompiledNode | None],
                            Awaitable[NodeResult]] = (
            self._execute if self.plain else self.execute)
        # Per node: its attempt function (None for a Node class) and whether one attempt
        # without a timeout is all it gets. Keyed by the node itself, not by id(): a dropped
        # graph's ids could be reused.
        self._attempts: dict[CompiledNode, tuple[Attempt | None, bool]] = {}

    async def execute(self, node: CompiledNode, ctx: NodeContext,
                      fallback: CompiledNode | None = None) -> NodeResult:
        """Run the node; return its result or raise NodeFailure."""
        if self.plain:
            return await self._execute(node, ctx, fallback)
        for hook in self.before:
            await hook(ctx, node.id)
        result: NodeResult | None = None
        error: BaseException | None = None
        try:
            result = await self._around(0, node, ctx, fallback)
        except NodeExecutionError as failure:
            error = failure.cause or failure
            raise
        finally:
            for after in self.after:
                await after(ctx, node.id, result, error)
        return result

    async def _around(self, depth: int, node: CompiledNode, ctx: NodeContext,
                      fallback: CompiledNode | None) -> NodeResult:
        if depth == len(self.around):
            return await self._execute(node, ctx, fallback)
        wrapper = self.around[depth]

        async def call_next() -> NodeResult:
            return await self._around(depth + 1, node, ctx, fallback)

        try:
            outcome = await wrapper(ctx, node.id, call_next)
        except NodeExecutionError:
            raise
        except Exception as exc:
            raise _failure(exc, ctx.attempt, node.id) from exc
        return as_result(outcome)

    async def _execute(self, node: CompiledNode, ctx: NodeContext,
                       fallback: CompiledNode | None) -> NodeResult:
        try:
            try:
                attempt_fn, once = self._attempts[node]
            except KeyError:
                attempt_fn, once = self._attempts[node] = (
                    None if is_node_class(node.impl) else _function_attempt(node.impl),
                    node.config.max_retries <= 1 and node.config.timeout is None)
            if attempt_fn is None:
                return await self._run_class(node, node.impl, ctx)
            if not once:
                return as_result(await self._attempts_of(node, attempt_fn, ctx))
            # One attempt, no timeout: what _attempts_of does then, without its loop.
            ctx.attempt = 1
            try:
                value = await attempt_fn(ctx)
            except Exception as exc:
                raise _failure(exc, 1, node.id) from exc
            return value if isinstance(value, NodeResult) else NodeResult(value)
        except NodeExecutionError as failure:
            if fallback is None or isinstance(failure.cause, FatalError):
                raise
            return await self._run_fallback(node, fallback, ctx, failure)

    async def _attempts_of(self, node: CompiledNode, attempt_fn: Attempt,
                           ctx: NodeContext) -> Any:
        """Call `attempt_fn` up to max_retries times with timeout and backoff."""
        cfg = node.config
        timeout = cfg.timeout
        attempt = 0
        while True:
            attempt += 1
            ctx.attempt = attempt
            try:
                if timeout is None:
                    return await attempt_fn(ctx)
                return await self._timed(attempt_fn, ctx, timeout / 1000.0)
            except FatalError as exc:
                raise _failure(exc, attempt, node.id) from exc
            except Exception as exc:
                if attempt >= cfg.max_retries:
                    raise _failure(exc, attempt, node.id) from exc
                log.debug("node %s attempt %d failed: %r", node.id, attempt, exc)
                if self.emit is not None:
                    await self.emit(NodeRetry(run_id=ctx.run_id, blueprint_id=ctx.blueprint_id,
                                              node_id=node.id, iteration=ctx.iteration,
                                              attempt=attempt + 1, message=str(exc)))
                delay = retry_delay_s(node, attempt + 1)
                if delay > 0 and math.isfinite(delay):
                    await anyio.sleep(delay)

    @staticmethod
    async def _timed(attempt_fn: Attempt, ctx: NodeContext, seconds: float) -> Any:
        outcome: Any = None
        with anyio.move_on_after(seconds) as scope:
            outcome = await attempt_fn(ctx)
        if scope.cancelled_caught:
            raise NodeTimeoutError(
                f"node {ctx.node_id!r} of run {ctx.run_id!r}: attempt {ctx.attempt} timed out "
                f"after {seconds * 1000:g} ms")
        return outcome

    async def _run_class(self, node: CompiledNode, cls: type[Node], ctx: NodeContext) -> NodeResult:
        instance = cls()
        instance.params = ctx.params
        instance.node_id = node.id
        errors: list[BaseException] = []
        try:
            prepared = await instance.prep(ctx)

            async def exec_attempt(c: NodeContext) -> Any:
                try:
                    return await instance.exec(prepared, c)
                except Exception as exc:
                    errors.append(exc)
                    raise

            try:
                value: Any = await self._attempts_of(node, exec_attempt, ctx)
            except NodeExecutionError as failure:
                if isinstance(failure.cause, FatalError):
                    raise
                try:
                    value = await instance.fallback(failure.cause or failure, ctx)
                except Exception as exc:
                    raise _failure(exc, failure.attempt, node.id) from exc
            return as_result(await instance.post(value, ctx))
        except NodeExecutionError as failure:
            errors.append(failure.cause or failure)
            raise
        except Exception as exc:
            errors.append(exc)
            raise _failure(exc, ctx.attempt, node.id) from exc
        finally:
            if errors:
                try:
                    await instance.recover(errors[-1], ctx)
                except Exception:
                    log.exception("recover() of node %s raised; ignored", node.id)

    async def _run_fallback(self, node: CompiledNode, fallback: CompiledNode, ctx: NodeContext,
                            failure: NodeExecutionError) -> NodeResult:
        log.info("node %s failed (%r); running fallback %s", node.id, failure.cause, fallback.id)
        if self.emit is not None:
            await self.emit(NodeFallback(run_id=ctx.run_id, blueprint_id=ctx.blueprint_id,
                                         node_id=node.id, iteration=ctx.iteration,
                                         fallback=fallback.id))
        fb_ctx = NodeContext(
            context=ctx.context, input=ctx.input, params=fallback.params,
            dependencies=ctx.dependencies, run_id=ctx.run_id, node_id=fallback.id,
            blueprint_id=ctx.blueprint_id, iteration=ctx.iteration)
        try:
            result = await self._execute(fallback, fb_ctx, None)
        except NodeExecutionError as fb_failure:
            cause = fb_failure.cause or fb_failure
            raise _failure(cause, failure.attempt, node.id) from cause
        return RecoveredResult(result.output, result.action, fallback_id=fallback.id)


__all__ = ["Executor", "RecoveredResult", "failure_of", "retry_delay_s"]
