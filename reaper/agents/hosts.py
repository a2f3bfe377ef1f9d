"""Finding a task's host: the connection settings a worker needs, from the store's registry."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from reaper.agents.mission_cache import MissionCache
from reaper.infra.base import MissionStore
from reaper.models import HostConnection

__all__ = ["HostResolver", "StoreHostResolver"]


class HostResolver(Protocol):
    async def resolve(self, mission_id: str, host_id: str) -> HostConnection | None: ...


class StoreHostResolver:
    """Connection settings from the store, a mission's hosts all at once: the first task of
    a mission costs one round trip, the rest none (a worker process sees tasks of most of a
    mission's hosts, in any order). Callers that miss together (a process's worker loops at
    a mission's start) share one load. A host the cached mission does not know makes one
    fresh load (it may have been added since). The least recently used missions leave first
    once more than `max_missions` missions or `max_hosts` hosts are cached (~1.4 kB each; the
    mission in use always stays); `invalidate` drops them."""

    def __init__(
        self, store: MissionStore, *, max_missions: int = 64, max_hosts: int = 100_000
    ) -> None:
        self._store = store
        self._cache: MissionCache[HostConnection] = MissionCache(
            max_items=max_hosts, max_missions=max_missions
        )
        self._loading: dict[str, asyncio.Future[Mapping[str, HostConnection]]] = {}

    async def resolve(self, mission_id: str, host_id: str) -> HostConnection | None:
        hosts = self._cache.use(mission_id)
        if hosts is None or host_id not in hosts:
            hosts = await self._load(mission_id)
        return hosts.get(host_id)

    async def _load(self, mission_id: str) -> Mapping[str, HostConnection]:
        loading = self._loading.get(mission_id)
        if loading is None:
            loading = self._loading[mission_id] = asyncio.ensure_future(self._fetch(mission_id))
        # shield: a waiter cancelled (its worker stopping) does not cancel the others' load.
        return await asyncio.shield(loading)

    async def _fetch(self, mission_id: str) -> Mapping[str, HostConnection]:
        try:
            hosts = await self._store.get_connections(mission_id)
            self._cache.put(mission_id, hosts)
            return hosts
        finally:
            del self._loading[mission_id]

    def invalidate(self, mission_id: str | None = None) -> None:
        self._cache.drop(mission_id)
