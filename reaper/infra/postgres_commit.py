"""A mission store commit as one SQL statement: data-modifying CTEs on an autocommit connection.

One statement is one transaction and one round trip. The psycopg pipeline it replaces (BEGIN,
the header UPDATE, a statement per table, COMMIT) cost ~2 ms of client CPU per commit whatever
its size (measured: some 20 socket waits per commit in psycopg's pipeline code), which a busy
engine paid on every wake-up.

The header UPDATE (`hdr`) is guarded by the expected version, and every other part reads
`hdr`: when the guard fails, nothing is written and the statement returns no row. All parts
see one snapshot (the rows as they were before the statement).

The outbox is the task rows themselves: an entry is the task of a record written in the same
commit, numbered in the row's `queued` column, and `sent` moves the mission's high-water mark
(`sent_seq`) to the highest number among the keys published: the engine publishes entries in
the order they were queued, so every lower number was published (or superseded) too. Marking
costs no row write, and queuing none beyond the record's own.
Rows go as parallel arrays (unnest), in binary (%b: the text format escapes every quote of
every JSON document), so the statement's text depends only on which parts a commit has.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, LiteralString

from psycopg import sql
from pydantic_core import to_json

from reaper.infra.base import Commit
from reaper.infra.postgres_schema import schema_ident

__all__ = ["SENT_SEQ", "commit_statement", "sent_params"]

# `queued_seq` numbers the outbox entries (a task row's `queued`) in commit order, which is the
# order the engine publishes them in; `sent_seq` is the highest number published so far.
_HEADER: LiteralString = """hdr AS (UPDATE {s}.missions SET version = version + 1,
    status = %(status)s, status_reason = %(reason)s, goal_reached = %(goal)s, step = %(step)s,
    settings = %(settings)s::json, updated_at = %(updated)s, last_seq = last_seq + %(n_events)s,
    queued_seq = queued_seq + %(n_queued)s"""
# The mission's new high-water mark once the keys `sent_params` names are published (also
# `PostgresMissionStore.mark_sent`, outside a commit).
SENT_SEQ: LiteralString = """sent_seq = GREATEST(sent_seq, (SELECT max(t.queued) FROM {s}.tasks t
        WHERE t.mission_id = %(mid)s AND t.task_id = ANY(%(sent_ids)s::text[])
        AND (t.task_id, t.attempt) IN (SELECT * FROM unnest(%(sent_ids)s::text[],
        %(sent_attempts)s::int[]))))"""
_GUARD: LiteralString = """
    WHERE mission_id = %(mid)s AND version = %(expected)s
    RETURNING version, last_seq, queued_seq)"""

_PARTS: dict[str, LiteralString] = {
    "hosts": """h AS (INSERT INTO {s}.hosts (mission_id, host_id, doc)
        SELECT %(mid)s, u.h, u.d FROM hdr, unnest(%(host_ids)b::text[],
        %(host_docs)b::text[]) AS u(h, d)
        ON CONFLICT (mission_id, host_id) DO UPDATE SET doc = EXCLUDED.doc)""",
    # A row queued by this commit (q: its place in the commit's outbox) gets its number; any
    # other keeps the one it has.
    "tasks": """t AS (INSERT INTO {s}.tasks
        (mission_id, task_id, status, doc, attempt, queued, not_before)
        SELECT %(mid)s, u.t, u.st, u.d, u.a, hdr.queued_seq - %(n_queued)s + u.q, u.nb
        FROM hdr, unnest(%(task_ids)b::text[], %(task_status)b::text[], %(task_docs)b::text[],
        %(task_attempts)b::int[], %(task_queued)b::int[], %(task_not_before)b::timestamptz[])
        AS u(t, st, d, a, q, nb)
        ON CONFLICT (mission_id, task_id) DO UPDATE SET status = EXCLUDED.status,
        doc = EXCLUDED.doc, attempt = EXCLUDED.attempt,
        queued = COALESCE(EXCLUDED.queued, {s}.tasks.queued),
        not_before = CASE WHEN EXCLUDED.queued IS NULL THEN {s}.tasks.not_before
                     ELSE EXCLUDED.not_before END)""",
    "events": """e AS (INSERT INTO {s}.events (mission_id, seq, ts, kind, schema_version, payload)
        SELECT %(mid)s, hdr.last_seq - %(n_events)s + u.o, u.ts, u.k, u.v, u.p
        FROM hdr, unnest(%(event_ts)b::timestamptz[], %(event_kinds)b::text[],
        %(event_versions)b::int[], %(event_payloads)b::text[]) WITH ORDINALITY
        AS u(ts, k, v, p, o))""",
}


def sent_params(keys: Sequence[tuple[str, int]]) -> dict[str, list[Any]]:
    return {"sent_ids": [k[0] for k in keys], "sent_attempts": [k[1] for k in keys]}


@lru_cache(maxsize=256)  # a commit's shape: which parts it has (16 at most per schema)
def _statement(schema: str, sent: bool, parts: tuple[str, ...]) -> sql.Composed:
    header = _HEADER + (",\n    " + SENT_SEQ if sent else "") + _GUARD
    ctes = ",\n".join([header, *(_PARTS[p] for p in parts)])
    return sql.SQL("WITH " + ctes + "\nSELECT version, last_seq FROM hdr").format(
        s=schema_ident(schema)
    )


def commit_statement(schema: str, change: Commit) -> tuple[sql.Composed, dict[str, Any]]:
    """The statement writing `change` and its parameters; it returns (version, last_seq)
    after the commit, or no row if the mission is not at `change.expected_version`.
    ValueError if an outbox entry's task is not the task of a record in the same commit
    (the record's row holds the entry)."""
    m = change.mission
    queued = {o.task.key: i for i, o in enumerate(change.outbox, start=1)}
    not_before = {o.task.key: o.not_before for o in change.outbox}
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
        "n_queued": len(queued),
    }
    parts: list[str] = []
    if change.hosts:
        parts.append("hosts")
        params["host_ids"] = [h.host_id for h in change.hosts]
        params["host_docs"] = [h.model_dump_json() for h in change.hosts]
    if change.tasks:
        parts.append("tasks")
        keys = [r.task.key for r in change.tasks]
        params["task_ids"] = [k[0] for k in keys]
        params["task_status"] = [r.status.value for r in change.tasks]
        params["task_docs"] = [r.model_dump_json() for r in change.tasks]
        params["task_attempts"] = [k[1] for k in keys]
        params["task_queued"] = [queued.get(k) for k in keys]
        params["task_not_before"] = [not_before.get(k) for k in keys]
        missing = len(queued) - sum(1 for k in keys if k in queued)
    else:
        missing = len(queued)
    if missing:
        raise ValueError(
            f"mission {m.mission_id}: {missing} outbox entr{'y' if missing == 1 else 'ies'} "
            "without the task record in the same commit"
        )
    if events := change.events:
        parts.append("events")
        params["event_ts"] = [e.ts for e in events]
        params["event_kinds"] = [e.kind.value for e in events]
        params["event_versions"] = [e.schema_version for e in events]
        params["event_payloads"] = [to_json(e.payload).decode() for e in events]
    # Published before this commit: a key queued again by it is not among them.
    sent = [k for k in change.sent if k not in queued]
    if sent:
        params.update(sent_params(sent))
    return _statement(schema, bool(sent), tuple(parts)), params
