"""The dispatch window: at most `max_in_flight` of a mission's tasks are on the queue or running
at once; the rest wait, committed, in the outbox and survive a crash there. Within that cap the
window narrows while results wait on a busy engine longer than `latency_target_s`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from reaper.clock import ManualClock
from reaper.infra.base import Commit, EventBus, InboundDelivery, MissionStore, OutboxItem, TaskQueue
from reaper.models import (
    EventKind,
    InboundMessage,
    MissionState,
    MissionStatus,
    Stage,
    TaskStatus,
)
from reaper.overseer import Overseer
from reaper.runtime import LocalWorkers
from tests.missions import (
    WAIT_S,
    HarnessFactory,
    Recorder,
    make_lab,
    open_memory,
    open_sqlite,
    result_keys,
    sim_host,
)

OSES = ("linux", "windows", "macos")


class _Watch:
    """A queue that tracks how many tasks are published and not yet acked or released."""

    def __init__(self, inner: TaskQueue) -> None:
        self.inner = inner
        self.out: set[tuple[str, int]] = set()
        self.peak = 0
        self.published = 0

    async def publish(self, items: Sequence[OutboxItem]) -> None:
        await self.inner.publish(items)
        self.published += len(items)
        self.out.update(i.task.key for i in items)
        self.peak = max(self.peak, len(self.out))

    async def ack(self, deliveries: Sequence[object]) -> None:
        await self.inner.ack(deliveries)  # type: ignore[arg-type]
        self.out.difference_update(d.task.key for d in deliveries)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def _hosts(n: int, **kw: object) -> list[dict[str, object]]:
    return [sim_host(f"h{i:03d}", OSES[i % 3], **kw) for i in range(n)]  # type: ignore[arg-type]


@pytest.mark.parametrize("target", [0.0, 0.025], ids=["fixed", "adaptive"])
@pytest.mark.parametrize("window", [1, 7, 64])
async def test_never_more_than_the_window_in_flight_and_every_host_finishes(
    harness: HarnessFactory, window: int, target: float
):
    backend = open_memory()
    watch = _Watch(backend.queue)
    backend.queue = watch  # type: ignore[assignment]
    h = await harness(backend=backend)
    settings = {"max_in_flight": window, "latency_target_s": target}
    lab = make_lab(*_hosts(40), settings=settings)
    final = await h.run(lab, timeout=WAIT_S * 3)
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    assert all(s.stage is Stage.BASELINED for s in final.hosts.values())
    assert watch.peak == min(window, 40)  # filled, never exceeded
    assert watch.published == len(final.tasks) == 80
    assert await backend.store.unsent("m1") == []


async def test_retries_take_a_slot_and_the_window_still_drains(harness: HarnessFactory):
    backend = open_memory()
    watch = _Watch(backend.queue)
    backend.queue = watch  # type: ignore[assignment]
    h = await harness(backend=backend)
    flaky = [{"kind": "flaky", "action": "baseline", "times": 2}]
    lab = make_lab(*_hosts(12, faults=flaky), settings={"max_in_flight": 3})
    final = await h.run(lab, timeout=WAIT_S * 3)
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    assert watch.peak <= 3
    attempts = [rec.task.attempt for rec in final.tasks.values() if "baseline" in rec.task.action]
    assert attempts == [3] * 12


async def test_tasks_waiting_for_a_slot_survive_an_engine_crash(tmp_path: Path):
    db = tmp_path / "reaper.db"
    first = open_sqlite(db)
    recorder = Recorder()
    overseer = Overseer(first, listener=recorder)
    workers = LocalWorkers(first)
    workers.start()
    lab = make_lab(*_hosts(30), settings={"max_in_flight": 4})
    await overseer.create_mission(lab)
    run = overseer.start("m1")
    recorder.crash_when(lambda: recorder.results() >= 6, run)
    await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), WAIT_S)
    assert run.cancelled()
    await workers.stop()
    waiting = await first.store.unsent("m1")
    assert len(waiting) >= 20  # most of the first step never reached the queue
    await first.close()

    again = open_sqlite(db)
    workers = LocalWorkers(again)
    workers.start()
    try:
        final = await asyncio.wait_for(Overseer(again).run_mission("m1"), WAIT_S * 3)
    finally:
        await workers.stop()
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    assert all(rec.status is TaskStatus.SUCCEEDED for rec in final.tasks.values())
    keys = result_keys(await again.store.events("m1"))
    assert len(keys) == 60 and set(keys.values()) == {1}  # every task ran, none twice
    assert await again.store.unsent("m1") == []
    await again.close()


class _SlowStore:
    """A store whose commits take `fixed_s + per_result_s` a result on the engine's clock: an
    engine as busy as a slow machine makes it, deterministically."""

    def __init__(
        self, inner: MissionStore, clock: ManualClock, fixed_s: float, per_result_s: float
    ):
        self.inner, self.clock = inner, clock
        self.fixed_s, self.per_result_s = fixed_s, per_result_s

    async def commit(self, commit: Commit) -> int:
        results = sum(1 for e in commit.events if e.kind is EventKind.TASK_RESULT)
        self.clock.advance(self.fixed_s + self.per_result_s * results)
        return await self.inner.commit(commit)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class _FirstWakeBacklog:
    """A bus whose first receive waits until `n` results are in: the engine's first wake-up
    finds a backlog, as after a restart."""

    def __init__(self, inner: EventBus, n: int) -> None:
        self.inner, self.n = inner, n
        self.published = 0
        self.full = asyncio.Event()
        self.first = True

    async def publish(self, message: InboundMessage) -> None:
        await self.publish_many([message])

    async def publish_many(self, messages: Sequence[InboundMessage]) -> None:
        await self.inner.publish_many(messages)
        self.published += len(messages)
        if self.published >= self.n:
            self.full.set()

    async def receive(self, mission_id: str, **kw: Any) -> list[InboundDelivery]:
        if self.first:
            self.first = False
            await asyncio.wait_for(self.full.wait(), WAIT_S)
        return await self.inner.receive(mission_id, **kw)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def _run_on_a_slow_engine(
    target: float,
    *,
    fixed_s: float = 0.002,
    per_result_s: float = 0.0005,
    uptime_s: float = 0.0,
    backlog: int = 0,
) -> tuple[MissionState, list[int], int]:
    """600 hosts on an engine that spends `fixed_s` a commit and `per_result_s` a result (on a
    clock that reads `uptime_s` at the start; with `backlog`, that many results wait at its
    first wake-up); returns the final state, the window's size after each commit, and the
    peak of tasks out at once."""
    backend = open_memory()
    clock = ManualClock()
    clock.advance(uptime_s)
    backend.store = _SlowStore(backend.store, clock, fixed_s, per_result_s)  # type: ignore[assignment]
    if backlog:
        backend.bus = _FirstWakeBacklog(backend.bus, backlog)  # type: ignore[assignment]
    watch = _Watch(backend.queue)
    backend.queue = watch  # type: ignore[assignment]
    sizes: list[int] = []
    overseer: Overseer

    def listener(state: MissionState, events: Sequence[object]) -> None:
        engine = overseer.engines.get(state.mission_id)
        if engine is not None:
            sizes.append(engine.window.size)

    overseer = Overseer(backend, clock=clock, listener=listener)
    workers = LocalWorkers(backend)
    workers.start()
    try:
        settings = {"max_in_flight": 256, "latency_target_s": target}
        await overseer.create_mission(make_lab(*_hosts(600), settings=settings))
        final = await asyncio.wait_for(overseer.run_mission("m1"), WAIT_S * 3)
    finally:
        await workers.stop()
        await backend.close()
    return final, sizes, watch.peak


async def test_a_busy_engine_narrows_the_window_and_every_task_still_runs_once():
    final, sizes, peak = await _run_on_a_slow_engine(0.025)
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    assert len(final.tasks) == 1200
    assert all(
        rec.status is TaskStatus.SUCCEEDED and rec.task.attempt == 1 for rec in final.tasks.values()
    )
    # Workers in this loop answer while the engine waits, so a cycle applies the whole window
    # and a result waits one cycle: 2 ms + 0.5 ms x 46 = 25 ms.
    settled = sizes[len(sizes) // 2 :]
    assert 40 <= min(settled) <= max(settled) <= 56
    assert peak <= max(sizes)


async def test_an_engine_that_keeps_up_only_widens_the_window_however_long_its_host_is_up():
    # Results are waiting at the first wake-up: they waited since the engine started, not
    # since the monotonic clock's zero (which would read as hours of latency).
    final, sizes, _ = await _run_on_a_slow_engine(
        0.025, fixed_s=0.0, per_result_s=0.0, uptime_s=86_400.0, backlog=64
    )
    assert final.status is MissionStatus.COMPLETED
    assert sizes == sorted(sizes) and sizes[-1] == 256


async def test_without_a_latency_target_the_window_stays_at_the_cap():
    final, sizes, peak = await _run_on_a_slow_engine(0.0)
    assert final.status is MissionStatus.COMPLETED
    assert set(sizes) == {256} and peak == 256


def test_the_window_must_be_positive():
    with pytest.raises(ValidationError, match="max_in_flight"):
        make_lab(sim_host("a"), settings={"max_in_flight": 0})
