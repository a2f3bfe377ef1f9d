"""PostgreSQL-specific behaviour of the mission store (the shared semantics are in
test_contract.py). Each test gets its own PostgreSQL schema on the local server (db `test`)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from reaper.clock import ManualClock
from reaper.errors import BackendError, MissionExistsError, StaleStateError
from reaper.infra.base import Commit, OutboxItem
from reaper.infra.postgres import PostgresMissionStore
from reaper.infra.postgres_schema import LATEST, MIGRATIONS
from reaper.models import (
    EventKind,
    EventRecord,
    HostState,
    HostStatus,
    MissionState,
    MissionStatus,
    Task,
    TaskRecord,
)
from tests.needs import port_open, require_service

pytestmark = pytest.mark.services

DSN = os.environ.get("REAPER_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")


def _mission(mid: str, hosts: int = 2) -> MissionState:
    return MissionState(
        mission_id=mid,
        lab_type="test",
        hosts={f"h{i}": HostState(host_id=f"h{i}", os="linux") for i in range(hosts)},
    )


def _event(mid: str, kind: EventKind = EventKind.TASK_PLANNED, **payload: object) -> EventRecord:
    return EventRecord(mission_id=mid, kind=kind, payload=dict(payload))


def _task(mid: str, tid: str) -> Task:
    return Task(
        task_id=tid,
        mission_id=mid,
        host_id="h0",
        agent_type="reaper-linux",
        action="linux.discover",
    )


def _change(state: MissionState, *, tid: str = "t1", host: str = "h0") -> Commit:
    """A typical engine step: one host, one task, one event, one outbox entry."""
    mid = state.mission_id
    h = state.hosts[host].model_copy(update={"last_status": HostStatus.HEALTHY})
    task = _task(mid, tid)
    return Commit(
        mission=state.model_copy(update={"step": state.step + 1}),
        expected_version=state.version,
        hosts=[h],
        tasks=[TaskRecord(task=task, step=state.step + 1)],
        events=[_event(mid, task_id=tid)],
        outbox=[OutboxItem(task)],
    )


@pytest.fixture
def schema() -> str:
    require_service("postgres", port_open("127.0.0.1", 5432), "no PostgreSQL on 127.0.0.1:5432")
    return f"rt_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def admin(schema: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    conn = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    yield conn
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]
    await conn.close()


@pytest.fixture
async def store(
    schema: str, admin: psycopg.AsyncConnection[tuple[object, ...]]
) -> AsyncIterator[PostgresMissionStore]:
    s = PostgresMissionStore(DSN, schema=schema)
    yield s
    await s.close()


async def test_create_load_commit_round_trip(store: PostgresMissionStore) -> None:
    state = _mission("m1", hosts=3)
    await store.create(state, [_event("m1", EventKind.MISSION_CREATED)])
    with pytest.raises(MissionExistsError):
        await store.create(state, [])
    loaded = await store.load("m1")
    assert loaded is not None and loaded.model_dump() == state.model_dump()

    version = await store.commit(_change(loaded))
    assert version == 1
    after = await store.load("m1")
    assert after is not None and after.version == 1 and after.step == 1
    assert after.hosts["h0"].last_status is HostStatus.HEALTHY
    assert after.tasks["t1"].task.task_id == "t1" and after.pending_tasks == ["t1"]
    assert [e.seq for e in await store.events("m1")] == [1, 2]
    assert [e.kind for e in await store.events("m1", after_seq=1)] == [EventKind.TASK_PLANNED]
    assert [i.task.key for i in await store.unsent("m1")] == [("t1", 1)]
    await store.mark_sent("m1", [("t1", 1)])
    assert await store.unsent("m1") == []
    host = await store.get_host("m1", "h0")
    assert host is not None and host.last_status is HostStatus.HEALTHY
    [summary] = await store.list_missions()
    assert (summary.mission_id, summary.hosts, summary.version) == ("m1", 3, 1)
    assert summary.status is MissionStatus.RUNNING

    with pytest.raises(StaleStateError):
        await store.commit(_change(loaded))  # still at version 0


async def test_schema_migration_is_idempotent(
    schema: str, admin: psycopg.AsyncConnection[tuple[object, ...]]
) -> None:
    for _ in range(2):
        s = PostgresMissionStore(DSN, schema=schema)
        await s.connect()
        await s.close()
    # Two stores opening together serialise on the advisory lock.
    racers = [PostgresMissionStore(DSN, schema=schema) for _ in range(3)]
    await asyncio.gather(*(r.connect() for r in racers))
    for r in racers:
        await r.close()
    cur = await admin.execute(f'SELECT version FROM "{schema}".schema_migrations')  # type: ignore[arg-type]
    assert [row[0] for row in await cur.fetchall()] == list(range(1, LATEST + 1))


async def test_upgrade_from_version_3(
    schema: str, admin: psycopg.AsyncConnection[tuple[object, ...]]
) -> None:
    """A schema a previous release left at version 3 is migrated on first use: its missions
    and unsent outbox entries carry over, missions create, load and commit as before, without
    the per-row foreign-key checks or JSON parsing, and the host and task tables keep room
    for HOT updates."""
    async with await psycopg.AsyncConnection.connect(DSN) as conn, conn.transaction():
        await conn.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[arg-type]
        await conn.execute(
            f'CREATE TABLE "{schema}".schema_migrations (version int PRIMARY KEY, '  # type: ignore[arg-type]
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, steps in MIGRATIONS:
            if version > 3:
                break
            for step in steps:
                await conn.execute(psycopg.sql.SQL(step).format(s=psycopg.sql.Identifier(schema)))
            await conn.execute(
                f'INSERT INTO "{schema}".schema_migrations VALUES (%s)',  # type: ignore[arg-type]
                (version,),
            )
        # A mission written by the previous release, its documents in json columns.
        before = _mission("m0")
        await conn.execute(
            f'INSERT INTO "{schema}".missions (mission_id, lab_type, status, goal_reached, '  # type: ignore[arg-type]
            "step, settings, version, created_at, updated_at, header) "
            "VALUES ('m0', 'test', 'running', false, 0, '{}', 0, now(), now(), %s::json)",
            (before.model_dump_json(exclude={"hosts", "tasks", "version", "status", "step"}),),
        )
        for host in before.hosts.values():
            await conn.execute(
                f'INSERT INTO "{schema}".hosts VALUES (%s, %s, %s::json)',  # type: ignore[arg-type]
                ("m0", host.host_id, host.model_dump_json()),
            )
        # Three queued tasks in its outbox table, the first already sent.
        for tid, sent in (("t1", True), ("t2", False), ("t3", False)):
            task = _task("m0", tid)
            await conn.execute(
                f'INSERT INTO "{schema}".tasks VALUES (%s, %s, %s, %s::json)',  # type: ignore[arg-type]
                ("m0", tid, "queued", TaskRecord(task=task).model_dump_json()),
            )
            await conn.execute(
                f'INSERT INTO "{schema}".outbox (mission_id, task_id, attempt, task, sent) '  # type: ignore[arg-type]
                "VALUES (%s, %s, 1, %s::json, %s)",
                ("m0", tid, task.model_dump_json(), sent),
            )
    old = PostgresMissionStore(DSN, schema=schema)  # opens at 3 → migrates to LATEST
    loaded = await old.load("m0")
    assert loaded is not None and loaded.hosts == before.hosts
    # The unsent entries carried over into the task rows, in their order.
    assert [i.task.task_id for i in await old.unsent("m0")] == ["t2", "t3"]
    await old.mark_sent("m0", [("t2", 1)])
    assert [i.task.task_id for i in await old.unsent("m0")] == ["t3"]
    await old.create(_mission("m1"), [_event("m1", EventKind.MISSION_CREATED)])
    state = await old.load("m1")
    assert state is not None
    assert await old.commit(_change(state)) == 1
    await old.mark_sent("m1", [("t1", 1)])
    await old.close()
    cur = await admin.execute(
        "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE n.nspname = %s AND c.contype = 'f'",
        (schema,),
    )
    assert await cur.fetchone() == (0,)
    cur = await admin.execute(
        "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname IN ('hosts', 'tasks')",
        (schema,),
    )
    options = {name: sorted(opts) for name, opts in await cur.fetchall()}
    assert options == {
        "hosts": ["fillfactor=50", "toast_tuple_target=4080"],
        "tasks": ["fillfactor=60"],
    }
    cur = await admin.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND column_name IN ('doc', 'payload', 'task')",
        (schema,),
    )
    assert sorted(await cur.fetchall()) == [
        ("events", "payload", "text"),
        ("hosts", "doc", "text"),
        ("tasks", "doc", "text"),
    ]
    cur = await admin.execute(f'SELECT version FROM "{schema}".schema_migrations')  # type: ignore[arg-type]
    assert [row[0] for row in await cur.fetchall()] == list(range(1, LATEST + 1))


async def test_newer_schema_is_refused(
    store: PostgresMissionStore, schema: str, admin: psycopg.AsyncConnection[tuple[object, ...]]
) -> None:
    await store.connect()
    await admin.execute(
        f'INSERT INTO "{schema}".schema_migrations (version) VALUES (%s)',  # type: ignore[arg-type]
        (LATEST + 1,),
    )
    newer = PostgresMissionStore(DSN, schema=schema)
    with pytest.raises(BackendError, match="newer"):
        await newer.connect()
    await newer.close()


async def test_concurrent_commits_on_one_version_exactly_one_wins(
    store: PostgresMissionStore, schema: str
) -> None:
    state = _mission("race")
    await store.create(state, [])
    writers = [PostgresMissionStore(DSN, schema=schema) for _ in range(4)]
    try:
        for w in writers:
            await w.connect()
        outcomes = await asyncio.gather(
            *(w.commit(_change(state, tid=f"t{i}")) for i, w in enumerate(writers)),
            return_exceptions=True,
        )
    finally:
        for w in writers:
            await w.close()
    assert sorted(type(o).__name__ for o in outcomes) == ["StaleStateError"] * 3 + ["int"]
    after = await store.load("race")
    assert after is not None and after.version == 1 and len(after.tasks) == 1
    assert len(await store.events("race")) == 1 and len(await store.unsent("race")) == 1


async def test_failed_commit_leaves_neither_state_nor_outbox(
    store: PostgresMissionStore, schema: str, admin: psycopg.AsyncConnection[tuple[object, ...]]
) -> None:
    state = _mission("atomic")
    await store.create(state, [])
    # The database refuses the task row (which holds the outbox entry), among the header,
    # host and event writes of the same statement.
    await admin.execute(
        f"""CREATE FUNCTION "{schema}".boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.task_id = 'boom' THEN RAISE EXCEPTION 'injected'; END IF;
        RETURN NEW; END $$"""  # type: ignore[arg-type]
    )
    await admin.execute(
        f'CREATE TRIGGER boom BEFORE INSERT ON "{schema}".tasks '  # type: ignore[arg-type]
        f'FOR EACH ROW EXECUTE FUNCTION "{schema}".boom()'
    )
    with pytest.raises(BackendError, match="injected"):
        await store.commit(_change(state, tid="boom"))
    after = await store.load("atomic")
    assert after is not None
    assert after.model_dump() == state.model_dump()  # header, hosts, tasks untouched
    assert await store.events("atomic") == [] and await store.unsent("atomic") == []
    # The same store (same connection) carries on.
    assert await store.commit(_change(state, tid="t-ok")) == 1
    assert [i.task.task_id for i in await store.unsent("atomic")] == ["t-ok"]


async def test_commit_cost_does_not_grow_with_the_mission(store: PostgresMissionStore) -> None:
    costs = []
    for mid, hosts in (("small", 5), ("large", 2000)):
        state = _mission(mid, hosts=hosts)
        await store.create(state, [])
        before = store.statements
        await store.commit(_change(state))
        costs.append(store.statements - before)
    assert costs[0] == costs[1] == 1  # one statement: header, hosts, tasks, events, outbox


async def test_claim_and_release_lease(schema: str, admin: object) -> None:
    clock = ManualClock()
    a = PostgresMissionStore(DSN, schema=schema, clock=clock)
    b = PostgresMissionStore(DSN, schema=schema, clock=clock)
    try:
        assert await a.claim("m", "engine-a", ttl_s=10)
        assert not await b.claim("m", "engine-b", ttl_s=10)
        assert await a.claim("m", "engine-a", ttl_s=10)  # renewal
        clock.advance(11)
        assert await b.claim("m", "engine-b", ttl_s=10)  # taken over once expired
        assert not await a.claim("m", "engine-a", ttl_s=10)
        await a.release("m", "engine-a")  # not the holder: no effect
        assert not await a.claim("m", "engine-a", ttl_s=10)
        await b.release("m", "engine-b")
        assert await a.claim("m", "engine-a", ttl_s=10)
    finally:
        await a.close()
        await b.close()


async def _kill(admin: psycopg.AsyncConnection[object], store: PostgresMissionStore) -> None:
    """Terminate the store's server sessions (white-box: they carry its application_name)."""
    await admin.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = %s",
        (store._pg.application_name,),
    )


async def test_reconnects_after_the_connection_is_killed(
    store: PostgresMissionStore, admin: psycopg.AsyncConnection[object]
) -> None:
    await store.create(_mission("conn"), [])
    await _kill(admin, store)
    # A read finding the connection dead reconnects and runs again: the caller sees nothing.
    assert await store.load("conn") is not None
    await _kill(admin, store)
    assert await store.claim("conn", "engine-a", ttl_s=10)
    # A commit is not repeated blindly (it may have been applied): it fails as BackendError,
    # and the next call works on a new connection.
    await _kill(admin, store)
    state = await store.load("conn")
    assert state is not None
    await _kill(admin, store)
    with pytest.raises(BackendError):
        await store.commit(_change(state))
    assert await store.commit(_change(state)) == 1


async def test_an_outbox_entry_needs_its_task_record_in_the_commit(
    store: PostgresMissionStore,
) -> None:
    """The entry lives in the record's row: an entry without one is a caller's bug, refused
    before anything is written."""
    state = _mission("orphan")
    await store.create(state, [])
    change = Commit(mission=state, expected_version=0, outbox=[OutboxItem(_task("orphan", "t1"))])
    with pytest.raises(ValueError, match="1 outbox entry without the task record"):
        await store.commit(change)
    after = await store.load("orphan")
    assert after is not None and after.version == 0 and await store.unsent("orphan") == []
