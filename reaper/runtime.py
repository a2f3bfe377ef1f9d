"""Engines and agent workers together in one process: what `reaper run`, `demo` and `bench`
use. Separate processes (`reaper engine`, `reaper worker`) use the same parts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reaper.agents.base import ActionRunner
from reaper.agents.hosts import StoreHostResolver
from reaper.agents.runners import default_runners
from reaper.agents.worker import Worker
from reaper.clock import Clock, RealClock
from reaper.infra.base import Backend, sim_worlds_of
from reaper.models import AGENT_TYPES

__all__ = ["LocalWorkers"]

log = logging.getLogger(__name__)


@dataclass
class LocalWorkers:
    """One worker loop per agent type, sharing runners (and so host connections)."""

    backend: Backend
    concurrency: int = 32
    clock: Clock = field(default_factory=RealClock)
    seed: int = 0
    lease_s: float = 30.0
    runners: Mapping[str, ActionRunner] | None = None
    workers: list[Worker] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self, agent_types: Iterable[str] = AGENT_TYPES) -> None:
        if self.runners is None:
            worlds = sim_worlds_of(self.backend.store)
            self.runners = default_runners(seed=self.seed, clock=self.clock, worlds=worlds)
        resolver = StoreHostResolver(self.backend.store)
        for agent_type in agent_types:
            worker = Worker(
                agent_type,
                self.backend.queue,
                self.backend.bus,
                resolver,
                self.runners,
                concurrency=self.concurrency,
                clock=self.clock,
                lease_s=self.lease_s,
            )
            self.workers.append(worker)
            self._tasks.append(
                asyncio.create_task(worker.run(stop=self._stop), name=f"worker:{agent_type}")
            )

    async def stop(self) -> None:
        """Graceful: workers stop taking, finish or hand back what they hold."""
        self._stop.set()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("worker ended with %r", result)
        self._tasks.clear()
        if self.runners is not None:
            for runner in {id(r): r for r in self.runners.values()}.values():
                await runner.close()

    def failed(self) -> BaseException | None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None
