"""`MissionStore` on SQLite: a mission is rows (header, hosts, tasks, events, outbox).

A commit touches the header row and the rows it names, never the whole mission, so its cost
follows the change and not the lab's size. Bodies are pydantic JSON (never pickle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic_core import from_json, to_json

from reaper.errors import MissionExistsError, StaleStateError
from reaper.infra.base import Commit, LeaseInfo, MissionSummary, OutboxItem
from reaper.infra.sqlite_db import SqliteDatabase
from reaper.infra.sqlite_worlds import SqliteSimWorldStore
from reaper.lazy_docs import LazyDocs
from reaper.models import (
    EventRecord,
    HostConnection,
    HostState,
    MissionState,
    MissionStatus,
    Task,
    TaskRecord,
)

__all__ = ["SqliteMissionStore"]

# Statements are module constants: the same text hits sqlite3's prepared-statement cache.
_INSERT_MISSION = """
INSERT INTO missions (mission_id, schema_version, lab_type, goal, status, status_reason,
    goal_reached, version, step, planner, policy, settings, created_at, updated_at, last_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SELECT_MISSION = """
SELECT schema_version, lab_type, goal, status, status_reason, goal_reached, version, step,
    planner, policy, settings, created_at, updated_at
FROM missions WHERE mission_id = ?
"""
_UPDATE_HEADER = """
UPDATE missions SET status = ?, status_reason = ?, goal_reached = ?, step = ?, updated_at = ?,
    settings = ?, version = version + 1, last_seq = last_seq + ?
WHERE mission_id = ? AND version = ?
RETURNING version, last_seq
"""
_UPSERT_HOST = """
INSERT INTO hosts (mission_id, host_id, body) VALUES (?, ?, ?)
ON CONFLICT (mission_id, host_id) DO UPDATE SET body = excluded.body
"""
_UPSERT_TASK = """
INSERT INTO tasks (mission_id, task_id, body) VALUES (?, ?, ?)
ON CONFLICT (mission_id, task_id) DO UPDATE SET body = excluded.body
"""
_INSERT_EVENT = "INSERT INTO events (mission_id, seq, kind, body) VALUES (?, ?, ?, ?)"
_DELETE_SENT = "DELETE FROM outbox WHERE mission_id = ? AND task_id = ? AND attempt = ?"
_UPSERT_OUTBOX = """
INSERT INTO outbox (mission_id, task_id, attempt, body, not_before) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (mission_id, task_id, attempt)
DO UPDATE SET body = excluded.body, not_before = excluded.not_before
"""
_SELECT_EVENTS = """
SELECT seq, body FROM events WHERE mission_id = ? AND seq > ? ORDER BY seq LIMIT ?
"""
_LIST = """
SELECT m.mission_id, m.lab_type, m.status, m.status_reason,
    (SELECT count(*) FROM hosts h WHERE h.mission_id = m.mission_id), m.version, m.updated_at
FROM missions m ORDER BY m.rowid
"""
_CLAIM = """
INSERT INTO leases (mission_id, owner, expires) VALUES (?, ?, ?)
ON CONFLICT (mission_id) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
WHERE leases.owner = excluded.owner OR leases.expires <= ?
"""


def _json(value: object) -> str:
    return to_json(value).decode()


def _event_rows(
    mission_id: str, events: Sequence[EventRecord], first_seq: int
) -> list[tuple[str, int, str, str]]:
    # The seq lives in its column; the body is stored without it and set again on read.
    return [
        (mission_id, first_seq + i, str(ev.kind), ev.model_dump_json(exclude={"seq"}))
        for i, ev in enumerate(events)
    ]


def _outbox_row(mission_id: str, item: OutboxItem) -> tuple[str, str, int, str, str | None]:
    nb = None if item.not_before is None else item.not_before.isoformat()
    return (mission_id, item.task.task_id, item.task.attempt, item.task.model_dump_json(), nb)


class SqliteMissionStore:
    """Missions as rows in the shared SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self.worlds = SqliteSimWorldStore(db)  # the sim worlds, in the same file

    async def create(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        mid = state.mission_id
        with self._db.transaction("create mission") as conn:
            if conn.execute("SELECT 1 FROM missions WHERE mission_id = ?", (mid,)).fetchone():
                raise MissionExistsError(mid)
            conn.execute(
                _INSERT_MISSION,
                (
                    mid,
                    state.schema_version,
                    state.lab_type,
                    str(state.goal),
                    str(state.status),
                    state.status_reason,
                    int(state.goal_reached),
                    state.version,
                    state.step,
                    state.planner,
                    _json(state.policy),
                    _json(state.settings),
                    state.created_at.isoformat(),
                    state.updated_at.isoformat(),
                    len(events),
                ),
            )
            conn.executemany(
                _UPSERT_HOST,
                [(mid, hid, h.model_dump_json()) for hid, h in state.hosts.items()],
            )
            conn.executemany(
                _UPSERT_TASK,
                [(mid, tid, r.model_dump_json()) for tid, r in state.tasks.items()],
            )
            conn.executemany(_INSERT_EVENT, _event_rows(mid, events, 1))

    async def load(self, mission_id: str) -> MissionState | None:
        # One snapshot: another process may commit between the header and the rows.
        with self._db.snapshot("load mission") as conn:
            row = conn.execute(_SELECT_MISSION, (mission_id,)).fetchone()
            if row is None:
                return None
            hosts = conn.execute(
                "SELECT host_id, body FROM hosts WHERE mission_id = ? ORDER BY rowid",
                (mission_id,),
            ).fetchall()
            tasks = conn.execute(
                "SELECT body FROM tasks WHERE mission_id = ? ORDER BY rowid", (mission_id,)
            ).fetchall()
        (schema, lab, goal, status, reason, reached, version, step, planner, policy, settings,
         created, updated) = row  # fmt: skip
        # Built through the constructor so the private open-task index is computed.
        return MissionState(
            schema_version=schema,
            mission_id=mission_id,
            lab_type=lab,
            goal=goal,
            hosts={hid: HostState.model_validate_json(body) for hid, body in hosts},
            status=status,
            status_reason=reason,
            goal_reached=bool(reached),
            version=version,
            step=step,
            planner=planner,
            policy=from_json(policy),
            settings=from_json(settings),
            created_at=datetime.fromisoformat(created),
            updated_at=datetime.fromisoformat(updated),
            tasks={
                rec.task.task_id: rec
                for rec in (TaskRecord.model_validate_json(body) for (body,) in tasks)
            },
        )

    async def get_host(self, mission_id: str, host_id: str) -> HostState | None:
        rows = self._db.execute(
            "get host",
            "SELECT body FROM hosts WHERE mission_id = ? AND host_id = ?",
            (mission_id, host_id),
        )
        return HostState.model_validate_json(rows[0][0]) if rows else None

    async def get_connections(self, mission_id: str) -> Mapping[str, HostConnection]:
        rows = self._db.execute(
            "get connections",
            "SELECT host_id, json_extract(body, '$.connection') FROM hosts WHERE mission_id = ?",
            (mission_id,),
        )
        return LazyDocs(HostConnection, dict(rows))

    async def commit(self, change: Commit) -> int:
        m = change.mission
        mid = m.mission_id
        with self._db.transaction("commit") as conn:
            row = conn.execute(
                _UPDATE_HEADER,
                (
                    str(m.status),
                    m.status_reason,
                    int(m.goal_reached),
                    m.step,
                    m.updated_at.isoformat(),
                    _json(m.settings),
                    len(change.events),
                    mid,
                    change.expected_version,
                ),
            ).fetchone()
            if row is None:
                found = conn.execute(
                    "SELECT version FROM missions WHERE mission_id = ?", (mid,)
                ).fetchone()
                raise StaleStateError(
                    f"mission {mid}: expected version {change.expected_version}, "
                    f"found {None if found is None else found[0]}"
                )
            version, last_seq = row
            if change.hosts:
                conn.executemany(
                    _UPSERT_HOST, [(mid, h.host_id, h.model_dump_json()) for h in change.hosts]
                )
            if change.tasks:
                conn.executemany(
                    _UPSERT_TASK,
                    [(mid, r.task.task_id, r.model_dump_json()) for r in change.tasks],
                )
            if change.events:
                first = last_seq - len(change.events) + 1
                conn.executemany(_INSERT_EVENT, _event_rows(mid, change.events, first))
            if change.sent:
                conn.executemany(_DELETE_SENT, [(mid, tid, n) for tid, n in change.sent])
            if change.outbox:
                conn.executemany(_UPSERT_OUTBOX, [_outbox_row(mid, i) for i in change.outbox])
        return int(version)

    async def events(
        self, mission_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        rows = self._db.execute(
            "read events", _SELECT_EVENTS, (mission_id, after_seq, -1 if limit is None else limit)
        )
        out: list[EventRecord] = []
        for seq, body in rows:
            event = EventRecord.model_validate_json(body)
            event.seq = seq
            out.append(event)
        return out

    async def list_missions(self) -> list[MissionSummary]:
        return [
            MissionSummary(
                mission_id=mid,
                lab_type=lab,
                status=MissionStatus(status),
                status_reason=reason,
                hosts=hosts,
                version=version,
                updated_at=datetime.fromisoformat(updated),
            )
            for mid, lab, status, reason, hosts, version, updated in self._db.execute(
                "list missions", _LIST
            )
        ]

    async def unsent(self, mission_id: str) -> list[OutboxItem]:
        rows = self._db.execute(
            "read outbox",
            "SELECT body, not_before FROM outbox WHERE mission_id = ? ORDER BY rowid",
            (mission_id,),
        )
        return [
            OutboxItem(
                task=Task.model_validate_json(body),
                not_before=None if nb is None else datetime.fromisoformat(nb),
            )
            for body, nb in rows
        ]

    async def mark_sent(self, mission_id: str, keys: Sequence[tuple[str, int]]) -> None:
        if keys:
            self._db.write_many(
                "mark sent",
                _DELETE_SENT,
                [(mission_id, tid, attempt) for tid, attempt in keys],
            )

    async def claim(self, mission_id: str, owner: str, ttl_s: float) -> bool:
        now = self._db.now()
        with self._db.errors("claim"):
            cur = self._db.conn.execute(_CLAIM, (mission_id, owner, now + ttl_s, now))
            return cur.rowcount == 1

    async def release(self, mission_id: str, owner: str) -> None:
        self._db.execute(
            "release",
            "DELETE FROM leases WHERE mission_id = ? AND owner = ?",
            (mission_id, owner),
        )

    async def lease(self, mission_id: str) -> LeaseInfo | None:
        rows = self._db.execute(
            "lease", "SELECT owner, expires FROM leases WHERE mission_id = ?", (mission_id,)
        )
        if not rows:
            return None
        left = float(rows[0][1]) - self._db.now()
        return LeaseInfo(str(rows[0][0]), left) if left > 0 else None

    async def delete(self, mission_id: str) -> int:
        removed = 0
        with self._db.transaction("delete mission") as conn:
            for table in ("events", "tasks", "hosts", "outbox", "leases", "missions"):
                cur = conn.execute(f"DELETE FROM {table} WHERE mission_id = ?", (mission_id,))
                removed += max(cur.rowcount, 0)
        return removed

    async def close(self) -> None:
        self._db.close()
