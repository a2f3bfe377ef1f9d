"""The default backend: mission store, task queue and event bus in one SQLite file.

`SqliteBackend(path)` opens (or creates) the file and hands out the three parts, which share
one connection; see `sqlite_db` for why calls run on the event loop's thread and how waiting
works across processes, `sqlite_store` and `sqlite_queue` for the tables.
"""

from __future__ import annotations

from pathlib import Path

from reaper.clock import Clock
from reaper.infra.base import Backend
from reaper.infra.sqlite_db import DB_SCHEMA_VERSION, SqliteDatabase
from reaper.infra.sqlite_queue import SqliteEventBus, SqliteTaskQueue
from reaper.infra.sqlite_store import SqliteMissionStore

__all__ = [
    "DB_SCHEMA_VERSION",
    "SqliteBackend",
    "SqliteDatabase",
    "SqliteEventBus",
    "SqliteMissionStore",
    "SqliteTaskQueue",
]


class SqliteBackend:
    """One SQLite file holding the store, the queue and the bus.

    Open one per process (or per event loop): the connection is used from the loop's thread
    only. Several processes may open the same file; WAL lets readers and one writer overlap.
    """

    def __init__(
        self, path: str | Path, *, clock: Clock | None = None, busy_timeout_s: float = 5.0
    ) -> None:
        self.db = SqliteDatabase(path, clock=clock, busy_timeout_s=busy_timeout_s)
        self.store = SqliteMissionStore(self.db)
        self.queue = SqliteTaskQueue(self.db)
        self.bus = SqliteEventBus(self.db)

    @property
    def path(self) -> str:
        return self.db.path

    def as_backend(self) -> Backend:
        return Backend(
            store=self.store, queue=self.queue, bus=self.bus, description=f"sqlite:///{self.path}"
        )

    async def close(self) -> None:
        self.db.close()
