"""CPU time of one coroutine and of every asyncio task it starts, apart from the rest of the
event loop: the engine's own cost per task when workers and simulated hosts share its process.

`TaskCpu.run(coro)` drives `coro` through a wrapper that reads the thread's CPU clock around
each step (each resumption up to the next suspension), and while it runs installs a task
factory that wraps the same way every task created from inside it (they inherit a context
variable; tasks started before, the in-process workers, do not). Steps of other tasks between
them are not counted. The wrapper adds a few hundred nanoseconds per step, to every row alike.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["TaskCpu"]

_T = TypeVar("_T")
_METER: contextvars.ContextVar[TaskCpu | None] = contextvars.ContextVar(
    "reaper_bench_task_cpu", default=None
)


class _Steps:
    """Awaits `coro`, adding the CPU time of each of its steps to `meter`."""

    __slots__ = ("_coro", "_meter")

    def __init__(self, coro: Coroutine[Any, Any, Any], meter: TaskCpu) -> None:
        self._coro, self._meter = coro, meter

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, meter, clock = self._coro, self._meter, time.thread_time
        send: Any = None
        thrown: BaseException | None = None
        while True:
            started = clock()
            try:
                yielded = coro.send(send) if thrown is None else coro.throw(thrown)
            except StopIteration as done:
                meter.seconds += clock() - started
                return done.value
            except BaseException:
                meter.seconds += clock() - started
                raise
            meter.seconds += clock() - started
            try:
                send, thrown = (yield yielded), None
            except BaseException as exc:  # cancellation and the like: into the coroutine
                send, thrown = None, exc


async def _timed(coro: Coroutine[Any, Any, _T], meter: TaskCpu) -> _T:
    result: _T = await _Steps(coro, meter)
    return result


_Factory = Callable[..., "asyncio.Future[Any]"]


def _factory_over(previous: _Factory | None) -> _Factory:
    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Future[Any]:
        meter = _METER.get()
        wrapped = coro if meter is None else _timed(coro, meter)
        if previous is not None:
            return previous(loop, wrapped, **kwargs)
        return asyncio.Task(wrapped, loop=loop, **kwargs)

    return factory


class TaskCpu:
    """CPU seconds of the coroutines run through `run`, and the tasks they started."""

    def __init__(self) -> None:
        self.seconds = 0.0

    async def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        loop = asyncio.get_running_loop()
        previous = loop.get_task_factory()
        token = _METER.set(self)
        loop.set_task_factory(_factory_over(previous))
        try:
            return await _timed(coro, self)
        finally:
            loop.set_task_factory(previous)
            _METER.reset(token)
