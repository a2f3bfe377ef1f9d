"""The dispatch window: at most `max_in_flight` of a mission's tasks are on the queue or running
at once; the rest wait, committed, in the outbox and survive a crash there."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from reaper.infra.base import OutboxItem, TaskQueue
from reaper.models import MissionStatus, Stage, TaskStatus
from reaper.overseer import Overseer
from reaper.runtime import LocalWorkers

from .conftest import (
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


@pytest.mark.parametrize("window", [1, 7, 64])
async def test_never_more_than_the_window_in_flight_and_every_host_finishes(
    harness: HarnessFactory, window: int
):
    backend = open_memory()
    watch = _Watch(backend.queue)
    backend.queue = watch  # type: ignore[assignment]
    h = await harness(backend=backend)
    lab = make_lab(*_hosts(40), settings={"max_in_flight": window})
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


def test_the_window_must_be_positive():
    with pytest.raises(ValidationError, match="max_in_flight"):
        make_lab(sim_host("a"), settings={"max_in_flight": 0})
