"""`SimWorldStore` on PostgreSQL: one row per (lab, host) in the store's schema.

A write is compare-and-set on the row's version (an UPDATE guarded by it, or an INSERT that
finds no row), all the writes of one call in one transaction: a conflict rolls them all back
and raises StaleStateError, so concurrent workers never lose an update. A reader holding the
current version gets the version only (the body is not sent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, LiteralString

from psycopg import AsyncConnection, sql
from pydantic_core import to_json

from reaper.errors import StaleStateError
from reaper.infra.base import StoredWorld, WorldWrite
from reaper.infra.postgres_conn import PgConnection

__all__ = ["PostgresSimWorldStore"]

_SQL: dict[str, LiteralString] = {
    "lab_of": "SELECT lab_type FROM {s}.missions WHERE mission_id = %s",
    "world": """SELECT version, CASE WHEN version = %s THEN NULL ELSE body END
        FROM {s}.sim_worlds WHERE lab = %s AND host_id = %s""",
    "lab": "SELECT host_id, version, body FROM {s}.sim_worlds WHERE lab = %s",
    "lab_versions": "SELECT host_id, version FROM {s}.sim_worlds WHERE lab = %s",
    "insert": """INSERT INTO {s}.sim_worlds (lab, host_id, version, body) VALUES (%s, %s, 1, %s)
        ON CONFLICT (lab, host_id) DO NOTHING RETURNING version""",
    "update": """UPDATE {s}.sim_worlds SET version = version + 1, body = %s
        WHERE lab = %s AND host_id = %s AND version = %s RETURNING version""",
    "clear_all": "DELETE FROM {s}.sim_worlds RETURNING lab, host_id",
    "clear_lab": "DELETE FROM {s}.sim_worlds WHERE lab = %s RETURNING lab, host_id",
    "clear_host": """DELETE FROM {s}.sim_worlds WHERE lab = %s AND host_id = %s
        RETURNING lab, host_id""",
}


class PostgresSimWorldStore:
    def __init__(self, pg: PgConnection, ident: sql.Identifier) -> None:
        self._pg = pg
        self._q = {name: sql.SQL(text).format(s=ident) for name, text in _SQL.items()}

    async def _rows(self, name: str, params: Sequence[Any]) -> list[Any]:
        async def run(conn: AsyncConnection[Any]) -> list[Any]:
            cur = await conn.execute(self._q[name], params)
            return [] if cur.description is None else list(await cur.fetchall())

        return await self._pg.run(run, retry=name.startswith(("lab", "world")))

    async def lab_of(self, mission_id: str) -> str | None:
        rows = await self._rows("lab_of", (mission_id,))
        return None if not rows else str(rows[0][0])

    async def load_world(
        self, lab: str, host_id: str, *, known_version: int = 0
    ) -> StoredWorld | None:
        rows = await self._rows("world", (known_version, lab, host_id))
        if not rows:
            return None
        version, body = rows[0]
        return StoredWorld(int(version), None if body is None else json.loads(body))

    async def load_lab(
        self, lab: str, known: Mapping[str, int] | None = None
    ) -> dict[str, StoredWorld]:
        seen = known or {}
        versions = {str(h): int(v) for h, v in await self._rows("lab_versions", (lab,))}
        if all(seen.get(h) == v for h, v in versions.items()):
            return {h: StoredWorld(v, None) for h, v in versions.items()}
        return {
            str(h): StoredWorld(int(v), None if seen.get(str(h)) == int(v) else json.loads(b))
            for h, v, b in await self._rows("lab", (lab,))
        }

    async def save_worlds(self, lab: str, writes: Sequence[WorldWrite]) -> list[int]:
        versions: list[int] = []
        async with self._pg.session() as conn, conn.transaction():
            for write in writes:
                body = to_json(dict(write.data)).decode()
                if write.expected_version == 0:
                    cur = await conn.execute(self._q["insert"], (lab, write.host_id, body))
                else:
                    cur = await conn.execute(
                        self._q["update"], (body, lab, write.host_id, write.expected_version)
                    )
                row = await cur.fetchone()
                if row is None:  # leaving the block rolls every write back
                    raise StaleStateError(
                        f"sim world {lab}/{write.host_id}: version "
                        f"{write.expected_version} is no longer current"
                    )
                versions.append(int(row[0]))
        return versions

    async def clear_worlds(
        self, lab: str | None = None, host_id: str | None = None
    ) -> list[tuple[str, str]]:
        if lab is None:
            rows = await self._rows("clear_all", ())
        elif host_id is None:
            rows = await self._rows("clear_lab", (lab,))
        else:
            rows = await self._rows("clear_host", (lab, host_id))
        return sorted((str(a), str(b)) for a, b in rows)
