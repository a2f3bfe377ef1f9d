"""The SQLite file behind the default backend: connection, schema, errors and waiting.

One connection per `SqliteDatabase`, used only from the event loop's thread. Every call is
short (one prepared statement, or one `BEGIN IMMEDIATE` … `COMMIT` of a few `executemany`
batches, no fsync under WAL with synchronous=NORMAL), so the calls run synchronously on the
loop instead of hopping to a thread: a thread hop costs more than the statement, and because no
method awaits between BEGIN and COMMIT, coroutines sharing the connection never interleave
inside a transaction. The price is that a busy lock held by another process blocks the loop for
up to `busy_timeout`; writers here hold it for well under a millisecond.

Waiting (`take`, `receive`) is notification-driven inside the process: publishers notify the
waiters of their key through futures owned by this object. Another process writing the same
file (`reaper approve` from another shell, workers elsewhere) cannot notify us: SQLite has no
cross-process notification, so waiters also check `PRAGMA data_version` with exponential
backoff. That check is the one documented exception to "no polling" in Reaper.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from reaper.clock import Clock, RealClock
from reaper.errors import BackendError

__all__ = ["DB_SCHEMA_VERSION", "SqliteDatabase"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Version of the table layout below (models carry their own `schema_version`). Raised only
# when a file written by this code would mislead an older Reaper; an added index (created
# with IF NOT EXISTS on open, ignored by older code) does not, so `queue_acked` kept it at 1.
DB_SCHEMA_VERSION = 1

# Cross-process check interval: starts small so a publish from another process is seen
# within milliseconds, and backs off so an idle waiter costs ~5 cheap PRAGMAs a second.
_POLL_MIN_S = 0.005
_POLL_MAX_S = 0.2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS missions (
    mission_id TEXT PRIMARY KEY,
    schema_version INTEGER NOT NULL,
    lab_type TEXT NOT NULL,
    goal TEXT NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL,
    goal_reached INTEGER NOT NULL,
    version INTEGER NOT NULL,
    step INTEGER NOT NULL,
    planner TEXT NOT NULL,
    policy TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hosts (
    mission_id TEXT NOT NULL, host_id TEXT NOT NULL, body TEXT NOT NULL,
    UNIQUE (mission_id, host_id)
);
CREATE TABLE IF NOT EXISTS tasks (
    mission_id TEXT NOT NULL, task_id TEXT NOT NULL, body TEXT NOT NULL,
    UNIQUE (mission_id, task_id)
);
CREATE TABLE IF NOT EXISTS events (
    mission_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (mission_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    mission_id TEXT NOT NULL, task_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    body TEXT NOT NULL, not_before TEXT,
    UNIQUE (mission_id, task_id, attempt)
);
CREATE TABLE IF NOT EXISTS leases (
    mission_id TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    agent_type TEXT NOT NULL,
    mission_id TEXT NOT NULL,
    -- 0 ready: visible from visible_at, 1 leased: visible again at lease expiry, 2 acked
    -- (kept, without body, so a re-publish of the same (task_id, attempt) is ignored).
    state INTEGER NOT NULL,
    visible_at REAL NOT NULL,
    lease_owner TEXT,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL,
    UNIQUE (task_id, attempt)
);
CREATE INDEX IF NOT EXISTS queue_open ON queue (agent_type, seq, visible_at) WHERE state < 2;
CREATE INDEX IF NOT EXISTS queue_acked ON queue (mission_id) WHERE state = 2;
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY,
    mission_id TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_mission ON inbox (mission_id, delivered);
-- Simulated hosts' worlds by lab (sqlite_worlds), added without a version bump: older code
-- ignores the table.
CREATE TABLE IF NOT EXISTS sim_worlds (
    lab TEXT NOT NULL, host_id TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (lab, host_id)
) WITHOUT ROWID;
"""


class _Waiters:
    """Futures of the coroutines waiting on one key; `notify` wakes them all.

    `generation` counts notifications: a waiter compares it with the value it saw before its
    attempt, so a notify that lands while its timer has already fired (future done, coroutine
    not yet resumed) is not lost.
    """

    __slots__ = ("futures", "generation")

    def __init__(self) -> None:
        self.futures: set[asyncio.Future[bool]] = set()
        self.generation = 0

    async def wait(self, seconds: float) -> bool:
        """True if notified, False when `seconds` ran out."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, fut, False)
        self.futures.add(fut)
        try:
            return await fut
        finally:
            timer.cancel()
            self.futures.discard(fut)

    def notify(self) -> None:
        self.generation += 1
        for fut in self.futures:
            _resolve(fut, True)
        self.futures.clear()


def _is_busy(exc: BaseException) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


class SqliteDatabase:
    """One SQLite file and one connection, shared by the store, queue and bus objects."""

    def __init__(
        self, path: str | Path, *, clock: Clock | None = None, busy_timeout_s: float = 5.0
    ) -> None:
        self.path = str(path)
        self.clock: Clock = clock or RealClock()
        self._waiters: dict[Hashable, _Waiters] = {}
        self._closed = False
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # check_same_thread=False only so the object may be built before the loop runs;
            # it is used from one thread at a time (the loop's), see the module docstring.
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open sqlite database {self.path}: {exc}") from exc
        try:
            self._setup(busy_timeout_s)
        except BaseException:
            self.conn.close()
            raise

    def _setup(self, busy_timeout_s: float) -> None:
        with self.errors("open"):
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            # Switching a new file to WAL takes an exclusive lock, and SQLite returns
            # SQLITE_BUSY at once, without calling the busy handler, when another process is
            # opening the same file at that moment: retry it for the busy timeout.
            for attempt in Retrying(
                retry=retry_if_exception(_is_busy),
                stop=stop_after_delay(busy_timeout_s),
                wait=wait_random_exponential(multiplier=0.005, max=0.1),
                reraise=True,
            ):
                with attempt:
                    self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
        with self.transaction("create schema"):
            row = self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone()
            found = None
            if row is not None:
                got = self.conn.execute(
                    "SELECT value FROM meta WHERE key = 'schema_version'"
                ).fetchone()
                found = None if got is None else int(got[0])
            if found is not None and found > DB_SCHEMA_VERSION:
                raise BackendError(
                    f"sqlite database {self.path} has schema version {found}, newer than this "
                    f"Reaper understands ({DB_SCHEMA_VERSION}); upgrade Reaper to open it"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.conn.execute(statement)
            if found is None:
                self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(DB_SCHEMA_VERSION),),
                )

    # -- statements ---------------------------------------------------------------------

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Map sqlite3 errors to BackendError at this boundary."""
        if self._closed:
            raise BackendError(f"sqlite database {self.path} is closed")
        try:
            yield
        except sqlite3.Error as exc:
            raise BackendError(f"sqlite {what} failed on {self.path}: {exc}") from exc

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT: takes the write lock up front, so two processes never
        deadlock upgrading read locks; rolled back on any exception."""
        with self.errors(what):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    @contextmanager
    def snapshot(self, what: str) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state of the file."""
        with self.errors(what):
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT")

    def execute(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.errors(what):
            return self.conn.execute(sql, params).fetchall()

    def write_many(self, what: str, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """One statement over many rows in one transaction; returns rows changed."""
        if len(rows) == 1:  # one statement is its own transaction: skip BEGIN/COMMIT
            with self.errors(what):
                return self.conn.execute(sql, rows[0]).rowcount
        with self.transaction(what) as conn:
            return conn.executemany(sql, rows).rowcount

    def now(self) -> float:
        """Epoch seconds from the clock: stored times must mean the same in every process."""
        return self.clock.now().timestamp()

    # -- waiting ------------------------------------------------------------------------

    def notify(self, key: Hashable) -> None:
        waiters = self._waiters.get(key)
        if waiters is not None:
            waiters.notify()

    def _data_version(self) -> int:
        with self.errors("data_version"):
            return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    async def wait(
        self,
        key: Hashable,
        attempt: Callable[[], list[T]],
        *,
        timeout: float | None,
        next_due: Callable[[], float | None] | None = None,
    ) -> list[T]:
        """Run `attempt` until it returns something or `timeout` (loop seconds) runs out.

        It runs again when a publisher in this process notifies `key`, when `next_due()`
        (seconds until something becomes visible: a delayed task, an expiring lease) passes,
        or when another process has committed to the file (`PRAGMA data_version` moved).
        """
        got = attempt()
        if got or (timeout is not None and timeout <= 0):
            return got
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        waiters = self._waiters.setdefault(key, _Waiters())
        while True:
            # Read the version before the attempt: a commit landing after it is then seen.
            version = self._data_version()
            generation = waiters.generation
            got = attempt()
            if got:
                return got
            due = next_due() if next_due is not None else None
            due_at = None if due is None else loop.time() + max(due, 0.001)
            backoff = _POLL_MIN_S
            while True:
                now = loop.time()
                if end is not None and now >= end:
                    return []
                wait = backoff if end is None else min(backoff, end - now)
                if due_at is not None:
                    wait = min(wait, max(due_at - now, 0.0))
                if await waiters.wait(wait) or waiters.generation != generation:
                    break
                if self._closed:
                    raise BackendError(f"sqlite database {self.path} closed while waiting")
                if due_at is not None and loop.time() >= due_at:
                    break
                # Cross-process: the documented polling exception (see module docstring).
                if self._data_version() != version:
                    break
                backoff = min(backoff * 2, _POLL_MAX_S)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for waiters in self._waiters.values():
            waiters.notify()
        self._waiters.clear()
        try:
            self.conn.close()
        except sqlite3.Error as exc:  # pragma: no cover - close rarely fails
            log.warning("closing %s: %s", self.path, exc)
