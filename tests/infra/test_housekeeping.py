"""Housekeeping of finished missions: `TaskQueue.prune`, `EventBus.retire` and the engine
service's janitor.

The queue and bus tests run on every implementation (conftest's `kit`) and count what the
backend keeps by looking at its storage directly: SQL rows, Redis stream entries, the memory
backend's structures. Redis keeps no acked task (XDEL at ack) and lets its de-duplication
markers expire, so there the count of a mission's acked tasks is zero before `prune` too.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Collection
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from reaper.clock import Clock, ManualClock
from reaper.errors import BackendError
from reaper.infra.base import Backend, EventBus, TaskQueue
from reaper.infra.memory import MemoryEventBus, MemoryTaskQueue, memory_backend
from reaper.infra.sqlite import SqliteBackend
from reaper.models import MissionStatus
from reaper.planners.rules import RuleBasedPlanner
from reaper.services.engine import EngineService
from reaper.services.registry import MemoryRegistry
from tests.infra import builders as b
from tests.infra.conftest import PG_URL, REDIS_URL, Kit
from tests.needs import port_open, require_service

# -- counting what a backend keeps --------------------------------------------------------


class Storage:
    """Reads a backend's storage behind its back: what the queue and bus still hold."""

    def __init__(self, kit: Kit, db: Path) -> None:
        self.kit = kit
        self.db = db
        self.pg: Any = None  # psycopg.AsyncConnection, for pgqueue
        self.redis: Any = None  # redis.asyncio.Redis, for redis

    async def open(self) -> None:
        # Imported here: the memory and SQLite runs need neither extra.
        if self.kit.kind == "pgqueue":
            import psycopg

            self.pg = await psycopg.AsyncConnection.connect(PG_URL, autocommit=True)
        elif self.kit.kind == "redis":
            import redis.asyncio as aioredis

            self.redis = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)

    async def close(self) -> None:
        if self.pg is not None:
            await self.pg.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def _rows(self, table: str, mission_id: str) -> int:
        if self.pg is not None:
            query = f'SELECT count(*) FROM "{self.kit.space}".{table} WHERE mission_id = %s'
            row = await (await self.pg.execute(query, (mission_id,))).fetchone()
        else:
            with sqlite3.connect(self.db) as conn:
                query = f"SELECT count(*) FROM {table} WHERE mission_id = ?"
                row = conn.execute(query, (mission_id,)).fetchone()
            conn.close()
        return int(row[0])

    async def tasks(self, mission_id: str, agent_type: str) -> int:
        """The mission's tasks the queue remembers, acked or not."""
        if self.kit.kind == "memory":
            queue = self.kit.backend.queue
            assert isinstance(queue, MemoryTaskQueue)
            return sum(1 for m in queue._seen.values() if m == mission_id)
        if self.redis is not None:
            entries = await self.redis.xrange(f"{self.kit.space}:q:{agent_type}")
            return sum(1 for _, fields in entries if f'"mission_id":"{mission_id}"' in fields["t"])
        return await self._rows("queue", mission_id)

    async def messages(self, mission_id: str) -> int:
        """The mission's inbound messages the bus holds, delivered or not."""
        if self.kit.kind == "memory":
            bus = self.kit.backend.bus
            assert isinstance(bus, MemoryEventBus)
            return len(bus._inbox.get(mission_id, ())) + len(bus._inflight.get(mission_id, {}))
        if self.redis is not None:
            return int(await self.redis.xlen(f"{self.kit.space}:bus:{mission_id}"))
        return await self._rows("inbox", mission_id)


@pytest.fixture
async def storage(kit: Kit, tmp_path: Path) -> AsyncIterator[Storage]:
    if kit.kind in ("amqp", "kafka"):
        # A broker keeps nothing a test can count behind its back per mission (RabbitMQ
        # forgets acked messages, Kafka holds records by offset): their prune and retire are
        # tested in test_amqp.py and test_kafka.py.
        pytest.skip(f"{kit.kind}: no storage to read behind the backend's back")
    s = Storage(kit, tmp_path / "reaper.db")  # the file conftest's sqlite kit opens
    await s.open()
    yield s
    await s.close()


# -- TaskQueue.prune ----------------------------------------------------------------------


async def test_prune_forgets_only_acked_tasks_of_finished_missions(
    kit: Kit, queue: TaskQueue, storage: Storage, uid: str
) -> None:
    agent, done, other = f"reaper-h{uid}", f"d-{uid}", f"o-{uid}"
    lease = kit.lease()
    await queue.publish([b.item(done, i, agent) for i in range(3)] + [b.item(other, 0, agent)])
    first = await queue.take(agent, max_items=4, timeout=1, lease_s=lease)
    assert len(first) == 4
    # done-0, done-1 and other-0 acked; done-2 stays leased; done-3 and other-1 wait.
    await queue.ack([d for d in first if d.task.task_id != f"{done}-s1-2"])
    await queue.publish([b.item(done, 3, agent), b.item(other, 1, agent)])
    acked_kept = 0 if kit.kind == "redis" else 1  # per acked task, before prune
    assert await storage.tasks(done, agent) == 2 + 2 * acked_kept
    assert await storage.tasks(other, agent) == 1 + acked_kept

    removed = await queue.prune([done])

    if kit.kind != "redis":  # Redis counts consumers deleted (none of this test's)
        assert removed == 2
    assert await storage.tasks(done, agent) == 2  # the leased and the waiting one
    assert await storage.tasks(other, agent) == 1 + acked_kept  # another mission: untouched
    # What was open is still handed out: the lease runs out, the waiting ones are there.
    await kit.advance(lease * 1.2)
    rest = await queue.take(agent, max_items=10, timeout=5, lease_s=lease)
    assert sorted(d.task.task_id for d in rest) == sorted(
        [f"{done}-s1-2", f"{done}-s1-3", f"{other}-s1-1"]
    )
    assert next(d for d in rest if d.task.task_id == f"{done}-s1-2").delivery_count == 2
    await queue.ack(rest)
    await queue.prune([done, other])
    assert (await storage.tasks(done, agent), await storage.tasks(other, agent)) == (0, 0)
    if kit.kind != "redis":
        assert await queue.prune([done, other]) == 0  # again: nothing left, no error
    assert await queue.take(agent, timeout=0.05) == []


async def test_prune_of_nothing_is_harmless(queue: TaskQueue, uid: str) -> None:
    await queue.prune([])
    await queue.prune([f"never-{uid}"])


# -- EventBus.retire ----------------------------------------------------------------------


async def test_retire_drops_the_named_missions_only(
    kit: Kit, bus: EventBus, storage: Storage, uid: str
) -> None:
    a, bb, c = f"a-{uid}", f"b-{uid}", f"c-{uid}"
    await bus.publish_many(
        [b.result(b.task(a, 0)), b.result(b.task(a, 1)), b.result(b.task(bb, 0))]
    )
    await bus.publish(b.result(b.task(c, 0)))
    in_flight = await bus.receive(a, timeout=1)  # received, never acked
    assert len(in_flight) == 2

    retired = await bus.retire([a, bb])

    assert retired == (2 if kit.kind == "redis" else 3)  # Redis: streams; others: messages
    assert [await storage.messages(m) for m in (a, bb, c)] == [0, 0, 1]
    got = await bus.receive(c, timeout=1)
    assert [d.message.task_id for d in got] == [f"{c}-s1-0"]
    await bus.ack(c, got)
    await bus.ack(a, in_flight)  # a late ack of a retired mission's messages: no error
    await bus.recover(a)
    assert await bus.receive(a, timeout=0.05) == []
    await bus.retire([a, bb])  # again (Redis: the empty stream `receive` made again)
    assert [await storage.messages(m) for m in (a, bb, c)] == [0, 0, 0]


async def test_a_message_published_after_retire_breaks_nothing(
    bus: EventBus, storage: Storage, uid: str
) -> None:
    mid = f"m-{uid}"
    await bus.publish(b.result(b.task(mid, 0)))
    got = await bus.receive(mid, timeout=1)
    await bus.ack(mid, got)
    waiter = asyncio.create_task(bus.receive(mid, timeout=30))
    for _ in range(5):  # let the receiver reach its wait (yielding, not sleeping)
        await asyncio.sleep(0)

    await bus.retire([mid])
    late = b.result(b.task(mid, 1))
    await bus.publish(late)

    # A receive still waiting when its mission was retired gets the late message.
    again = await asyncio.wait_for(waiter, timeout=10)
    assert [d.message.task_id for d in again] == [late.task_id]
    await bus.publish(b.result(b.task(mid, 2)))  # never received
    assert await storage.messages(mid) == 2
    assert await bus.retire([mid]) >= 1
    assert await storage.messages(mid) == 0
    assert await bus.receive(mid, timeout=0.05) == []


# -- Redis: consumers of the task queue's group -------------------------------------------


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[Any, str]]:
    require_service("redis", port_open("127.0.0.1", 6379), "no Redis on 127.0.0.1:6379")
    import redis.asyncio as aioredis

    raw = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    prefix = f"hk-{uuid.uuid4().hex[:10]}"
    yield raw, prefix
    keys = [k async for k in raw.scan_iter(match=f"{prefix}:*")]
    if keys:
        await raw.delete(*keys)
    await raw.aclose()


async def _consumers(raw: Any, stream: str) -> dict[str, int]:
    return {c["name"]: int(c["pending"]) for c in await raw.xinfo_consumers(stream, "workers")}


async def test_redis_prune_deletes_idle_consumers_without_pending(
    redis_prefix: tuple[Any, str],
) -> None:
    from reaper.infra.redis import RedisTaskQueue

    raw, prefix = redis_prefix
    agent, mid = "reaper-linux", "m1"
    # Idle threshold 0: every consumer without pending entries counts as stale, no waiting.
    eager = RedisTaskQueue(REDIS_URL, prefix=prefix, consumer_idle_s=0)
    patient = RedisTaskQueue(REDIS_URL, prefix=prefix)  # the default hour
    try:
        await eager.publish([b.item(mid, 0, agent), b.item(mid, 1, agent)])
        held = await eager.take(agent, timeout=1, lease_s=300, worker_id="busy")
        await eager.ack(await eager.take(agent, timeout=1, lease_s=300, worker_id="finished"))
        stream = eager.stream_key(agent)
        assert await _consumers(raw, stream) == {"busy": 1, "finished": 0}

        assert await patient.prune([mid]) == 0  # none idle for an hour
        assert await eager.prune([mid]) == 1

        assert await _consumers(raw, stream) == {"busy": 1}
        await eager.ack(held)  # the kept consumer's delivery is still its own to ack
        assert (await raw.xpending(stream, "workers"))["pending"] == 0
        assert await eager.prune([mid]) == 1
        # The de-duplication markers are not pruned: they expire on their own.
        ttl = await raw.ttl(f"{prefix}:seen:{mid}-s1-0:1")
        assert 0 < ttl <= 7 * 86_400
    finally:
        await eager.close()
        await patient.close()


# -- the engine service's janitor ---------------------------------------------------------


class _RecordingQueue(MemoryTaskQueue):
    """Reports each `prune` call; the calls numbered in `fail` raise a BackendError."""

    def __init__(self, clock: Clock, fail: Collection[int] = ()) -> None:
        super().__init__(clock)
        self.fail = set(fail)
        self.count = 0
        self.calls = asyncio.Queue[list[str]]()

    async def prune(self, finished: Collection[str]) -> int:
        self.count += 1
        self.calls.put_nowait(sorted(finished))
        if self.count in self.fail:
            raise BackendError("queue unreachable")
        return await super().prune(finished)

    async def next_call(self) -> list[str]:
        return await asyncio.wait_for(self.calls.get(), 5)


class _RecordingBus(MemoryEventBus):
    """Reports each `retire` call: the last backend call of a janitor round."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = asyncio.Queue[list[str]]()

    async def retire(self, mission_ids: Collection[str]) -> int:
        removed = await super().retire(mission_ids)
        self.calls.put_nowait(sorted(mission_ids))
        return removed


async def _mission(
    backend: Backend, clock: Clock, mid: str, status: MissionStatus, age_s: float
) -> None:
    """A mission last changed `age_s` ago, with an acked task and a message not received."""
    state = b.mission(mid, now=clock.now() - timedelta(seconds=age_s))
    state.status = status
    await backend.store.create(state, [])
    await backend.queue.publish([b.item(mid, 0)])
    await backend.queue.ack(await backend.queue.take("reaper-linux", timeout=1))
    await backend.bus.publish(b.result(b.task(mid, 0)))


async def _yield(times: int = 10) -> None:
    for _ in range(times):  # let the service's tasks reach their clock sleeps (not sleeping)
        await asyncio.sleep(0)


def _service(backend: Backend, clock: Clock, **kwargs: Any) -> EngineService:
    return EngineService(
        backend,
        MemoryRegistry(),
        planner_factory=lambda _: RuleBasedPlanner(),
        clock=clock,
        **kwargs,
    )


async def test_janitor_prunes_finished_missions_after_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    store, _, _ = memory_backend(clock)
    queue, bus = _RecordingQueue(clock, fail={2}), _RecordingBus()
    backend = Backend(store=store, queue=queue, bus=bus)
    await _mission(backend, clock, "old", MissionStatus.COMPLETED, age_s=600)
    await _mission(backend, clock, "recent", MissionStatus.FAILED, age_s=10)
    await _mission(backend, clock, "stopped", MissionStatus.STOPPED, age_s=600)
    service = _service(backend, clock, housekeeping_s=300, housekeeping_grace_s=60)
    stop = asyncio.Event()
    run = asyncio.create_task(service.run(stop))
    caplog.set_level(logging.INFO, logger="reaper.services.engine")
    try:
        await _yield()
        clock.advance(5)  # the first round, soon after start: "recent" is within its grace
        assert await queue.next_call() == ["old"]
        assert await asyncio.wait_for(bus.calls.get(), 5) == ["old"]
        assert list(queue._seen) == [("recent-s1-0", 1), ("stopped-s1-0", 1)]
        assert sorted(bus._inbox) == ["recent", "stopped"]
        assert "1 finished missions, 1 queue entries pruned, 1 bus entries retired" in caplog.text

        clock.advance(300)  # the queue fails: logged, the service goes on
        assert await queue.next_call() == ["old", "recent"]
        assert "housekeeping failed, will retry: queue unreachable" in caplog.text
        assert bus.calls.empty() and not run.done()

        await _yield()
        clock.advance(300)  # tried again: both finished missions, done twice is harmless
        assert await queue.next_call() == ["old", "recent"]
        assert await asyncio.wait_for(bus.calls.get(), 5) == ["old", "recent"]
        assert list(queue._seen) == [("stopped-s1-0", 1)]
        assert sorted(bus._inbox) == ["stopped"]
    finally:
        stop.set()
        await asyncio.wait_for(run, 5)


async def test_janitor_rounds_of_several_engines_are_safe_together(tmp_path: Path) -> None:
    clock = ManualClock()
    backends = [SqliteBackend(tmp_path / "reaper.db", clock=clock).as_backend() for _ in range(3)]
    try:
        for i in range(4):
            await _mission(backends[0], clock, f"m{i}", MissionStatus.COMPLETED, age_s=600)
        await _mission(backends[0], clock, "live", MissionStatus.STOPPED, age_s=600)
        services = [_service(be, clock) for be in backends]
        rounds = await asyncio.gather(*(s.housekeep() for s in services + services))
        totals = [r for r in rounds if r is not None]
        assert len(totals) == 6
        assert sum(r.pruned for r in totals) == 4  # each acked row deleted once, by someone
        assert sum(r.retired for r in totals) == 4
        with sqlite3.connect(tmp_path / "reaper.db") as conn:
            assert conn.execute("SELECT mission_id FROM queue").fetchall() == [("live",)]
            assert conn.execute("SELECT mission_id FROM inbox").fetchall() == [("live",)]
        conn.close()
    finally:
        for be in backends:
            await be.close()
