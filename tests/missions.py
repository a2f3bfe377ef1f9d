"""Builders and a harness for the core tests: labs, scripted planners, an in-process mission
runner (overseer + local workers) and a listener that tests wait on instead of sleeping."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reaper.agents.base import ActionRunner
from reaper.infra.base import Backend
from reaper.infra.memory import memory_backend
from reaper.infra.sqlite import SqliteBackend
from reaper.lab import LabFile
from reaper.models import (
    AGENT_TYPES,
    EventKind,
    EventRecord,
    MissionState,
    MissionStatus,
    PlannedTask,
    ResultEvent,
)
from reaper.overseer import Overseer
from reaper.planners.base import MissionPlanner, Plan
from reaper.runtime import LocalWorkers

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 10.0  # upper bound for any single wait in these tests; they finish far sooner


# -- labs -------------------------------------------------------------------------------


def sim_host(
    host_id: str,
    os_name: str = "linux",
    *,
    faults: Sequence[dict[str, Any]] = (),
    latency: float = 0.0,
    **extra: Any,
) -> dict[str, Any]:
    """A lab-file host entry for a simulated host."""
    return {
        "host_id": host_id,
        "os": os_name,
        "transport": "sim",
        "sim": {"latency_s": latency, "faults": list(faults)},
        **extra,
    }


def make_lab(*hosts: dict[str, Any], mission_id: str = "m1", **fields: Any) -> LabFile:
    """A lab with no retry backoff (retries are immediate) unless `settings` says otherwise."""
    settings = {"retry_backoff_s": 0.0, **fields.pop("settings", {})}
    data: dict[str, Any] = {
        "mission_id": mission_id,
        "lab_type": "core-test",
        "settings": settings,
        "hosts": list(hosts),
        **fields,
    }
    return LabFile.model_validate(data)


# -- planners ---------------------------------------------------------------------------


class ScriptedPlanner:
    """Plans `initial` first, then whatever `after(state, results)` returns (nothing by
    default). Records every batch of results it was shown."""

    name = "scripted"

    def __init__(
        self,
        initial: Plan | Sequence[PlannedTask],
        after: Callable[[MissionState, Sequence[ResultEvent]], Plan] | None = None,
    ) -> None:
        self.initial = initial if isinstance(initial, Plan) else Plan(tasks=list(initial))
        self.after = after
        self.batches: list[list[ResultEvent]] = []

    async def initial_tasks(self, state: MissionState) -> Plan:
        return self.initial

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        self.batches.append(list(results))
        return self.after(state, results) if self.after is not None else Plan()


class RepeatPlanner:
    """Discovers every host, then repeats a failed action on its host up to `limit` times in
    all: a planner that never gives up (the engine's lock is what stops it)."""

    name = "repeat"

    def __init__(self, limit: int = 10) -> None:
        self.limit = limit
        self.proposed = 0

    async def initial_tasks(self, state: MissionState) -> Plan:
        tasks = [
            PlannedTask(host_id=h.host_id, action=f"{h.os}.discover", reason="start")
            for h in state.hosts.values()
        ]
        self.proposed += len(tasks)
        return Plan(tasks=tasks)

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        tasks = []
        for r in results:
            if not r.ok and self.proposed < self.limit:
                tasks.append(PlannedTask(host_id=r.host_id, action=r.action, reason="again"))
                self.proposed += 1
        return Plan(tasks=tasks)


def planner_factory(planner: MissionPlanner) -> Callable[[MissionState], MissionPlanner]:
    return lambda _state: planner


# -- waiting on the engine --------------------------------------------------------------


class Recorder:
    """The engine's listener: keeps the latest state and every event, and wakes waiters."""

    def __init__(self) -> None:
        self.state: MissionState | None = None
        self.events: list[EventRecord] = []
        self._tick = asyncio.Event()
        self._crash: tuple[Callable[[], bool], asyncio.Task[Any]] | None = None

    def __call__(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        self.state = state
        self.events.extend(events)
        self._tick.set()
        if self._crash is not None and self._crash[0]():
            # Cancelled from inside the engine's commit: it dies at its very next await,
            # deterministically mid-mission however fast the workers are.
            self._crash[1].cancel()
            self._crash = None

    def crash_when(self, predicate: Callable[[], bool], task: asyncio.Task[Any]) -> None:
        self._crash = (predicate, task)

    def results(self) -> int:
        return len(self.kinds(EventKind.TASK_RESULT))

    def kinds(self, kind: EventKind) -> list[EventRecord]:
        return [e for e in self.events if e.kind is kind]

    def statuses(self) -> list[str]:
        return [str(e.payload["to"]) for e in self.kinds(EventKind.STATUS_CHANGED)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        async def loop() -> None:
            while not predicate():
                self._tick.clear()
                await self._tick.wait()

        await asyncio.wait_for(loop(), timeout)

    async def wait_status(self, status: MissionStatus, timeout: float = WAIT_S) -> MissionState:
        await self.wait_for(lambda: self.state is not None and self.state.status is status, timeout)
        assert self.state is not None
        return self.state


# -- a mission in this process ----------------------------------------------------------


@dataclass
class Harness:
    """An overseer and local workers on one backend, torn down by the fixture."""

    backend: Backend
    recorder: Recorder
    overseer: Overseer
    workers: LocalWorkers | None = None
    extra_workers: list[LocalWorkers] = field(default_factory=list)

    async def create(self, lab: LabFile, mission_id: str | None = None) -> MissionState:
        return await self.overseer.create_mission(lab, mission_id)

    def start(self, mission_id: str) -> asyncio.Task[MissionState]:
        return self.overseer.start(mission_id)

    async def run(self, lab: LabFile, timeout: float = WAIT_S) -> MissionState:
        """Create the lab's mission and run it to its end."""
        state = await self.create(lab)
        return await asyncio.wait_for(self.start(state.mission_id), timeout)

    def add_workers(self, agent_types: Iterable[str], **kwargs: Any) -> LocalWorkers:
        workers = LocalWorkers(self.backend, **kwargs)
        workers.start(agent_types)
        self.extra_workers.append(workers)
        return workers

    async def events(self, mission_id: str = "m1") -> list[EventRecord]:
        return await self.backend.store.events(mission_id)

    async def close(self) -> None:
        await self.overseer.stop_all()
        for workers in [self.workers, *self.extra_workers]:
            if workers is not None:
                await workers.stop()
        await self.backend.close()


HarnessFactory = Callable[..., Awaitable[Harness]]


def open_memory() -> Backend:
    store, queue, bus = memory_backend()
    return Backend(store=store, queue=queue, bus=bus, description="memory")


def open_sqlite(path: Path) -> Backend:
    return SqliteBackend(path).as_backend()


@pytest.fixture
async def harness() -> AsyncIterator[HarnessFactory]:
    made: list[Harness] = []

    async def make(
        *,
        backend: Backend | None = None,
        planner: MissionPlanner | None = None,
        agent_types: Iterable[str] | None = AGENT_TYPES,
        runners: dict[str, ActionRunner] | None = None,
        engine_overrides: dict[str, Any] | None = None,
    ) -> Harness:
        backend = backend or open_memory()
        recorder = Recorder()
        kwargs: dict[str, Any] = {"listener": recorder, "engine_overrides": engine_overrides}
        if planner is not None:
            kwargs["planner_factory"] = planner_factory(planner)
        overseer = Overseer(backend, **kwargs)
        workers = None
        if agent_types is not None:
            workers = LocalWorkers(backend, runners=runners)
            workers.start(agent_types)
        h = Harness(backend=backend, recorder=recorder, overseer=overseer, workers=workers)
        made.append(h)
        return h

    yield make
    for h in made:
        await h.close()


# -- reading the event log --------------------------------------------------------------


def result_keys(events: Iterable[EventRecord]) -> Counter[tuple[str, int]]:
    """How often each (task_id, attempt) was applied, from the event log."""
    return Counter(r.key for e in events if (r := e.result()) is not None)


def of_kind(events: Iterable[EventRecord], kind: EventKind) -> list[EventRecord]:
    return [e for e in events if e.kind is kind]


def count_rows(db: Path, sql: str, params: Sequence[Any] = ()) -> int:
    """Read another process's SQLite file (read-only, short-lived connection)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


# -- subprocesses -----------------------------------------------------------------------


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment for `python -m reaper.cli` that finds this checkout and writes only
    under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REAPER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


PYTHON = sys.executable


def keep_root_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """`reaper.cli.main` configures the root logger; undo that when the test ends."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
