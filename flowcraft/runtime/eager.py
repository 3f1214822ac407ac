"""Await a coroutine in the current task and learn whether it suspended on the way.

The scheduler runs ready nodes one after another in the lane that made them ready, and gives
them tasks of their own only once that lane really waits for something (Python 3.12's eager
tasks make the same bet): nodes that finish without waiting then cost no task and no turn of
the event loop, and nodes that wait still run concurrently.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UntilSuspended(Generic[T]):
    """`await UntilSuspended(coro, hook)` is `await coro`, except that `hook()` is called the
    first time `coro` suspends (before the task yields to the event loop)."""

    __slots__ = ("_coro", "_hook")

    def __init__(self, coro: Coroutine[Any, Any, T], hook: Callable[[], None]) -> None:
        self._coro = coro
        self._hook = hook

    def __await__(self) -> Generator[Any, Any, T]:
        coro = self._coro
        try:
            signal = coro.send(None)
        except StopIteration as stop:
            done: T = stop.value
            return done
        try:
            self._hook()
        except BaseException:
            coro.close()
            raise
        # From here on, what `yield from coro` does (PEP 380).
        resume: Callable[[Any], Any]
        while True:
            try:
                sent = yield signal
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                resume, sent = coro.throw, exc
            else:
                resume = coro.send
            try:
                signal = resume(sent)
            except StopIteration as stop:
                value: T = stop.value
                return value


__all__ = ["UntilSuspended"]
