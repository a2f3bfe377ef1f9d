"""PostgreSQL-only queue and bus: what the contract suite (kind "pgqueue") cannot show.

SKIP LOCKED across connections, a wake-up from another connection's NOTIFY, redelivery after
lease expiry, and a whole mission on `postgresql://…` alone. The database is shared: every
test uses its own agent types and mission ids.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from reaper.bench.space import drop_schema
from reaper.errors import BackendError
from reaper.infra.base import TaskDelivery
from reaper.infra.factory import open_backend
from reaper.infra.postgres import PostgresMissionStore
from reaper.infra.postgres_queue import PostgresEventBus, PostgresTaskQueue
from reaper.models import EventKind, MissionStatus
from reaper.overseer import Overseer
from reaper.runtime import LocalWorkers
from tests.infra import builders as b
from tests.needs import port_open, require_service
from tests.services.harness import lab

pytestmark = [pytest.mark.services, pytest.mark.timeout(60)]

DSN = "postgresql://127.0.0.1:5432/test"


@pytest.fixture
async def uid() -> AsyncIterator[str]:
    """A unique id, and the PostgreSQL schema `pgq_<id>` dropped after the test."""
    require_service("postgresql", port_open("127.0.0.1", 5432), "nothing on 127.0.0.1:5432")
    value = uuid.uuid4().hex[:10]
    yield value
    await drop_schema(DSN, f"pgq_{value}")


@pytest.fixture
async def queues(uid: str) -> AsyncIterator[tuple[PostgresTaskQueue, PostgresTaskQueue]]:
    """Two queues: two processes' worth of connections to the same tables."""
    one = PostgresTaskQueue(DSN, schema=f"pgq_{uid}")
    two = PostgresTaskQueue(DSN, schema=f"pgq_{uid}")
    yield one, two
    await one.close()
    await two.close()


async def test_concurrent_takers_never_share_a_task(
    queues: tuple[PostgresTaskQueue, PostgresTaskQueue], uid: str
) -> None:
    one, two = queues
    agent, mid, n = f"reaper-p{uid}", f"m-{uid}", 60
    await one.publish([b.item(mid, i, agent) for i in range(n)])

    async def drain(q: PostgresTaskQueue) -> list[TaskDelivery]:
        got: list[TaskDelivery] = []
        while batch := await q.take(agent, max_items=3, timeout=0.2, lease_s=60):
            got += batch
        return got

    takers = [drain(q) for q in (one, two, one, two)]  # two per connection too
    results = await asyncio.wait_for(asyncio.gather(*takers), timeout=20)
    ids = [d.task.task_id for got in results for d in got]
    assert len(ids) == n
    assert len(set(ids)) == n
    assert await one.depth(agent) == 0


async def test_blocked_take_wakes_on_publish_from_another_connection(
    queues: tuple[PostgresTaskQueue, PostgresTaskQueue], uid: str
) -> None:
    taker, publisher = queues
    agent, mid = f"reaper-w{uid}", f"m-{uid}"
    await taker.take(agent, timeout=0.01)  # listening and connected before we publish
    # The safety re-check is seconds away: only the NOTIFY can wake it within 2 s.
    waiter = asyncio.create_task(taker.take(agent, timeout=30))
    await asyncio.sleep(0)
    assert not waiter.done()
    await publisher.publish([b.item(mid, 1, agent)])
    got = await asyncio.wait_for(waiter, timeout=2)
    assert [d.task.task_id for d in got] == [f"{mid}-s1-1"]
    await taker.ack(got)


async def test_blocked_receive_wakes_on_publish_from_another_connection(uid: str) -> None:
    receiver = PostgresEventBus(DSN, schema=f"pgq_{uid}")
    publisher = PostgresEventBus(DSN, schema=f"pgq_{uid}")
    try:
        mid = f"m-{uid}"
        await receiver.receive(mid, timeout=0.01)
        waiter = asyncio.create_task(receiver.receive(mid, timeout=30))
        await publisher.publish(b.result(b.task(mid, 1)))
        got = await asyncio.wait_for(waiter, timeout=2)
        assert [d.message.mission_id for d in got] == [mid]
        await receiver.ack(mid, got)
    finally:
        await receiver.close()
        await publisher.close()


async def test_publishes_while_one_is_on_its_way_go_out_together(uid: str) -> None:
    bus = PostgresEventBus(DSN, schema=f"pgq_{uid}")
    try:
        mid = f"m-{uid}"
        await bus.publish(b.result(b.task(mid, 0)))  # connected: only the publishes count
        before = bus.statements
        await asyncio.gather(*(bus.publish(b.result(b.task(mid, i))) for i in range(1, 6)))
        # The first goes alone; the four that came while it was on its way, in one statement.
        assert bus.statements - before == 2
        got = await bus.receive(mid, timeout=1)
        assert [d.message.task_id for d in got] == [f"{mid}-s1-{i}" for i in range(6)]
    finally:
        await bus.close()


async def test_a_failed_grouped_publish_fails_each_of_its_waiters(uid: str) -> None:
    bus = PostgresEventBus(DSN, schema=f"pgq_{uid}")
    try:
        mid = f"m-{uid}"
        await bus.publish(b.result(b.task(mid, 0)))
        bad = b.result(b.task(mid, 2)).model_copy(update={"mission_id": "m\x00"})  # text has no NUL
        outcome = await asyncio.gather(
            bus.publish(b.result(b.task(mid, 1))),
            bus.publish(bad),  # these two wait behind the first and fail together
            bus.publish(b.result(b.task(mid, 3))),
            return_exceptions=True,
        )
        assert outcome[0] is None
        assert [type(o) for o in outcome[1:]] == [BackendError, BackendError]
        await asyncio.wait_for(bus.publish(b.result(b.task(mid, 4))), timeout=5)
        got = await bus.receive(mid, timeout=1)
        assert [d.message.task_id for d in got] == [f"{mid}-s1-{i}" for i in (0, 1, 4)]
    finally:
        await bus.close()


async def test_expired_lease_is_redelivered_with_count_two(
    queues: tuple[PostgresTaskQueue, PostgresTaskQueue], uid: str
) -> None:
    dead, alive = queues
    agent, mid = f"reaper-l{uid}", f"m-{uid}"
    await dead.publish([b.item(mid, 1, agent)])
    first = await dead.take(agent, timeout=1, lease_s=0.3, worker_id="dead")
    assert [d.delivery_count for d in first] == [1]
    # A waiter on another connection wakes at the lease deadline it reads from the table.
    again = await asyncio.wait_for(alive.take(agent, timeout=10, worker_id="alive"), timeout=5)
    assert [(d.task.task_id, d.delivery_count) for d in again] == [(f"{mid}-s1-1", 2)]
    await dead.ack(first)  # the stale receipt does nothing
    assert await alive.take(agent, timeout=0.05) == []
    await alive.ack(again)


async def test_one_postgresql_url_is_a_complete_backend() -> None:
    backend = open_backend(DSN)  # lazy: builds without connecting
    try:
        assert isinstance(backend.store, PostgresMissionStore)
        assert isinstance(backend.queue, PostgresTaskQueue)
        assert isinstance(backend.bus, PostgresEventBus)
    finally:
        await backend.close()
    mixed = open_backend("redis+postgres")
    try:
        assert isinstance(mixed.store, PostgresMissionStore)
        assert not isinstance(mixed.queue, PostgresTaskQueue)
    finally:
        await mixed.close()


async def test_a_mission_completes_on_postgresql_alone(uid: str) -> None:
    backend = open_backend(f"{DSN}?schema=pgq_{uid}")
    workers = LocalWorkers(backend, concurrency=16)
    try:
        overseer = Overseer(backend)
        state = await overseer.create_mission(lab(20), f"pgq-{uid}")
        workers.start()
        final = await asyncio.wait_for(overseer.run_mission(state.mission_id), timeout=30)
        assert final.status is MissionStatus.COMPLETED
        events = await backend.store.events(state.mission_id)
        # Every host discovered and baselined: two results each, applied once.
        assert sum(e.kind is EventKind.TASK_RESULT for e in events) == 2 * 20
    finally:
        await workers.stop()
        await backend.close()
