"""`SimWorldStore` on SQLite: one row per (lab, host) in the backend's file, JSON bodies.

Writes are compare-and-set on the row's version inside one `BEGIN IMMEDIATE` transaction,
so worker processes sharing the file never lose each other's updates; a reader gets only
the version when it already holds it (the body is neither sent nor parsed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_core import from_json, to_json

from reaper.errors import StaleStateError
from reaper.infra.base import StoredWorld, WorldWrite
from reaper.infra.sqlite_db import SqliteDatabase

__all__ = ["SqliteSimWorldStore"]

_LAB_OF = "SELECT lab_type FROM missions WHERE mission_id = ?"
_VERSION = "SELECT version FROM sim_worlds WHERE lab = ? AND host_id = ?"
_BODY = "SELECT version, body FROM sim_worlds WHERE lab = ? AND host_id = ? AND version != ?"
_LAB = "SELECT host_id, version FROM sim_worlds WHERE lab = ?"
_LAB_BODIES = "SELECT host_id, version, body FROM sim_worlds WHERE lab = ?"
_INSERT = "INSERT INTO sim_worlds (lab, host_id, version, body) VALUES (?, ?, 1, ?)"
_UPDATE = """UPDATE sim_worlds SET version = version + 1, body = ?
WHERE lab = ? AND host_id = ? AND version = ?"""


class SqliteSimWorldStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def lab_of(self, mission_id: str) -> str | None:
        rows = self._db.execute("sim lab_of", _LAB_OF, (mission_id,))
        return None if not rows else str(rows[0][0])

    async def load_world(
        self, lab: str, host_id: str, *, known_version: int = 0
    ) -> StoredWorld | None:
        rows = self._db.execute("sim load_world", _BODY, (lab, host_id, known_version))
        if rows:
            return StoredWorld(int(rows[0][0]), from_json(rows[0][1]))
        if not known_version:
            return None
        # Not newer than what the caller holds: the same version, or gone (a reset).
        rows = self._db.execute("sim load_world", _VERSION, (lab, host_id))
        return StoredWorld(int(rows[0][0]), None) if rows else None

    async def load_lab(
        self, lab: str, known: Mapping[str, int] | None = None
    ) -> dict[str, StoredWorld]:
        seen = known or {}
        with self._db.snapshot("sim load_lab") as conn:
            versions = {str(h): int(v) for h, v in conn.execute(_LAB, (lab,)).fetchall()}
            if all(seen.get(h) == v for h, v in versions.items()):
                return {h: StoredWorld(v, None) for h, v in versions.items()}
            rows = conn.execute(_LAB_BODIES, (lab,)).fetchall()
        return {
            str(h): StoredWorld(int(v), None if seen.get(str(h)) == int(v) else from_json(b))
            for h, v, b in rows
        }

    async def save_worlds(self, lab: str, writes: Sequence[WorldWrite]) -> list[int]:
        with self._db.transaction("sim save_worlds") as conn:
            for write in writes:
                body = _json(dict(write.data))
                if write.expected_version == 0:
                    done = conn.execute(
                        "INSERT OR IGNORE" + _INSERT[6:], (lab, write.host_id, body)
                    ).rowcount
                else:
                    done = conn.execute(
                        _UPDATE, (body, lab, write.host_id, write.expected_version)
                    ).rowcount
                if done != 1:
                    # The exception rolls the whole transaction back: all or none.
                    found = conn.execute(_VERSION, (lab, write.host_id)).fetchone()
                    raise StaleStateError(
                        f"sim world {lab}/{write.host_id}: expected version "
                        f"{write.expected_version}, found {0 if found is None else found[0]}"
                    )
        return [w.expected_version + 1 for w in writes]

    async def clear_worlds(
        self, lab: str | None = None, host_id: str | None = None
    ) -> list[tuple[str, str]]:
        where, params = _where(lab, host_id)
        with self._db.transaction("sim clear_worlds") as conn:
            rows = conn.execute(f"DELETE FROM sim_worlds{where} RETURNING lab, host_id", params)
            removed = [(str(a), str(b)) for a, b in rows.fetchall()]
        return sorted(removed)


def _where(lab: str | None, host_id: str | None) -> tuple[str, tuple[str, ...]]:
    if lab is None:
        return "", ()
    if host_id is None:
        return " WHERE lab = ?", (lab,)
    return " WHERE lab = ? AND host_id = ?", (lab, host_id)


def _json(value: Mapping[str, Any]) -> str:
    return to_json(value).decode()
