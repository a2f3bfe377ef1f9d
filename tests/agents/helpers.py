"""Shared builders for the agent tests: a memory backend with a mission, tasks, fake runners."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from reaper.agents.base import ActionOutcome
from reaper.infra.base import OutboxItem
from reaper.infra.memory import MemoryEventBus, MemoryMissionStore, MemoryTaskQueue
from reaper.models import (
    HostConnection,
    HostState,
    MissionState,
    ResultEvent,
    ResultStatus,
    SimSettings,
    Task,
    agent_type_for,
)

MISSION = "m1"


def host(host_id: str, os: str = "linux", transport: str = "sim", **sim: Any) -> HostState:
    conn = HostConnection.model_validate(
        {"transport": transport, "sim": SimSettings(**sim) if sim else None}
    )
    return HostState.model_validate({"host_id": host_id, "os": os, "connection": conn})


def task(
    n: int | str,
    host_id: str = "h1",
    action: str = "linux.discover",
    attempt: int = 1,
    params: dict[str, Any] | None = None,
    mission_id: str = MISSION,
) -> Task:
    os = action.split(".")[0]
    return Task(
        task_id=f"t-{n}",
        mission_id=mission_id,
        host_id=host_id,
        agent_type=agent_type_for(os),
        action=action,
        params=params or {},
        attempt=attempt,
    )


async def mission(store: MemoryMissionStore, *hosts: HostState) -> None:
    state = MissionState(mission_id=MISSION, lab_type="test", hosts={h.host_id: h for h in hosts})
    await store.create(state, [])


async def publish(queue: MemoryTaskQueue, tasks: Sequence[Task]) -> None:
    await queue.publish([OutboxItem(task=t) for t in tasks])


async def results(bus: MemoryEventBus, n: int, timeout: float = 5.0) -> list[ResultEvent]:
    """Receive exactly `n` results (waiting on the bus, bounded by `timeout`)."""
    out: list[ResultEvent] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            for d in await bus.receive(MISSION, timeout=timeout):
                assert isinstance(d.message, ResultEvent)
                out.append(d.message)
    return out


def ok(summary: str = "ok") -> ActionOutcome:
    return ActionOutcome(status=ResultStatus.SUCCESS, summary=summary)


class GateRunner:
    """Holds every task until `gate` is set; records how many ran at once."""

    def __init__(self, inner: Any = None) -> None:
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.started: list[str] = []
        self.full = asyncio.Event()
        self.full_at = 1 << 30
        self._inner = inner

    async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
        self.in_flight += 1
        self.started.append(task.task_id)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.in_flight >= self.full_at:
            self.full.set()
        try:
            await self.gate.wait()
            if self._inner is not None:
                outcome: ActionOutcome = await self._inner.run(task, host_id, conn)
                return outcome
            return ok()
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        return None
