"""PostgreSQL mission store (psycopg 3, `pip install 'reaper-lab[postgres]'`).

A mission is a header row (with `version`), one row per host and per task and an append-only
event table; the outbox is the task rows queued and not yet published. `commit` is one
statement, so one transaction (postgres_commit): the header update guarded by the expected
version (optimistic concurrency: zero rows updated means another writer got there first), the
changed host and task rows, the new events (their `seq` continues from the header's
`last_seq`, bumped in the same UPDATE, so no MAX() scan) and the outbox entries: the state
change and the tasks it plans commit together or not at all (the outbox pattern). What a
commit sends depends on the change, never on the mission's size.

Connections come from a pool (`PgConnection`): a read does not wait behind another
coroutine's commit; a broken connection is dropped and replaced; a psycopg error surfaces as
`BackendError`. Lease times come from the store's clock.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, LiteralString, TypeVar

from psycopg import AsyncConnection, sql
from pydantic_core import to_json

from reaper.clock import Clock, RealClock
from reaper.errors import MissionExistsError, StaleStateError
from reaper.infra.base import Commit, LeaseInfo, MissionSummary, OutboxItem
from reaper.infra.factory import DEFAULT_SCHEMA
from reaper.infra.postgres_commit import SENT_SEQ, commit_statement, sent_params
from reaper.infra.postgres_conn import PgConnection
from reaper.infra.postgres_schema import schema_ident
from reaper.infra.postgres_worlds import PostgresSimWorldStore
from reaper.lazy_docs import LazyDocs
from reaper.models import (
    EventRecord,
    HostConnection,
    HostState,
    MissionState,
    MissionStatus,
    TaskRecord,
)

__all__ = ["PostgresMissionStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Header fields a commit may change (as the in-memory store): columns of their own. The
# rest of the header is written once, at create.
_HEADER_CHANGES = {"status", "status_reason", "goal_reached", "step", "updated_at", "settings"}
_NOT_HEADER = {"hosts", "tasks", "version", *_HEADER_CHANGES}

_SQL: dict[str, LiteralString] = {
    "create": """INSERT INTO {s}.missions (mission_id, lab_type, status, status_reason,
        goal_reached, step, settings, version, last_seq, created_at, updated_at, header)
        VALUES (%s, %s, %s, %s, %s, %s, %s::json, %s, %s, %s, %s, %s::json)
        ON CONFLICT (mission_id) DO NOTHING RETURNING mission_id""",
    "version": "SELECT version FROM {s}.missions WHERE mission_id = %s",
    # Row writes at create (a commit is one statement: postgres_commit): one statement per
    # table, the rows as parallel arrays (unnest), whatever their number: an executemany
    # costs ~30 µs of client CPU per row. Arrays go in binary (%b): the text format escapes
    # every quote of every JSON document.
    "host": """INSERT INTO {s}.hosts (mission_id, host_id, doc)
        SELECT %s, h, d FROM unnest(%b::text[], %b::text[]) AS u(h, d)
        ON CONFLICT (mission_id, host_id) DO UPDATE SET doc = EXCLUDED.doc""",
    "task": """INSERT INTO {s}.tasks (mission_id, task_id, status, doc, attempt)
        SELECT %s, t, st, d, a FROM unnest(%b::text[], %b::text[], %b::text[], %b::int[])
        AS u(t, st, d, a)""",
    "event": """INSERT INTO {s}.events (mission_id, seq, ts, kind, schema_version, payload)
        SELECT %s, %s + o - 1, ts, k, v, p
        FROM unnest(%b::timestamptz[], %b::text[], %b::int[], %b::text[])
        WITH ORDINALITY AS u(ts, k, v, p, o)""",
    "load_header": """SELECT version, header::text, status, status_reason, goal_reached, step,
        settings::text, updated_at FROM {s}.missions WHERE mission_id = %s""",
    "load_hosts": "SELECT doc FROM {s}.hosts WHERE mission_id = %s ORDER BY host_id",
    "load_tasks": "SELECT doc FROM {s}.tasks WHERE mission_id = %s",
    "get_host": "SELECT doc FROM {s}.hosts WHERE mission_id = %s AND host_id = %s",
    "get_connections": """SELECT host_id, (doc::json->'connection')::text FROM {s}.hosts
        WHERE mission_id = %s""",
    "events": """SELECT seq, ts, kind, schema_version, payload FROM {s}.events
        WHERE mission_id = %s AND seq > %s ORDER BY seq LIMIT %s""",
    "list": """SELECT m.mission_id, m.lab_type, m.status, m.status_reason,
        (SELECT count(*) FROM {s}.hosts h WHERE h.mission_id = m.mission_id),
        m.version, m.updated_at FROM {s}.missions m ORDER BY m.created_at, m.mission_id""",
    # The outbox is the task rows numbered above the mission's high-water mark (postgres_commit).
    "unsent": """SELECT t.doc, t.not_before FROM {s}.tasks t JOIN {s}.missions m
        USING (mission_id) WHERE t.mission_id = %s AND t.queued > m.sent_seq ORDER BY t.queued""",
    "mark_sent": "UPDATE {s}.missions SET " + SENT_SEQ + " WHERE mission_id = %(mid)s",
    "claim": """INSERT INTO {s}.leases (mission_id, owner, expires_at) VALUES (%s, %s, %s)
        ON CONFLICT (mission_id) DO UPDATE SET owner = EXCLUDED.owner,
        expires_at = EXCLUDED.expires_at
        WHERE {s}.leases.owner = EXCLUDED.owner OR {s}.leases.expires_at <= %s
        RETURNING owner""",
    "release": "DELETE FROM {s}.leases WHERE mission_id = %s AND owner = %s",
    "lease": """SELECT owner, extract(epoch FROM expires_at - %s) FROM {s}.leases
        WHERE mission_id = %s AND expires_at > %s""",
    # One statement (so one transaction), each table a data-modifying CTE; the outbox is
    # the task rows (postgres_commit).
    "delete": """WITH e AS (DELETE FROM {s}.events WHERE mission_id = %(mid)s RETURNING 1),
        t AS (DELETE FROM {s}.tasks WHERE mission_id = %(mid)s RETURNING 1),
        h AS (DELETE FROM {s}.hosts WHERE mission_id = %(mid)s RETURNING 1),
        l AS (DELETE FROM {s}.leases WHERE mission_id = %(mid)s RETURNING 1),
        m AS (DELETE FROM {s}.missions WHERE mission_id = %(mid)s RETURNING 1)
        SELECT (SELECT count(*) FROM e) + (SELECT count(*) FROM t) + (SELECT count(*) FROM h)
        + (SELECT count(*) FROM l) + (SELECT count(*) FROM m)""",
}


class PostgresMissionStore:
    """`MissionStore` on PostgreSQL; tables live in `schema` (created on first use)."""

    def __init__(
        self, dsn: str, *, clock: Clock | None = None, schema: str = DEFAULT_SCHEMA
    ) -> None:
        self._dsn = dsn
        self._clock = clock or RealClock()
        self.schema = schema
        s = schema_ident(schema)
        self._q = {name: sql.SQL(text).format(s=s) for name, text in _SQL.items()}
        self._pg = PgConnection(dsn, schema)
        self.worlds = PostgresSimWorldStore(self._pg, s)  # the sim worlds, same schema
        # Statements sent by this store: lets tests check a commit's cost is per change.
        self.statements = 0

    # connection -----------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the connection and migrate the schema (also done lazily by every call)."""
        async with self._session():
            pass

    def _session(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        return self._pg.session()

    async def _exec(
        self, conn: AsyncConnection[Any], name: str, params: Sequence[Any] | Mapping[str, Any]
    ) -> Any:
        self.statements += 1
        return await conn.execute(self._q[name], params)

    async def _many(
        self, conn: AsyncConnection[Any], name: str, head: Sequence[Any], *columns: list[Any]
    ) -> None:
        """One statement for all rows: `head` parameters, then one array per column."""
        if columns[0]:
            await self._exec(conn, name, (*head, *columns))

    async def _idempotent(self, fn: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Reconnect-and-retry once, for reads and other calls safe to repeat: never
        `commit` or `create`, whose outcome would be ambiguous."""
        return await self._pg.run(fn, retry=True)

    async def _rows(self, name: str, params: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
        async def run(conn: AsyncConnection[Any]) -> list[Any]:
            cur = await self._exec(conn, name, params)
            return [] if cur.description is None else list(await cur.fetchall())

        return await self._idempotent(run)

    # writes ---------------------------------------------------------------------------------
    async def create(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        mid = state.mission_id
        header = state.model_dump_json(exclude=_NOT_HEADER)
        async with self._session() as conn, conn.transaction():
            cur = await self._exec(
                conn,
                "create",
                (mid, state.lab_type, state.status.value, state.status_reason,
                 state.goal_reached, state.step, to_json(state.settings).decode(), state.version,
                 len(events), state.created_at, state.updated_at, header),
            )  # fmt: skip
            if await cur.fetchone() is None:
                raise MissionExistsError(mid)
            await self._write_rows(conn, mid, state.hosts.values(), state.tasks.values())
            await self._append(conn, mid, events, first_seq=1)

    async def commit(self, change: Commit) -> int:
        mid = change.mission.mission_id
        query, params = commit_statement(self.schema, change)
        async with self._session() as conn:
            self.statements += 1
            row = await (await conn.execute(query, params)).fetchone()
            if row is None:
                found = await (await self._exec(conn, "version", (mid,))).fetchone()
                raise StaleStateError(
                    f"mission {mid}: expected version {change.expected_version}, "
                    f"found {None if found is None else found[0]}"
                )
        version, last_seq = int(row[0]), int(row[1])
        first = last_seq - len(change.events) + 1
        for i, event in enumerate(change.events):
            event.seq = first + i  # as the other stores do
        return version

    async def _write_rows(
        self,
        conn: AsyncConnection[Any],
        mid: str,
        hosts: Any,
        tasks: Any,
    ) -> None:
        hosts, tasks = list(hosts), list(tasks)
        await self._many(
            conn, "host", (mid,), [h.host_id for h in hosts], [h.model_dump_json() for h in hosts]
        )
        await self._many(
            conn,
            "task",
            (mid,),
            [r.task.task_id for r in tasks],
            [r.status.value for r in tasks],
            [r.model_dump_json() for r in tasks],
            [r.task.attempt for r in tasks],
        )

    async def _append(
        self, conn: AsyncConnection[Any], mid: str, events: Sequence[EventRecord], first_seq: int
    ) -> None:
        await self._many(
            conn,
            "event",
            (mid, first_seq),
            [e.ts for e in events],
            [e.kind.value for e in events],
            [e.schema_version for e in events],
            [to_json(e.payload).decode() for e in events],
        )

    # reads ----------------------------------------------------------------------------------
    async def load(self, mission_id: str) -> MissionState | None:
        async def snapshot(conn: AsyncConnection[Any]) -> tuple[Any, list[Any], list[Any]]:
            async with conn.transaction():
                # One snapshot for the header and its rows, even while commits go on.
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                head = await (await self._exec(conn, "load_header", (mission_id,))).fetchone()
                if head is None:
                    return None, [], []
                hosts = await (await self._exec(conn, "load_hosts", (mission_id,))).fetchall()
                tasks = await (await self._exec(conn, "load_tasks", (mission_id,))).fetchall()
                return head, hosts, tasks

        head, hosts, tasks = await self._idempotent(snapshot)
        if head is None:
            return None
        version, header, status, reason, goal_reached, step, settings, updated_at = head
        data = json.loads(header)  # json keeps key order, as the mission was created
        data.update(
            version=int(version), status=status, status_reason=reason, step=int(step),
            goal_reached=bool(goal_reached), settings=json.loads(settings),
            updated_at=updated_at, hosts={},
        )  # fmt: skip
        state = MissionState.model_validate(data)
        for (doc,) in hosts:
            host = HostState.model_validate_json(doc)
            state.hosts[host.host_id] = host
        for (doc,) in tasks:
            state.put_task(TaskRecord.model_validate_json(doc))
        return state

    async def get_host(self, mission_id: str, host_id: str) -> HostState | None:
        rows = await self._rows("get_host", (mission_id, host_id))
        return HostState.model_validate_json(rows[0][0]) if rows else None

    async def get_connections(self, mission_id: str) -> Mapping[str, HostConnection]:
        rows = await self._rows("get_connections", (mission_id,))
        return LazyDocs(HostConnection, dict(rows))

    async def events(
        self, mission_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        rows = await self._rows("events", (mission_id, after_seq, limit))
        return [
            EventRecord(
                seq=seq,
                ts=ts,
                mission_id=mission_id,
                kind=kind,
                schema_version=sv,
                payload=json.loads(p),
            )
            for seq, ts, kind, sv, p in rows
        ]

    async def list_missions(self) -> list[MissionSummary]:
        rows = await self._rows("list", ())
        return [
            MissionSummary(
                mission_id=mid,
                lab_type=lab,
                status=MissionStatus(status),
                status_reason=reason,
                hosts=int(n),
                version=int(version),
                updated_at=updated,
            )
            for mid, lab, status, reason, n, version, updated in rows
        ]

    # outbox and leases ----------------------------------------------------------------------
    async def unsent(self, mission_id: str) -> list[OutboxItem]:
        rows = await self._rows("unsent", (mission_id,))
        return [
            OutboxItem(TaskRecord.model_validate_json(doc).task, not_before=nb) for doc, nb in rows
        ]

    async def mark_sent(self, mission_id: str, keys: Sequence[tuple[str, int]]) -> None:
        if not keys:
            return
        await self._rows("mark_sent", {"mid": mission_id, **sent_params(keys)})

    async def claim(self, mission_id: str, owner: str, ttl_s: float) -> bool:
        now = self._clock.now()
        expires = now + timedelta(seconds=ttl_s)
        # Safe to repeat: a renewal by the same owner.
        return bool(await self._rows("claim", (mission_id, owner, expires, now)))

    async def release(self, mission_id: str, owner: str) -> None:
        await self._rows("release", (mission_id, owner))

    async def lease(self, mission_id: str) -> LeaseInfo | None:
        now = self._clock.now()
        rows = await self._rows("lease", (now, mission_id, now))
        return LeaseInfo(str(rows[0][0]), float(rows[0][1])) if rows else None

    async def delete(self, mission_id: str) -> int:
        rows = await self._rows("delete", {"mid": mission_id})
        return int(rows[0][0]) if rows else 0

    async def close(self) -> None:
        await self._pg.close()
