"""The engine-only CPU figure: a coroutine's steps and its child tasks', not other tasks'."""

from __future__ import annotations

import asyncio
import time

from reaper.bench.taskcpu import TaskCpu


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def _slices(n: int, each: float) -> None:
    for _ in range(n):
        _burn(each)
        await asyncio.sleep(0)  # a yield to the other tasks, not a wait


async def test_counts_the_coroutine_and_its_tasks_but_not_the_others() -> None:
    outsider = asyncio.create_task(_slices(20, 0.005))  # started before: not counted

    async def measured() -> str:
        child = asyncio.create_task(_slices(5, 0.004))  # started inside: counted
        await _slices(5, 0.004)
        await child
        return "done"

    meter = TaskCpu()
    assert await meter.run(measured()) == "done"
    await outsider
    assert 0.038 <= meter.seconds < 0.075  # 40 ms measured; the outsider's 100 ms is not


async def test_an_exception_passes_through_and_the_factory_is_restored() -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_task_factory()

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    meter = TaskCpu()
    try:
        await meter.run(fails())
    except ValueError as exc:
        assert str(exc) == "boom"
    else:
        raise AssertionError("the error was swallowed")
    assert loop.get_task_factory() is before
    # a task made afterwards is not measured
    task = asyncio.create_task(_slices(2, 0.002))
    seen = meter.seconds
    await task
    assert meter.seconds == seen
