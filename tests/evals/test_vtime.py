from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from evals.vtime import EPOCH, LoopClock, SimulationDeadlock, run_virtual


def test_an_hour_of_sleeping_takes_no_real_time() -> None:
    async def main() -> tuple[float, float]:
        clock = LoopClock()
        await asyncio.gather(asyncio.sleep(3600), clock.sleep(1800))
        return asyncio.get_running_loop().time(), clock.monotonic()

    started = time.perf_counter()
    loop_time, mono = run_virtual(main())
    assert time.perf_counter() - started < 1.0
    assert loop_time == mono == pytest.approx(3600)


def test_clock_agrees_with_loop_time_and_timeouts_are_virtual() -> None:
    async def main() -> tuple[bool, float]:
        clock = LoopClock()
        try:
            async with asyncio.timeout(30):
                await asyncio.Event().wait()
        except TimeoutError:
            timed_out = True
        else:
            timed_out = False
        assert clock.now() == EPOCH + timedelta(seconds=clock.monotonic())
        return timed_out, clock.monotonic()

    timed_out, now = run_virtual(main())
    assert timed_out and now == pytest.approx(30)


def test_a_deadline_a_hair_away_is_reached() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3.4 - 1e-15)
        deadline = 3.4
        while loop.time() < deadline:  # the pattern that spins if timers fire early
            await asyncio.sleep(deadline - loop.time())
        return loop.time()

    assert run_virtual(main()) >= 3.4


def test_idle_loop_is_a_deadlock_not_a_hang() -> None:
    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(SimulationDeadlock):
        run_virtual(main())
