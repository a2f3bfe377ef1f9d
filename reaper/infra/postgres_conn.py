"""Connections for the PostgreSQL queue and bus: a serialised command connection and a
LISTEN connection that turns notifications into asyncio wake-ups.

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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, sql

from reaper.errors import BackendError, ReaperError
from reaper.infra.postgres_schema import migrate, schema_ident

__all__ = ["NotifyListener", "PgConnection", "channel_name"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def channel_name(kind: str, schema: str) -> str:
    digest = hashlib.sha256(schema.encode()).hexdigest()[:16]
    return f"reaper_{kind}_{digest}"


class PgConnection:
    """One autocommit connection, serialised by a lock, opened (and the schema migrated)
    lazily, re-opened after it breaks; psycopg errors surface as `BackendError`."""

    def __init__(self, dsn: str, schema: str) -> None:
        self._dsn = dsn
        self.schema = schema
        schema_ident(schema)  # validate early
        self._conn: AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncConnection[Any]]:
        async with self._lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = await self._open()
                yield self._conn
            except ReaperError:
                raise
            except psycopg.Error as exc:
                raise BackendError(f"postgres: {exc}") from exc

    async def _open(self) -> AsyncConnection[Any]:
        conn = await AsyncConnection.connect(self._dsn, autocommit=True)
        try:
            await conn.execute("SET TIME ZONE 'UTC'")
            await migrate(conn, self.schema)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def run(self, fn: Callable[[AsyncConnection[Any]], Awaitable[T]], *, retry: bool) -> T:
        """Run `fn` in a session; with `retry`, once more on a fresh connection if the old one
        died while idle (only for calls that are safe to repeat)."""
        try:
            async with self.session() as conn:
                return await fn(conn)
        except BackendError as exc:
            if not retry or not isinstance(exc.__cause__, psycopg.OperationalError):
                raise
            log.warning("postgres connection lost, reconnecting: %s", exc.__cause__)
        async with self.session() as conn:
            return await fn(conn)

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                try:
                    await self._conn.close()
                except psycopg.Error as exc:
                    raise BackendError(f"postgres close: {exc}") from exc
                finally:
                    self._conn = None


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
