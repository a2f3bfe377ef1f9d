"""Connections for the PostgreSQL store, queue and bus: a pool of command connections and a
LISTEN connection that turns notifications into asyncio wake-ups.

Commands go through a `psycopg_pool` pool of at most `pool_size` autocommit connections,
opened as calls need them, so one coroutine's read does not wait behind another's commit. The
schema is migrated once, on a connection of its own, before the pool opens: a server that is
down or a schema that is too new fails the first call at once with the real error, not as a
pool timeout. Connections are not checked before each use (the pool's `check` costs a round
trip per call and backs off 1 s, 2 s, 4 s... between failed checks): a call that finds its
connection dead fails, then every idle connection is checked, since a server restart kills
them all, and `run(retry=True)` repeats the call on a fresh one.

Listening uses one channel per schema and kind ('reaper_q_<hash>' for the queue,
'reaper_b_<hash>' for the bus), LISTENed once when the connection opens; the payload names
what changed (an agent type, a mission id). `conn.notifies()` holds the connection's lock while
it waits, so a LISTEN per key would need the generator stopped and restarted for every new
key; one channel with a payload needs no LISTEN after connect, and waiters filter by key.
After a reconnect every waiter is woken, since notifications sent meanwhile were lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

from reaper.errors import BackendError, BackendUnavailableError, ConfigError, ReaperError
from reaper.infra.postgres_schema import migrate, schema_ident

__all__ = ["NotifyListener", "PgConnection", "channel_name"]

log = logging.getLogger(__name__)

T = TypeVar("T")

Pool = AsyncConnectionPool[AsyncConnection[Any]]

# Connections beyond the first are closed after this long unused (one per period).
_MAX_IDLE_S = 60.0
# Pool errors are not a lost connection: repeating the call would only wait again.
_POOL_ERRORS = (PoolTimeout, PoolClosed, TooManyRequests)


def channel_name(kind: str, schema: str) -> str:
    digest = hashlib.sha256(schema.encode()).hexdigest()[:16]
    return f"reaper_{kind}_{digest}"


async def _configure(conn: AsyncConnection[Any]) -> None:
    """Every pooled connection reads timestamps in UTC, whatever the server's default."""
    await conn.execute("SET TIME ZONE 'UTC'")


class PgConnection:
    """A pool of autocommit connections (at most `pool_size`), opened, and the schema
    migrated, on first use; a connection found dead is replaced; psycopg errors surface as
    `BackendError`. A call waits at most `timeout` seconds for a free connection.
    `application_name` (distinct per instance) names its server sessions in
    pg_stat_activity."""

    def __init__(self, dsn: str, schema: str, *, pool_size: int = 4, timeout: float = 10.0) -> None:
        if pool_size < 1:
            raise ConfigError(f"postgres pool_size must be at least 1, not {pool_size}")
        self._dsn = dsn
        self.schema = schema
        schema_ident(schema)  # validate early
        self.pool_size = pool_size
        self._timeout = timeout
        # The server keeps 63 bytes: the distinct part goes first.
        self.application_name = f"reaper-{secrets.token_hex(4)}-{schema}"[:63]
        self._pool: Pool | None = None
        self._opening = asyncio.Lock()
        self._migrated = False

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncConnection[Any]]:
        """One pooled connection for the whole block (a transaction, a pipeline)."""
        pool = await self._ready()
        try:
            conn = await pool.getconn()
        except psycopg.OperationalError as exc:  # incl. the pool's timeout: no server
            raise BackendUnavailableError(f"postgres: {exc}") from exc
        except psycopg.Error as exc:
            raise BackendError(f"postgres: {exc}") from exc
        lost = False
        try:
            yield conn
        except ReaperError:
            raise
        except psycopg.Error as exc:
            lost = conn.broken
            raise BackendError(f"postgres: {exc}") from exc
        finally:
            await pool.putconn(conn)  # a broken connection is discarded and replaced
            if lost and not pool.closed:
                await pool.check()  # the idle ones most likely died with it

    async def _ready(self) -> Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                if not self._migrated:
                    await self._migrate()
                    self._migrated = True
                self._pool = await self._open_pool()
            return self._pool

    def _connect_kwargs(self) -> dict[str, Any]:
        return {"autocommit": True, "application_name": self.application_name}

    async def _migrate(self) -> None:
        try:
            conn = await AsyncConnection.connect(self._dsn, **self._connect_kwargs())
            try:
                await migrate(conn, self.schema)
            finally:
                await conn.close()
        except psycopg.OperationalError as exc:  # the first connection: no server there
            raise BackendUnavailableError(f"postgres: {exc}") from exc
        except psycopg.Error as exc:
            raise BackendError(f"postgres: {exc}") from exc

    async def _open_pool(self) -> Pool:
        pool: Pool = AsyncConnectionPool(
            self._dsn,
            connection_class=AsyncConnection,
            kwargs=self._connect_kwargs(),
            min_size=1,
            max_size=self.pool_size,
            open=False,
            configure=_configure,
            name=self.application_name,
            timeout=self._timeout,
            max_idle=_MAX_IDLE_S,
        )
        await pool.open()  # returns at once; connections are made in the background
        return pool

    async def run(self, fn: Callable[[AsyncConnection[Any]], Awaitable[T]], *, retry: bool) -> T:
        """Run `fn` in a session; with `retry`, once more on a fresh connection if the old one
        died while idle (only for calls that are safe to repeat)."""
        try:
            async with self.session() as conn:
                return await fn(conn)
        except BackendError as exc:
            cause = exc.__cause__
            if (
                not retry
                or isinstance(exc, BackendUnavailableError)  # never connected: nothing lost
                or not isinstance(cause, psycopg.OperationalError)
                or isinstance(cause, _POOL_ERRORS)
            ):
                raise
            log.warning("postgres connection lost, reconnecting: %s", cause)
        async with self.session() as conn:
            return await fn(conn)

    async def close(self) -> None:
        """Close the pool (idempotent). A later call opens a new one, without migrating
        again."""
        async with self._opening:
            pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except psycopg.Error as exc:
                raise BackendError(f"postgres close: {exc}") from exc


class NotifyListener:
    """A dedicated connection LISTENing on one channel; `event(key)` hands out an
    `asyncio.Event` set when a notification with that payload arrives."""

    def __init__(self, dsn: str, channel: str) -> None:
        self._dsn = dsn
        self.channel = channel
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()
        self._error: BaseException | None = None

    async def ready(self) -> None:
        """Start listening (once); BackendError if the first connection fails."""
        if self._task is None or self._task.done():
            self._attempted.clear()
            self._task = asyncio.create_task(self._run(), name=f"listen {self.channel}")
        if self._connected.is_set():
            return
        await self._attempted.wait()
        if not self._connected.is_set():
            raise BackendError(f"postgres LISTEN {self.channel}: {self._error}")

    def register(self, key: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        return event

    def unregister(self, key: str, event: asyncio.Event) -> None:
        events = self._waiters.get(key)
        if events is not None:
            events.discard(event)
            if not events:
                del self._waiters[key]

    def _wake(self, key: str) -> None:
        for event in self._waiters.get(key, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                conn = await AsyncConnection.connect(self._dsn, autocommit=True)
                try:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self._connected.set()
                    self._attempted.set()
                    self._wake_all()  # anything published while we were not listening
                    backoff = 0.1
                    gen = conn.notifies()
                    async with contextlib.aclosing(gen):
                        async for note in gen:
                            self._wake(note.payload)
                finally:
                    self._connected.clear()
                    await conn.close()
            except psycopg.Error as exc:
                self._error = exc
                self._attempted.set()
                log.warning("postgres listener %s: %s; reconnecting", self.channel, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wake_all()
