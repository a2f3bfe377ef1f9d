"""Liveness of engine and worker processes: each one writes a heartbeat record every
`interval_s`; `reaper status` lists them and flags those silent for 3 intervals.

Where heartbeats live: beside the mission store, because every process has one (a worker
resolves hosts through it) and so does `reaper status`. The store protocol is shared with
other backends' authors, so the registry is its own small protocol with one table of its own
in the same database, not a new store method:

    memory          a dict (one process; tests)
    sqlite:///F     table `reaper_processes` in the same file (own connection)
    postgresql://…  table `processes` in the store's schema (`?schema=NAME`, default
                    `reaper`; its migration 7): deployments sharing a server see only
                    their own processes

A record is upserted on each beat and deleted on a graceful exit, so a record that stops
changing means a process that died. Records silent for 15 minutes are pruned when the
registry is listed. Times are epoch seconds from the caller's clock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, Field

from reaper.errors import BackendError, ConfigError
from reaper.infra.factory import DEFAULT_SCHEMA, parse_spec, url_option

__all__ = [
    "DEAD_AFTER_INTERVALS",
    "MemoryRegistry",
    "PostgresRegistry",
    "ProcessInfo",
    "ProcessRegistry",
    "SqliteRegistry",
    "counters_of",
    "open_registry",
]

DEAD_AFTER_INTERVALS = 3
_KEEP_S = 900.0

Role = Literal["worker", "engine"]


class ProcessInfo(BaseModel):
    """One heartbeat: who, where, since when, and its counters at `last_seen`."""

    process_id: str
    role: Role
    agent_type: str | None = None
    host: str
    pid: int
    started: AwareDatetime
    last_seen: AwareDatetime
    interval_s: float
    counters: dict[str, int] = Field(default_factory=dict)
    missions: list[str] = Field(default_factory=list)

    def silent_for(self, now: datetime) -> float:
        return (now - self.last_seen).total_seconds()

    def alive(self, now: datetime) -> bool:
        return self.silent_for(now) <= DEAD_AFTER_INTERVALS * self.interval_s


class ProcessRegistry(Protocol):
    async def beat(self, info: ProcessInfo) -> None: ...

    async def remove(self, process_id: str) -> None: ...

    async def list(self, now: datetime) -> list[ProcessInfo]:
        """Every record, oldest-started first; prunes records silent for over 15 minutes."""
        ...

    async def close(self) -> None: ...


class MemoryRegistry:
    def __init__(self) -> None:
        self._records: dict[str, ProcessInfo] = {}

    async def beat(self, info: ProcessInfo) -> None:
        self._records[info.process_id] = info

    async def remove(self, process_id: str) -> None:
        self._records.pop(process_id, None)

    async def list(self, now: datetime) -> list[ProcessInfo]:
        for pid in [p for p, i in self._records.items() if i.silent_for(now) > _KEEP_S]:
            del self._records[pid]
        return sorted(self._records.values(), key=lambda i: i.started)

    async def close(self) -> None:
        self._records.clear()


_CREATE = (
    "CREATE TABLE IF NOT EXISTS reaper_processes ("
    " process_id TEXT PRIMARY KEY, last_seen DOUBLE PRECISION NOT NULL, body TEXT NOT NULL)"
)


def _parse(rows: list[Any]) -> list[ProcessInfo]:
    infos = [ProcessInfo.model_validate_json(row[0]) for row in rows]
    return sorted(infos, key=lambda i: i.started)


class SqliteRegistry:
    """Its own connection to the backend's file: beats are rare (seconds apart), so the few
    synchronous statements cost the loop nothing worth a thread hop."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = str(path)
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(_CREATE)
        except (sqlite3.Error, OSError) as exc:
            raise BackendError(f"process registry on {self.path}: {exc}") from exc

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise BackendError(f"process registry on {self.path}: {exc}") from exc

    async def beat(self, info: ProcessInfo) -> None:
        self._run(
            "INSERT INTO reaper_processes (process_id, last_seen, body) VALUES (?, ?, ?) "
            "ON CONFLICT (process_id) DO UPDATE SET last_seen = excluded.last_seen, "
            "body = excluded.body",
            (info.process_id, info.last_seen.timestamp(), info.model_dump_json()),
        )

    async def remove(self, process_id: str) -> None:
        self._run("DELETE FROM reaper_processes WHERE process_id = ?", (process_id,))

    async def list(self, now: datetime) -> list[ProcessInfo]:
        self._run("DELETE FROM reaper_processes WHERE last_seen < ?", (now.timestamp() - _KEEP_S,))
        return _parse(self._run("SELECT body FROM reaper_processes"))

    async def close(self) -> None:
        self._conn.close()


class PostgresRegistry:
    """One autocommit connection, opened on first use and re-opened after an error (the
    server restarted): a missed beat is harmless, the next one re-registers."""

    def __init__(self, dsn: str, schema: str = DEFAULT_SCHEMA) -> None:
        try:
            import psycopg
            from psycopg import sql
        except ModuleNotFoundError as exc:
            raise ConfigError(
                "the postgres backend needs an optional package: pip install 'reaper-lab[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self._dsn = dsn
        self._schema = schema
        self._table = sql.Identifier(schema, "processes").as_string(None)
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Any:
        from reaper.infra.postgres_schema import migrate

        conn = await self._psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, connect_timeout=5
        )
        try:
            await migrate(conn, self._schema)  # the table is the store schema's (migration 7)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        async with self._lock:
            try:
                if self._conn is None:
                    self._conn = await self._connect()
                cur = await self._conn.execute(sql.format(t=self._table), params)
                return list(await cur.fetchall()) if cur.description else []
            except self._psycopg.Error as exc:
                conn, self._conn = self._conn, None
                if conn is not None:
                    await conn.close()
                raise BackendError(f"process registry: {exc}") from exc

    async def beat(self, info: ProcessInfo) -> None:
        await self._run(
            "INSERT INTO {t} (process_id, last_seen, body) VALUES (%s, %s, %s) "
            "ON CONFLICT (process_id) DO UPDATE SET last_seen = excluded.last_seen, "
            "body = excluded.body",
            (info.process_id, info.last_seen.timestamp(), info.model_dump_json()),
        )

    async def remove(self, process_id: str) -> None:
        await self._run("DELETE FROM {t} WHERE process_id = %s", (process_id,))

    async def list(self, now: datetime) -> list[ProcessInfo]:
        await self._run("DELETE FROM {t} WHERE last_seen < %s", (now.timestamp() - _KEEP_S,))
        return _parse(await self._run("SELECT body FROM {t}"))

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None


def open_registry(
    spec: str | None, *, store: str | None = None, default_db: Path | None = None
) -> ProcessRegistry:
    """The registry beside the store that `open_backend(spec, store=…)` would open."""
    if store or spec:
        parts = parse_spec(store or spec or "")
    elif default_db is not None:
        parts = parse_spec(f"sqlite:///{Path(default_db).expanduser().absolute()}")
    else:
        raise ConfigError("no backend spec and no default database path")
    part = next((p for p in parts if p.kind in ("memory", "sqlite", "postgres")), None)
    if part is None:
        raise ConfigError(f"{store or spec!r} provides no mission store for heartbeats")
    if part.kind == "memory":
        return MemoryRegistry()
    if part.kind == "sqlite":
        return SqliteRegistry(part.target)
    dsn, schema = url_option(part.target, "schema")
    return PostgresRegistry(dsn, schema or DEFAULT_SCHEMA)


def counters_of(stats: Mapping[str, Any]) -> dict[str, int]:
    """The integer counters of a stats mapping (nested dicts flattened as a.b)."""
    out: dict[str, int] = {}
    for key, value in stats.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            out[key] = value
        elif isinstance(value, Mapping):
            out.update({f"{key}.{k}": int(v) for k, v in value.items() if isinstance(v, int)})
    return out
