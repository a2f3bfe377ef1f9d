"""What only the SQLite backend promises: durability, cross-process wake-ups, schema
versioning, and commits whose cost does not grow with the mission."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from reaper.clock import ManualClock, RealClock
from reaper.errors import BackendError
from reaper.infra.base import Commit
from reaper.infra.sqlite import DB_SCHEMA_VERSION, SqliteBackend
from reaper.models import EventKind, TaskRecord
from tests.infra import builders as b

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "reaper.db"


@pytest.fixture
async def sq(db_path: Path) -> AsyncIterator[SqliteBackend]:
    backend = SqliteBackend(db_path)
    yield backend
    await backend.close()


async def test_everything_survives_reopening_the_file(db_path: Path) -> None:
    first = SqliteBackend(db_path)
    state = b.mission("m1")
    await first.store.create(state, [b.event("m1", EventKind.MISSION_CREATED)])
    loaded = await first.store.load("m1")
    assert loaded is not None
    outbox = [b.item("m1", 5)]
    await first.store.commit(
        Commit(mission=loaded, expected_version=0, events=[b.event("m1")], outbox=outbox)
    )
    await first.queue.publish([b.item("m1", i) for i in range(3)])
    leased = await first.queue.take("reaper-linux", timeout=1)
    await first.queue.ack(leased)
    message = b.result(b.task("m1", 0))
    await first.bus.publish(message)
    assert len(await first.bus.receive("m1", timeout=1)) == 1  # delivered, never acked
    await first.close()

    second = SqliteBackend(db_path)
    try:
        again = await second.store.load("m1")
        assert again is not None and again.version == 1
        assert again.model_copy(update={"version": 0}) == state
        assert [e.kind for e in await second.store.events("m1")] == [
            EventKind.MISSION_CREATED,
            EventKind.TASK_PLANNED,
        ]
        assert await second.store.unsent("m1") == outbox
        got = await second.queue.take("reaper-linux", max_items=10, timeout=1)
        assert [d.task.params["i"] for d in got] == [1, 2]
        await second.queue.publish([b.item("m1", 0)])  # acked before the restart: ignored
        assert await second.queue.depth("reaper-linux") == 0
        await second.bus.recover("m1")
        redelivered = await second.bus.receive("m1", timeout=1)
        assert [d.message for d in redelivered] == [message]
        assert redelivered[0].delivery_count == 2
    finally:
        await second.close()


async def test_a_second_connection_wakes_a_waiting_take(db_path: Path) -> None:
    # Two backend objects on one file share no in-process notification: the waiter sees
    # the other connection's commit through PRAGMA data_version.
    waiter, publisher = SqliteBackend(db_path), SqliteBackend(db_path)
    try:
        take = asyncio.create_task(waiter.queue.take("reaper-linux", timeout=10))
        receive = asyncio.create_task(waiter.bus.receive("m1", timeout=10))
        for _ in range(5):
            await asyncio.sleep(0)
        await publisher.queue.publish([b.item("m1", 1)])
        await publisher.bus.publish(b.approval("m1", "t1"))
        got = await asyncio.wait_for(take, timeout=3)
        assert [d.task.task_id for d in got] == ["m1-s1-1"]
        messages = await asyncio.wait_for(receive, timeout=3)
        assert [d.message.task_id for d in messages] == ["t1"]
    finally:
        await waiter.close()
        await publisher.close()


_PUBLISH_FROM_ANOTHER_PROCESS = """
import asyncio, sys
from reaper.infra.sqlite import SqliteBackend
from reaper.models import ApprovalDecision

async def main() -> None:
    backend = SqliteBackend(sys.argv[1])
    await backend.bus.publish(ApprovalDecision(mission_id="m1", task_id="t9", approved=True))
    await backend.close()

asyncio.run(main())
"""


async def test_another_process_wakes_a_waiting_receive(sq: SqliteBackend, db_path: Path) -> None:
    receive = asyncio.create_task(sq.bus.receive("m1", timeout=30))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PUBLISH_FROM_ANOTHER_PROCESS, str(db_path), cwd=REPO
    )
    assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    got = await asyncio.wait_for(receive, timeout=5)
    assert [(d.message.task_id, d.message.approved) for d in got] == [("t9", True)]


async def test_concurrent_takers_on_two_connections_never_share_a_task(db_path: Path) -> None:
    a, c = SqliteBackend(db_path), SqliteBackend(db_path)
    try:
        await a.queue.publish([b.item("m1", i) for i in range(200)])

        async def drain(backend: SqliteBackend) -> list[str]:
            seen: list[str] = []
            while got := await backend.queue.take("reaper-linux", max_items=7, timeout=0.05):
                seen += [d.task.task_id for d in got]
                await backend.queue.ack(got)
            return seen

        first, second = await asyncio.gather(drain(a), drain(c))
        assert sorted(first + second) == sorted(f"m1-s1-{i}" for i in range(200))
    finally:
        await a.close()
        await c.close()


async def test_waiting_take_wakes_on_time_for_delays_and_leases(sq: SqliteBackend) -> None:
    loop = asyncio.get_running_loop()
    soon = RealClock().now() + timedelta(seconds=0.2)
    await sq.queue.publish([b.item("m1", 1, not_before=soon)])
    start = loop.time()
    got = await sq.queue.take("reaper-linux", timeout=5, lease_s=0.2)
    assert [d.task.task_id for d in got] == ["m1-s1-1"]
    assert 0.15 <= loop.time() - start < 1.5
    start = loop.time()
    again = await sq.queue.take("reaper-linux", timeout=5)  # lease runs out meanwhile
    assert again[0].delivery_count == 2
    assert 0.15 <= loop.time() - start < 1.5


async def test_an_ack_from_an_expired_lease_does_not_ack_the_new_one(db_path: Path) -> None:
    clock = ManualClock()
    sq = SqliteBackend(db_path, clock=clock)
    try:
        await sq.queue.publish([b.item("m1", 1)])
        old = await sq.queue.take("reaper-linux", timeout=1, lease_s=5)
        clock.advance(6)
        new = await sq.queue.take("reaper-linux", timeout=1, lease_s=5)
        await sq.queue.ack(old)
        clock.advance(6)
        third = await sq.queue.take("reaper-linux", timeout=1)
        assert [d.delivery_count for d in (old[0], new[0], third[0])] == [1, 2, 3]
    finally:
        await sq.close()


async def test_a_newer_schema_is_refused(db_path: Path) -> None:
    await SqliteBackend(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(99),))
    conn.close()
    with pytest.raises(BackendError, match="schema version 99, newer"):
        SqliteBackend(db_path)
    reopened = sqlite3.connect(db_path)
    assert reopened.execute("SELECT value FROM meta").fetchone()[0] == "99"
    reopened.close()
    assert DB_SCHEMA_VERSION < 99


def test_a_non_database_file_is_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(BackendError):
        SqliteBackend(path)


async def _statements_per_commit(sq: SqliteBackend, mission_id: str, hosts: int) -> list[str]:
    state = b.mission(mission_id, hosts=hosts)
    await sq.store.create(state, [])
    statements: list[str] = []
    sq.db.conn.set_trace_callback(statements.append)
    try:
        host = state.hosts["h00001"].model_copy(update={"failure_count": 1})
        record = TaskRecord(task=b.task(mission_id, 40))
        await sq.store.commit(
            Commit(
                mission=state,
                expected_version=0,
                hosts=[host],
                tasks=[record],
                events=[b.event(mission_id)],
                outbox=[b.item(mission_id, 40)],
            )
        )
    finally:
        sq.db.conn.set_trace_callback(None)
    return statements


async def test_commit_cost_does_not_grow_with_the_mission(sq: SqliteBackend) -> None:
    small = await _statements_per_commit(sq, "small", hosts=10)
    large = await _statements_per_commit(sq, "large", hosts=5_000)
    assert len(small) == len(large) <= 8
    assert [s.split()[0] for s in small] == [s.split()[0] for s in large]


async def test_closing_wakes_waiters_with_an_error(db_path: Path) -> None:
    sq = SqliteBackend(db_path)
    waiter = asyncio.create_task(sq.queue.take("reaper-linux", timeout=30))
    for _ in range(5):
        await asyncio.sleep(0)
    await sq.close()
    with pytest.raises(BackendError, match="closed"):
        await asyncio.wait_for(waiter, timeout=2)


async def test_a_notify_racing_a_waiters_timer_is_not_lost(sq: SqliteBackend) -> None:
    # The waiter's backoff timer fires and, before the waiter resumes, a publish from this
    # process notifies: the wake-up must not be lost (data_version does not move for our
    # own connection's commits, so nothing else would rescue it).
    take = asyncio.create_task(sq.queue.take("reaper-linux", timeout=30))
    for _ in range(5):
        await asyncio.sleep(0)
    waiters = sq.db._waiters[("queue", "reaper-linux")]
    assert waiters.futures
    for fut in list(waiters.futures):
        fut.set_result(False)  # as the timer does
    await sq.queue.publish([b.item("m1", 1)])
    got = await asyncio.wait_for(take, timeout=2)
    assert [d.task.task_id for d in got] == ["m1-s1-1"]


def _open_at_once(path: str, barrier: Any, results: Any) -> None:
    from reaper.infra.sqlite_db import SqliteDatabase

    barrier.wait()
    try:
        SqliteDatabase(path).close()
        results.put("ok")
    except BackendError as exc:
        results.put(str(exc))


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    # Seen in CI: `reaper run` and its worker process created the file together, and one
    # failed with "database is locked" switching it to WAL (that switch skips busy_timeout).
    # Without the retry, runs of these 60 rounds failed 1 to 5 opens.
    ctx = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for round_ in range(60):
        path = str(tmp_path / f"race{round_}.db")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(path, barrier, results)) for _ in range(6)]
        for proc in procs:
            proc.start()
        outcomes += [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
    assert [o for o in outcomes if o != "ok"] == []
