"""The sim runner's view of the sim-world store: worlds shared by every mission and worker
process of a lab (`reaper.infra.base.SimWorldStore`).

A task on a host reads the committed world, runs, and writes the world back only if it
changed, compare-and-set on the version it read; on a conflict (another process wrote the
world in between) the task's effect is dropped and it runs again on the fresh world. Worlds
a task reads from other hosts (a domain join reads its DC's) are read fresh first, and
written back with the host's own in the same atomic call when the task changed them.

Cheap on the in-process path: the live world of each host stays cached with the version it
was read at, so a read of an unchanged world is a version check (a dict lookup on the memory
store, a one-column SELECT on SQLite and PostgreSQL) and never a parse; a world is
serialised only after a task that may change it, and written only when it differs.
One asyncio lock per lab serialises this process's tasks of a lab between read and write
(a PostgreSQL round trip suspends): a world is never changed under a task that read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reaper.agents.transports.sim_record import WorldData, dump_world, load_world, world_blob
from reaper.agents.transports.sim_world import HostWorld
from reaper.errors import StaleStateError
from reaper.infra.base import SimWorldStore, WorldWrite

__all__ = ["ALL_PEERS", "MAX_LABS", "SharedWorlds", "peers_needed"]

# Ensures whose handlers read other hosts' worlds: the DC of a domain (found by its name
# among every host of the lab), or the hosts a dns_client's `servers_from` names.
_DOMAIN_KINDS = frozenset({"domain_membership", "ad_user", "ad_group"})
ALL_PEERS = None
# Labs whose worlds one process keeps cached (a lab of 1,000 hosts is some megabytes).
MAX_LABS = 16


def peers_needed(verb: str, params: Mapping[str, Any]) -> Collection[str] | None:
    """The other hosts whose worlds `verb` reads: host ids, or ALL_PEERS (None)."""
    if verb == "diagnose":
        return ALL_PEERS if params.get("target") else ()
    if verb.startswith("ensure_"):
        return _of_resource(verb[len("ensure_") :], params.get("resource"))
    if verb == "discover":
        wanted: set[str] = set()
        for entry in params.get("resources") or ():
            hosts = _of_resource(entry.get("kind") if isinstance(entry, Mapping) else None, entry)
            if hosts is ALL_PEERS:
                return ALL_PEERS
            wanted.update(hosts)
        return tuple(sorted(wanted))  # () when none: nothing to read
    return ()


def _of_resource(kind: object, resource: object) -> Collection[str] | None:
    if kind in _DOMAIN_KINDS:
        return ALL_PEERS
    if kind == "dns_client" and isinstance(resource, Mapping):
        return tuple(str(h) for h in resource.get("servers_from") or ())
    return ()


@dataclass(slots=True)
class _Entry:
    version: int  # 0: built here, not stored yet
    world: HostWorld
    data: Mapping[str, Any]  # the persisted form at `version`
    blob: bytes | None  # the same, marshalled: what a task's world is compared with


def _entry(version: int, world: HostWorld, data: Mapping[str, Any] | None = None) -> _Entry:
    blob = world_blob(world)
    if data is None:
        data = WorldData(blob) if blob is not None else dump_world(world)
    return _Entry(version, world, data, blob)


class PeerWorlds(Mapping[str, HostWorld]):
    """A lab's cached worlds but one host's (read fresh by `SharedWorlds.refresh`)."""

    def __init__(self, entries: Mapping[str, _Entry], exclude: str) -> None:
        self._entries = entries
        self._exclude = exclude

    def __getitem__(self, key: str) -> HostWorld:
        if key == self._exclude:
            raise KeyError(key)
        return self._entries[key].world

    def __iter__(self) -> Iterator[str]:
        return (h for h in self._entries if h != self._exclude)

    def __len__(self) -> int:
        return len(self._entries) - (self._exclude in self._entries)


class SharedWorlds:
    """The cache of committed worlds, per lab. A long-lived worker serves lab after lab:
    beyond `max_labs` the least recently used labs are dropped (none with a task between
    read and write); a dropped lab is read from the store again when next asked."""

    def __init__(self, store: SimWorldStore, max_labs: int = MAX_LABS) -> None:
        self.store = store
        self.max_labs = max(1, max_labs)
        self._labs: dict[str, str] = {}  # mission id → lab
        self._entries: dict[str, dict[str, _Entry]] = {}  # lab → host id → entry
        # lab → its lock, least recently used first (a dict keeps insertion order)
        self._locks: dict[str, asyncio.Lock] = {}

    async def lab(self, mission_id: str) -> str:
        """The lab a mission runs (its `lab_type`; a mission the store does not know is a
        lab of its own)."""
        lab = self._labs.get(mission_id)
        if lab is None:
            lab = self._labs[mission_id] = await self.store.lab_of(mission_id) or mission_id
        return lab

    def lock(self, lab: str) -> asyncio.Lock:
        """The lab's lock, taken by every task around its read and write; the lab becomes
        the most recently used."""
        lock = self._locks.pop(lab, None) or asyncio.Lock()
        self._locks[lab] = lock
        if len(self._locks) > self.max_labs:
            self._evict(keep=lab)
        return lock

    def _evict(self, keep: str) -> None:
        for old in list(self._locks):
            if len(self._locks) <= self.max_labs:
                return
            if old == keep or self._locks[old].locked():
                continue  # asked for now, or a task is between its read and its write
            del self._locks[old]
            self._entries.pop(old, None)
            for mission in [m for m, lab in self._labs.items() if lab == old]:
                del self._labs[mission]

    async def fetch(
        self, lab: str, host_id: str, build: Callable[[], HostWorld] | None
    ) -> tuple[HostWorld | None, bool]:
        """The host's committed world (built by `build` when none is stored; None without
        `build`), and whether it was read from the store just now (the caller's facts may
        then be out of step with it)."""
        entries = self._entries.setdefault(lab, {})
        entry = entries.get(host_id)
        known = 0 if entry is None else entry.version
        stored = await self.store.load_world(lab, host_id, known_version=known)
        if stored is None:
            if entry is not None and entry.version == 0:
                return entry.world, False
            entries.pop(host_id, None)  # gone from the store (a reset): start afresh
            if build is None:
                return None, False
            world = build()
            # No blob yet: a world built here is written whole by the first task that may
            # change it (a read-only task never pays for serialising it).
            entries[host_id] = _Entry(0, world, {}, None)
            return world, entry is not None
        if stored.data is None and entry is not None:
            return entry.world, False
        assert stored.data is not None
        world = load_world(stored.data, f"sim world {lab}/{host_id}")
        entries[host_id] = _entry(stored.version, world, stored.data)
        return world, True

    async def refresh(self, lab: str, hosts: Collection[str] | None, exclude: str) -> list[str]:
        """Read other hosts' worlds fresh (`hosts`, or ALL_PEERS: every stored world of the
        lab); returns the ids read, for `commit`."""
        entries = self._entries.setdefault(lab, {})
        if hosts is ALL_PEERS:
            known = {h: e.version for h, e in entries.items() if e.version}
            stored = await self.store.load_lab(lab, known)
        else:
            stored = {}
            for host in hosts:
                if host != exclude:
                    entry = entries.get(host)
                    known_version = 0 if entry is None else entry.version
                    got = await self.store.load_world(lab, host, known_version=known_version)
                    if got is not None:
                        stored[host] = got
        for host, got in stored.items():
            if host == exclude:
                continue
            if got.data is not None or host not in entries:
                assert got.data is not None
                world = load_world(got.data, f"sim world {lab}/{host}")
                entries[host] = _entry(got.version, world, got.data)
        asked = entries if hosts is ALL_PEERS else hosts
        for host in [h for h in asked if h in entries and entries[h].version and h not in stored]:
            del entries[host]  # cleared from the store (a reset) since it was read
        return [h for h in stored if h != exclude]

    def peers(self, lab: str, host_id: str) -> Mapping[str, HostWorld]:
        return PeerWorlds(self._entries.setdefault(lab, {}), host_id)

    async def commit(self, lab: str, hosts: Collection[str]) -> bool:
        """Write back the worlds of `hosts` that changed, all or none; False on a conflict
        (their cached copies are dropped: the next `fetch` reads them again)."""
        entries = self._entries.get(lab, {})
        writes: list[WorldWrite] = []
        blobs: dict[str, bytes | None] = {}
        for host in hosts:
            entry = entries.get(host)
            if entry is None:
                continue
            blob = world_blob(entry.world)
            if blob is not None and blob == entry.blob:
                continue
            data = WorldData(blob) if blob is not None else dump_world(entry.world)
            if blob is not None or entry.version == 0 or data != entry.data:
                writes.append(WorldWrite(host, data, entry.version))
                blobs[host] = blob
        if not writes:
            return True
        try:
            versions = await self.store.save_worlds(lab, writes)
        except StaleStateError:
            for write in writes:
                entries.pop(write.host_id, None)
            return False
        for write, version in zip(writes, versions, strict=True):
            entry = entries[write.host_id]
            entry.version, entry.data, entry.blob = version, write.data, blobs[write.host_id]
        return True
