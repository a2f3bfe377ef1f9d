"""`SimWorldStore` in process memory (the memory backend's): worlds as given, never copied.

The store takes ownership of the data it is handed and hands the same objects out: callers
build fresh data for every write and never mutate what they read (`HostWorld.from_data`
copies), so the in-process path costs a dict lookup per read, not a serialisation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reaper.errors import StaleStateError
from reaper.infra.base import StoredWorld, WorldWrite

__all__ = ["MemorySimWorldStore"]


class MemorySimWorldStore:
    def __init__(self, lab_of: Callable[[str], str | None]) -> None:
        self._lab_of = lab_of
        # lab → host id → (version, data)
        self._labs: dict[str, dict[str, tuple[int, Mapping[str, Any]]]] = {}

    async def lab_of(self, mission_id: str) -> str | None:
        return self._lab_of(mission_id)

    async def load_world(
        self, lab: str, host_id: str, *, known_version: int = 0
    ) -> StoredWorld | None:
        found = self._labs.get(lab, {}).get(host_id)
        if found is None:
            return None
        version, data = found
        return StoredWorld(version, None if version == known_version else data)

    async def load_lab(
        self, lab: str, known: Mapping[str, int] | None = None
    ) -> dict[str, StoredWorld]:
        seen = known or {}
        return {
            host: StoredWorld(version, None if seen.get(host) == version else data)
            for host, (version, data) in self._labs.get(lab, {}).items()
        }

    async def save_worlds(self, lab: str, writes: Sequence[WorldWrite]) -> list[int]:
        worlds = self._labs.setdefault(lab, {})
        for write in writes:
            found = worlds.get(write.host_id, (0, {}))[0]
            if found != write.expected_version:
                raise StaleStateError(
                    f"sim world {lab}/{write.host_id}: expected version "
                    f"{write.expected_version}, found {found}"
                )
        versions = []
        for write in writes:
            version = write.expected_version + 1
            worlds[write.host_id] = (version, write.data)
            versions.append(version)
        return versions

    async def clear_worlds(
        self, lab: str | None = None, host_id: str | None = None
    ) -> list[tuple[str, str]]:
        removed: list[tuple[str, str]] = []
        for name in [lab] if lab is not None else list(self._labs):
            worlds = self._labs.get(name, {})
            for host in [host_id] if host_id is not None else list(worlds):
                if worlds.pop(host, None) is not None:
                    removed.append((name, host))
            if not worlds:
                self._labs.pop(name, None)
        return sorted(removed)
