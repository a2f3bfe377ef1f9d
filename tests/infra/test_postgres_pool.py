"""The PostgreSQL connection pool (`PgConnection`): concurrent sessions, the pool size as the
limit, dead connections replaced, one migration, idempotent close. Each test gets its own
schema on the local server (db `test`) and finds its server sessions by application_name."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from reaper.errors import BackendError, ConfigError
from reaper.infra import postgres_conn
from reaper.infra.postgres_conn import PgConnection
from reaper.infra.postgres_queue import PostgresTaskQueue
from reaper.infra.postgres_schema import LATEST
from tests.needs import port_open, require_service

pytestmark = [pytest.mark.services, pytest.mark.timeout(60)]

DSN = "postgresql://127.0.0.1:5432/test"

Admin = psycopg.AsyncConnection[tuple[Any, ...]]


@pytest.fixture
def schema() -> str:
    require_service("postgres", port_open("127.0.0.1", 5432), "no PostgreSQL on 127.0.0.1:5432")
    return f"pp_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def admin(schema: str) -> AsyncIterator[Admin]:
    conn = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
    yield conn
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]
    await conn.close()


@asynccontextmanager
async def _pool(schema: str, **kwargs: Any) -> AsyncIterator[PgConnection]:
    db = PgConnection(DSN, schema, **kwargs)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def db(schema: str, admin: Admin) -> AsyncIterator[PgConnection]:
    async with _pool(schema, pool_size=3) as db:
        yield db


async def _scalar(db: PgConnection, query: str) -> Any:
    async def run(conn: psycopg.AsyncConnection[Any]) -> Any:
        cur = await conn.execute(query)  # type: ignore[arg-type]
        row = None if cur.description is None else await cur.fetchone()
        return None if row is None else row[0]

    return await asyncio.wait_for(db.run(run, retry=True), timeout=10)


async def _hold(db: PgConnection, n: int) -> list[int]:
    """Hold `n` sessions at once, each running a query (so the pool grows to `n` working
    connections), and return their backend pids."""
    all_in = asyncio.Barrier(n)

    async def one() -> int:
        async with db.session() as conn:
            await conn.execute("SELECT 1")
            await all_in.wait()
            return conn.info.backend_pid

    return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(n))), timeout=10)


async def _kill_all(admin: Admin, db: PgConnection) -> set[int]:
    """Terminate every server session of `db`'s pool; return the pids killed."""
    cur = await admin.execute(
        "SELECT pid, pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
        "WHERE application_name = %s",
        (db.application_name,),
    )
    return {pid for pid, killed in await cur.fetchall() if killed}


async def test_a_read_does_not_wait_behind_an_open_transaction(
    db: PgConnection, schema: str
) -> None:
    await _scalar(db, f'CREATE TABLE "{schema}".t (x int)')
    holding, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.session() as conn, conn.transaction():
            await conn.execute(f'INSERT INTO "{schema}".t VALUES (1)')  # type: ignore[arg-type]
            holding.set()
            await release.wait()

    task = asyncio.create_task(writer())
    try:
        await asyncio.wait_for(holding.wait(), timeout=10)
        # Another connection: it completes while the transaction is open, and does not see it.
        assert await _scalar(db, f'SELECT count(*) FROM "{schema}".t') == 0
        assert not task.done()
    finally:
        release.set()
        await asyncio.wait_for(task, timeout=10)
    assert await _scalar(db, f'SELECT count(*) FROM "{schema}".t') == 1


async def test_pool_size_one_serialises_sessions(schema: str, admin: Admin) -> None:
    async with _pool(schema, pool_size=1, timeout=0.3) as db:
        holding, release = asyncio.Event(), asyncio.Event()
        first_pid = await _scalar(db, "SELECT pg_backend_pid()")

        async def holder() -> None:
            async with db.session():
                holding.set()
                await release.wait()

        task = asyncio.create_task(holder())
        try:
            await asyncio.wait_for(holding.wait(), timeout=10)
            # The only connection is taken: the call gets a BackendError, not a hang, and is
            # not retried (a pool timeout is no lost connection).
            with pytest.raises(BackendError) as caught:
                await _scalar(db, "SELECT 1")
            assert isinstance(caught.value.__cause__, PoolTimeout)
        finally:
            release.set()
            await asyncio.wait_for(task, timeout=10)
        assert await _scalar(db, "SELECT pg_backend_pid()") == first_pid


async def test_killed_connections_are_replaced(db: PgConnection, admin: Admin) -> None:
    before = set(await _hold(db, 3))
    assert await _kill_all(admin, db) == before
    # The first connection taken is dead: the idempotent call repeats on a fresh one.
    assert await _scalar(db, "SELECT 1") == 1
    # No dead connection is left in the pool: three at once all work.
    after = set(await _hold(db, 3))
    assert len(after) == 3
    assert not after & before

    assert await _kill_all(admin, db) == after
    # A session (not repeated: a commit's outcome would be unknown) fails, without a hang...
    with pytest.raises(BackendError):
        async with db.session() as conn:
            await asyncio.wait_for(conn.execute("SELECT 1"), timeout=10)
    # ...and the next one gets a working connection.
    async with db.session() as conn:
        await asyncio.wait_for(conn.execute("SELECT 1"), timeout=10)


async def test_schema_is_migrated_once(
    schema: str, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = postgres_conn.migrate

    async def counting(conn: psycopg.AsyncConnection[Any], name: str) -> int:
        calls.append(name)
        return await original(conn, name)

    monkeypatch.setattr(postgres_conn, "migrate", counting)
    async with _pool(schema, pool_size=4) as db:
        # Concurrent first calls: one migration, then four pooled connections.
        assert len(set(await _hold(db, 4))) == 4
        await _kill_all(admin, db)
        assert await _scalar(db, "SELECT 1") == 1  # replacing connections does not migrate
        await db.close()
        assert await _scalar(db, "SELECT 1") == 1  # nor does re-opening after close
    assert calls == [schema]
    cur = await admin.execute(f'SELECT max(version) FROM "{schema}".schema_migrations')  # type: ignore[arg-type]
    assert await cur.fetchone() == (LATEST,)


async def test_close_is_idempotent(schema: str, admin: Admin) -> None:
    db = PgConnection(DSN, schema)
    await db.close()  # never opened
    assert await _scalar(db, "SELECT 1") == 1
    await db.close()
    await db.close()

    queue = PostgresTaskQueue(DSN, schema=schema)
    assert await queue.take("reaper-pool-close", timeout=0.01) == []  # pool and listener open
    await queue.close()
    await queue.close()


async def test_unreachable_server_fails_at_once(schema: str) -> None:
    db = PgConnection("postgresql://127.0.0.1:1/test?connect_timeout=5", schema)
    try:
        with pytest.raises(BackendError) as caught:
            await _scalar(db, "SELECT 1")
        assert not isinstance(caught.value.__cause__, PoolTimeout)  # the real error
    finally:
        await db.close()


def test_pool_size_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        PgConnection(DSN, "reaper", pool_size=0)
