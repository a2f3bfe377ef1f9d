"""Virtual time: an asyncio event loop whose clock jumps to the next timer instead of waiting.

Every wait in Reaper is an asyncio wait (sim latency, retry backoff through delayed queue
visibility, receive and stall timeouts, heartbeats), so a loop whose `time()` is virtual makes
the whole mission virtual without changing any of that code. `LoopClock` is the `Clock` the
engine, workers and sim read: it agrees with the loop's time by construction.

How the loop works: `BaseEventLoop._run_once` asks the selector to wait until the next timer.
The selector here polls for I/O without blocking; when nothing is ready and the loop asked for
a positive wait, it advances the virtual clock by that amount instead of sleeping. With no
timer and nothing ready (a wait without timeout on an idle loop) the simulation can never make
progress, so it raises `SimulationDeadlock` rather than hang.

Why not `looptime` (PyPI): it does the same selector trick, but spins 42 no-op loop cycles
before every time jump (to cater for threads and sync I/O, which a simulation has none of) and
blocks for real when idle. Forty lines here avoid a dependency and that overhead.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import selectors
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

__all__ = ["EPOCH", "LoopClock", "SimulationDeadlock", "VirtualTimeLoop", "run_virtual"]

T = TypeVar("T")

# Virtual missions start here (any fixed instant: results must not depend on the wall clock).
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class SimulationDeadlock(RuntimeError):
    """The virtual loop has no timer and no I/O: nothing can ever happen again."""


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise SimulationDeadlock("virtual-time loop is idle with no timer: nothing can happen")
        # Always move forward: a wait shorter than the float spacing at `now` would otherwise
        # leave the clock where it is, and a loop waiting for that deadline would spin.
        self.now = max(self.now + timeout, math.nextafter(self.now, math.inf))
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on virtual time (seconds from 0)."""

    def __init__(self) -> None:
        self._vselector = _VirtualSelector()
        super().__init__(self._vselector)
        # Timers due within this much of "now" fire together: exact, since time only jumps to
        # a deadline, but float sums need a little room.
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self._vselector.now

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        # The loop fires timers due within `_clock_resolution` of now, i.e. a hair early. Code
        # that waits `deadline - now` and then checks `now >= deadline` would wait again for
        # a sliver, forever, since only timers move virtual time: so a timer that fires brings
        # the clock up to its deadline first.
        return super().call_at(when, self._fire, when, callback, *args, context=context)

    def _fire(self, when: float, callback: Callable[..., object], *args: Any) -> None:
        if when > self._vselector.now:
            self._vselector.now = when
        callback(*args)


class LoopClock:
    """`reaper.clock.Clock` on the running loop's time: now() = EPOCH + loop.time()."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, epoch: datetime = EPOCH):
        self._loop = loop
        self._epoch = epoch

    def _time(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def now(self) -> datetime:
        return self._epoch + timedelta(seconds=self._time())

    def monotonic(self) -> float:
        return self._time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh virtual-time loop, then close the loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
