"""Finding a task's host: the connection settings a worker needs, from the store's registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from reaper.infra.base import MissionStore
from reaper.models import HostState

__all__ = ["HostResolver", "StoreHostResolver"]


class HostResolver(Protocol):
    async def resolve(self, mission_id: str, host_id: str) -> HostState | None: ...


class PrefetchingResolver(HostResolver, Protocol):
    async def prefetch(self, wanted: Sequence[tuple[str, str]]) -> None:
        """Load the (mission, host) pairs not cached yet, in as few round trips as possible."""
        ...


class StoreHostResolver:
    """Hosts from the store's registry, cached in process (connection settings rarely change;
    `invalidate` drops entries). Unknown hosts are not cached: a host added later is found."""

    def __init__(self, store: MissionStore, *, max_entries: int = 10_000) -> None:
        self._store = store
        self._max = max_entries
        self._cache: dict[tuple[str, str], HostState] = {}

    async def resolve(self, mission_id: str, host_id: str) -> HostState | None:
        key = (mission_id, host_id)
        host = self._cache.get(key)
        if host is None:
            host = await self._store.get_host(mission_id, host_id)
            if host is not None:
                self._put(key, host)
        return host

    async def prefetch(self, wanted: Sequence[tuple[str, str]]) -> None:
        missing: dict[str, list[str]] = {}
        for mission_id, host_id in wanted:
            if (mission_id, host_id) not in self._cache:
                missing.setdefault(mission_id, []).append(host_id)
        for mission_id, host_ids in missing.items():
            for host_id, host in (await self._store.get_hosts(mission_id, host_ids)).items():
                self._put((mission_id, host_id), host)

    def _put(self, key: tuple[str, str], host: HostState) -> None:
        if len(self._cache) >= self._max:
            # Oldest first: dicts keep insertion order.
            del self._cache[next(iter(self._cache))]
        self._cache[key] = host

    def invalidate(self, mission_id: str | None = None) -> None:
        if mission_id is None:
            self._cache.clear()
        else:
            for key in [k for k in self._cache if k[0] == mission_id]:
                del self._cache[key]
