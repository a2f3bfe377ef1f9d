"""A mission store commit as one SQL statement: data-modifying CTEs on an autocommit connection.

One statement is one transaction and one round trip. The psycopg pipeline it replaces (BEGIN,
the header UPDATE, a statement per table, COMMIT) cost ~2 ms of client CPU per commit whatever
its size (measured: some 20 socket waits per commit in psycopg's pipeline code), which a busy
engine paid on every wake-up.

The header UPDATE (`hdr`) is guarded by the expected version, and every other part reads
`hdr`: when the guard fails, nothing is written and the statement returns no row. All parts
see one snapshot and must not touch a row twice, so the keys marked sent (their outbox rows
deleted) leave out those the same commit queues again (whose row the `o` part writes).
Rows go as parallel arrays (unnest), in binary (%b: the text format escapes every quote of
every JSON document), so the statement's text depends only on which parts a commit has.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, LiteralString

from psycopg import sql
from pydantic_core import to_json

from reaper.infra.base import Commit
from reaper.infra.postgres_schema import schema_ident

__all__ = ["commit_statement"]

_HEADER: LiteralString = """hdr AS (UPDATE {s}.missions SET version = version + 1,
    status = %(status)s, status_reason = %(reason)s, goal_reached = %(goal)s, step = %(step)s,
    settings = %(settings)s::json, updated_at = %(updated)s, last_seq = last_seq + %(n_events)s
    WHERE mission_id = %(mid)s AND version = %(expected)s RETURNING version, last_seq)"""

_PARTS: dict[str, LiteralString] = {
    "hosts": """h AS (INSERT INTO {s}.hosts (mission_id, host_id, doc)
        SELECT %(mid)s, u.h, u.d FROM hdr, unnest(%(host_ids)b::text[],
        %(host_docs)b::text[]) AS u(h, d)
        ON CONFLICT (mission_id, host_id) DO UPDATE SET doc = EXCLUDED.doc)""",
    "tasks": """t AS (INSERT INTO {s}.tasks (mission_id, task_id, status, doc)
        SELECT %(mid)s, u.t, u.st, u.d FROM hdr, unnest(%(task_ids)b::text[],
        %(task_status)b::text[], %(task_docs)b::text[]) AS u(t, st, d)
        ON CONFLICT (mission_id, task_id)
        DO UPDATE SET status = EXCLUDED.status, doc = EXCLUDED.doc)""",
    "events": """e AS (INSERT INTO {s}.events (mission_id, seq, ts, kind, schema_version, payload)
        SELECT %(mid)s, hdr.last_seq - %(n_events)s + u.o, u.ts, u.k, u.v, u.p
        FROM hdr, unnest(%(event_ts)b::timestamptz[], %(event_kinds)b::text[],
        %(event_versions)b::int[], %(event_payloads)b::text[]) WITH ORDINALITY
        AS u(ts, k, v, p, o))""",
    # Sent rows are deleted (as SQLite does): cheaper than rewriting them, and the table keeps
    # only what waits. `task_id = ANY` is an index condition on the primary key: the rows
    # read are the keys' own, however many the mission has (whatever plan a prepared
    # statement settles on).
    "sent": """s AS (DELETE FROM {s}.outbox
        WHERE mission_id = %(mid)s AND task_id = ANY(%(sent_ids)s::text[])
        AND (task_id, attempt) IN (SELECT * FROM unnest(%(sent_ids)s::text[],
        %(sent_attempts)s::int[])) AND EXISTS (SELECT FROM hdr))""",
    "outbox": """o AS (INSERT INTO {s}.outbox (mission_id, task_id, attempt, task, not_before)
        SELECT %(mid)s, u.t, u.a, u.d, u.nb FROM hdr, unnest(%(out_ids)b::text[],
        %(out_attempts)b::int[], %(out_tasks)b::text[], %(out_not_before)b::timestamptz[])
        AS u(t, a, d, nb)
        ON CONFLICT (mission_id, task_id, attempt)
        DO UPDATE SET task = EXCLUDED.task, not_before = EXCLUDED.not_before, sent = false)""",
}


@lru_cache(maxsize=256)  # a commit's shape: which parts it has (32 at most per schema)
def _statement(schema: str, parts: tuple[str, ...]) -> sql.Composed:
    ctes = ",\n".join([_HEADER, *(_PARTS[p] for p in parts)])
    return sql.SQL("WITH " + ctes + "\nSELECT version, last_seq FROM hdr").format(
        s=schema_ident(schema)
    )


def commit_statement(schema: str, change: Commit) -> tuple[sql.Composed, dict[str, Any]]:
    """The statement writing `change` and its parameters; it returns (version, last_seq)
    after the commit, or no row if the mission is not at `change.expected_version`."""
    m = change.mission
    params: dict[str, Any] = {
        "mid": m.mission_id,
        "expected": change.expected_version,
        "status": m.status.value,
        "reason": m.status_reason,
        "goal": m.goal_reached,
        "step": m.step,
        "settings": to_json(m.settings).decode(),
        "updated": m.updated_at,
        "n_events": len(change.events),
    }
    parts: list[str] = []
    if change.hosts:
        parts.append("hosts")
        params["host_ids"] = [h.host_id for h in change.hosts]
        params["host_docs"] = [h.model_dump_json() for h in change.hosts]
    if change.tasks:
        parts.append("tasks")
        params["task_ids"] = [r.task.task_id for r in change.tasks]
        params["task_status"] = [r.status.value for r in change.tasks]
        params["task_docs"] = [r.model_dump_json() for r in change.tasks]
    if change.events:
        parts.append("events")
        params["event_ts"] = [e.ts for e in change.events]
        params["event_kinds"] = [e.kind.value for e in change.events]
        params["event_versions"] = [e.schema_version for e in change.events]
        params["event_payloads"] = [to_json(e.payload).decode() for e in change.events]
    queued = {o.task.key for o in change.outbox}
    sent = [k for k in change.sent if k not in queued]
    if sent:
        parts.append("sent")
        params["sent_ids"] = [k[0] for k in sent]
        params["sent_attempts"] = [k[1] for k in sent]
    if change.outbox:
        parts.append("outbox")
        params["out_ids"] = [o.task.task_id for o in change.outbox]
        params["out_attempts"] = [o.task.attempt for o in change.outbox]
        params["out_tasks"] = [o.task.model_dump_json() for o in change.outbox]
        params["out_not_before"] = [o.not_before for o in change.outbox]
    return _statement(schema, tuple(parts)), params
