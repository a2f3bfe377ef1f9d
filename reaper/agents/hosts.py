"""Finding a task's host: the connection settings a worker needs, from the store's registry."""

from __future__ import annotations

from typing import Protocol

from reaper.infra.base import MissionStore
from reaper.models import HostConnection

__all__ = ["HostResolver", "StoreHostResolver"]


class HostResolver(Protocol):
    async def resolve(self, mission_id: str, host_id: str) -> HostConnection | None: ...


class StoreHostResolver:
    """Connection settings from the store, a mission's hosts all at once: the first task of
    a mission costs one round trip, the rest none (a worker process sees tasks of most of a
    mission's hosts, in any order). A host the cached mission does not know makes one fresh
    load (it may have been added since). The least recently used missions leave first once
    more than `max_missions` missions or `max_hosts` hosts are cached (~1.4 kB each; the
    mission in use always stays); `invalidate` drops them."""

    def __init__(
        self, store: MissionStore, *, max_missions: int = 64, max_hosts: int = 100_000
    ) -> None:
        self._store = store
        self._max = max_missions
        self._max_hosts = max_hosts
        self._missions: dict[str, dict[str, HostConnection]] = {}
        self._hosts = 0

    async def resolve(self, mission_id: str, host_id: str) -> HostConnection | None:
        hosts = self._missions.pop(mission_id, None)  # re-inserted below: most recent last
        if hosts is not None:
            self._hosts -= len(hosts)
        if hosts is None or host_id not in hosts:
            hosts = await self._store.get_connections(mission_id)
        while self._missions and (
            len(self._missions) >= self._max or self._hosts + len(hosts) > self._max_hosts
        ):
            self._hosts -= len(self._missions.pop(next(iter(self._missions))))
        self._missions[mission_id] = hosts
        self._hosts += len(hosts)
        return hosts.get(host_id)

    def invalidate(self, mission_id: str | None = None) -> None:
        if mission_id is None:
            self._missions.clear()
            self._hosts = 0
        else:
            self._hosts -= len(self._missions.pop(mission_id, {}))
