"""PostgreSQL schema of the mission store, created and migrated on first use.

Migrations are numbered steps applied in order inside one transaction, under an advisory lock
so two processes starting together do not race; `schema_migrations` records what ran. A
database migrated by a newer Reaper (a version above `LATEST`) is refused rather than used.
Everything lives in one PostgreSQL schema (`reaper` by default), so tests isolate by name.
"""

from __future__ import annotations

import re
from typing import LiteralString

from psycopg import AsyncConnection, sql

from reaper.errors import BackendError

__all__ = ["LATEST", "MIGRATIONS", "migrate", "schema_ident"]

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# {s} is the schema. Rows are the unit of change: a commit touches the header row and the host
# and task rows it names, and appends events, whatever the mission's size.
# Documents are JSON as the models serialise it, never `jsonb`: jsonb re-orders object keys,
# and a mission must load back exactly as it was stored (JSON round trips are lossless). The
# header's fields a commit changes are columns; `header` holds the rest, written once at create.
MIGRATIONS: list[tuple[int, list[LiteralString]]] = [
    (
        1,
        [
            """CREATE TABLE {s}.missions (
                mission_id text PRIMARY KEY,
                lab_type text NOT NULL,
                status text NOT NULL,
                status_reason text NOT NULL DEFAULT '',
                goal_reached boolean NOT NULL,
                step int NOT NULL,
                settings json NOT NULL,
                version bigint NOT NULL,
                last_seq bigint NOT NULL DEFAULT 0,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                header json NOT NULL)""",
            """CREATE TABLE {s}.hosts (
                mission_id text NOT NULL REFERENCES {s}.missions ON DELETE CASCADE,
                host_id text NOT NULL,
                doc json NOT NULL,
                PRIMARY KEY (mission_id, host_id))""",
            """CREATE TABLE {s}.tasks (
                mission_id text NOT NULL REFERENCES {s}.missions ON DELETE CASCADE,
                task_id text NOT NULL,
                status text NOT NULL,
                doc json NOT NULL,
                PRIMARY KEY (mission_id, task_id))""",
            """CREATE TABLE {s}.events (
                mission_id text NOT NULL REFERENCES {s}.missions ON DELETE CASCADE,
                seq bigint NOT NULL,
                ts timestamptz NOT NULL,
                kind text NOT NULL,
                schema_version int NOT NULL,
                payload json NOT NULL,
                PRIMARY KEY (mission_id, seq))""",
            """CREATE TABLE {s}.outbox (
                id bigserial,
                mission_id text NOT NULL REFERENCES {s}.missions ON DELETE CASCADE,
                task_id text NOT NULL,
                attempt int NOT NULL,
                task json NOT NULL,
                not_before timestamptz,
                sent boolean NOT NULL DEFAULT false,
                PRIMARY KEY (mission_id, task_id, attempt))""",
            "CREATE INDEX outbox_unsent ON {s}.outbox (mission_id, id) WHERE NOT sent",
            """CREATE TABLE {s}.leases (
                mission_id text PRIMARY KEY,
                owner text NOT NULL,
                expires_at timestamptz NOT NULL)""",
        ],
    ),
    # The PostgreSQL-only queue and bus (reaper.infra.postgres_queue), as SQLite's tables:
    # queue state 0 ready (visible from visible_at), 1 leased (visible again at lease
    # expiry), 2 acked (kept without body so a re-publish of (task_id, attempt) is ignored).
    (
        2,
        [
            """CREATE TABLE {s}.queue (
                seq bigserial PRIMARY KEY,
                task_id text NOT NULL,
                attempt int NOT NULL,
                agent_type text NOT NULL,
                mission_id text NOT NULL,
                state smallint NOT NULL DEFAULT 0,
                visible_at timestamptz NOT NULL,
                lease_owner text,
                delivery_count int NOT NULL DEFAULT 0,
                body text NOT NULL,
                UNIQUE (task_id, attempt))""",
            "CREATE INDEX queue_open ON {s}.queue (agent_type, seq) WHERE state < 2",
            """CREATE TABLE {s}.inbox (
                id bigserial PRIMARY KEY,
                mission_id text NOT NULL,
                delivered boolean NOT NULL DEFAULT false,
                delivery_count int NOT NULL DEFAULT 0,
                body text NOT NULL)""",
            "CREATE INDEX inbox_mission ON {s}.inbox (mission_id, id)",
        ],
    ),
    # Housekeeping (`PostgresTaskQueue.prune`) deletes a finished mission's acked rows: found
    # by mission through a partial index that holds acked rows only.
    (
        3,
        ["CREATE INDEX queue_acked ON {s}.queue (mission_id) WHERE state = 2"],
    ),
    # Cheaper commits (measured: PostgreSQL CPU per task 247 → 180 µs in `reaper bench`):
    # - no foreign keys to missions: each child row cost a trigger query, and a child is only
    #   written by the transaction whose version-guarded header UPDATE (or INSERT, at create)
    #   just proved the mission row exists; missions are never deleted;
    # - room on host and task pages for HOT updates (a host row is rewritten per result,
    #   without index maintenance when the new version fits on its page);
    # - host documents up to 4 kB stay inline and uncompressed (pglz cost more than it saved);
    # - no partial index on unsent outbox rows: marking a row sent moved it out of the index
    #   (never a HOT update); the few unsent rows are read only when an engine starts.
    (
        4,
        [
            "ALTER TABLE {s}.hosts DROP CONSTRAINT IF EXISTS hosts_mission_id_fkey",
            "ALTER TABLE {s}.tasks DROP CONSTRAINT IF EXISTS tasks_mission_id_fkey",
            "ALTER TABLE {s}.events DROP CONSTRAINT IF EXISTS events_mission_id_fkey",
            "ALTER TABLE {s}.outbox DROP CONSTRAINT IF EXISTS outbox_mission_id_fkey",
            "ALTER TABLE {s}.hosts SET (fillfactor = 50, toast_tuple_target = 4080)",
            "ALTER TABLE {s}.tasks SET (fillfactor = 60)",
            "ALTER TABLE {s}.outbox SET (fillfactor = 60)",
            "DROP INDEX IF EXISTS {s}.outbox_unsent",
        ],
    ),
    # The documents written per task are text, not json: PostgreSQL parsed every one on the
    # way in (json_lex was ~15% of its CPU in `reaper bench`) to check what the models had
    # just serialised. The JSON is unchanged; cast (`doc::json`) to query inside it.
    (
        5,
        [
            "ALTER TABLE {s}.hosts ALTER COLUMN doc TYPE text",
            "ALTER TABLE {s}.tasks ALTER COLUMN doc TYPE text",
            "ALTER TABLE {s}.events ALTER COLUMN payload TYPE text",
            "ALTER TABLE {s}.outbox ALTER COLUMN task TYPE text",
        ],
    ),
    # The outbox moves into the task rows (see postgres_commit): a queued task is its row,
    # numbered in `queued`, and the mission's `sent_seq` is the highest number published. An
    # entry cost an outbox row written at commit and another write when marked sent. Entries
    # not yet sent carry over in their order; each has its record (the engine commits both).
    (
        6,
        [
            """ALTER TABLE {s}.tasks ADD COLUMN attempt int, ADD COLUMN queued bigint,
                ADD COLUMN not_before timestamptz""",
            "UPDATE {s}.tasks SET attempt = (doc::json->'task'->>'attempt')::int",
            "ALTER TABLE {s}.tasks ALTER COLUMN attempt SET NOT NULL",
            """ALTER TABLE {s}.missions ADD COLUMN queued_seq bigint NOT NULL DEFAULT 0,
                ADD COLUMN sent_seq bigint NOT NULL DEFAULT 0""",
            """UPDATE {s}.tasks t SET queued = o.id, not_before = o.not_before
                FROM {s}.outbox o WHERE o.mission_id = t.mission_id AND o.task_id = t.task_id
                AND o.attempt = t.attempt AND NOT o.sent""",
            """UPDATE {s}.missions m SET queued_seq = q.top FROM (SELECT mission_id,
                max(queued) AS top FROM {s}.tasks WHERE queued IS NOT NULL GROUP BY mission_id)
                AS q WHERE q.mission_id = m.mission_id""",
            "DROP TABLE {s}.outbox",
        ],
    ),
    # The process registry's heartbeats (`reaper.services.registry`), beside the missions
    # they serve: deployments sharing a server each see their own engines and workers.
    (
        7,
        [
            """CREATE TABLE {s}.processes (process_id text PRIMARY KEY,
                last_seen double precision NOT NULL, body text NOT NULL)""",
        ],
    ),
    # Simulated hosts' worlds by lab (reaper.infra.postgres_worlds), not by mission: every
    # mission and worker of a lab shares them; writes compare-and-set on `version`.
    (
        8,
        [
            """CREATE TABLE {s}.sim_worlds (lab text NOT NULL, host_id text NOT NULL,
                version bigint NOT NULL, body text NOT NULL, PRIMARY KEY (lab, host_id))""",
        ],
    ),
]
LATEST = MIGRATIONS[-1][0]


def schema_ident(schema: str) -> sql.Identifier:
    if not _SCHEMA_RE.match(schema):
        raise BackendError(f"invalid PostgreSQL schema name {schema!r}")
    return sql.Identifier(schema)


async def migrate(conn: AsyncConnection[tuple[object, ...]], schema: str) -> int:
    """Bring `schema` up to `LATEST`; return the version found before. BackendError if the
    stored schema is newer than this code."""
    s = schema_ident(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"reaper:{schema}",))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {s}").format(s=s))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
                "version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(s=s)
        )
        cur = await conn.execute(
            sql.SQL("SELECT coalesce(max(version), 0) FROM {s}.schema_migrations").format(s=s)
        )
        row = await cur.fetchone()
        found = int(str(row[0])) if row else 0
        if found > LATEST:
            raise BackendError(
                f"PostgreSQL schema {schema!r} is at version {found}, newer than this Reaper "
                f"understands ({LATEST}): upgrade Reaper or use another schema"
            )
        for version, steps in MIGRATIONS:
            if version <= found:
                continue
            for step in steps:
                await conn.execute(sql.SQL(step).format(s=s))
            await conn.execute(
                sql.SQL("INSERT INTO {s}.schema_migrations (version) VALUES (%s)").format(s=s),
                (version,),
            )
    return found
