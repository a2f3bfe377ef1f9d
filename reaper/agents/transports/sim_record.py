"""The persisted form of a simulated host's world, as the sim-world store keeps it.

`dump_world(world)` is `HostWorld.to_data()` with `schema_version`; `load_world(data)` reads
it back and refuses a version this code does not know (a store written by a newer Reaper)
with a one-line TransportError naming the fix. Version 1 is the `HostWorld` field layout.
`world_blob(world)` is the same data marshalled: what a runner compares to see whether a task
changed the world (marshal copies and compares plain data in C, an order of magnitude cheaper
than a Python walk; a world whose data marshal does not know, e.g. a date from a YAML
override, has no blob and is compared as data).
"""

from __future__ import annotations

import marshal
from collections.abc import Iterator, Mapping
from dataclasses import fields
from typing import Any

from reaper.agents.transports.sim_world import HostWorld
from reaper.errors import TransportError

__all__ = ["WORLD_SCHEMA_VERSION", "WorldData", "dump_world", "load_world", "world_blob"]

WORLD_SCHEMA_VERSION = 1
_FIELDS = tuple(f.name for f in fields(HostWorld))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def _shallow(world: HostWorld) -> dict[str, Any]:
    data: dict[str, Any] = {"schema_version": WORLD_SCHEMA_VERSION}
    for name in _FIELDS:
        data[name] = getattr(world, name)
    data["distro"] = list(world.distro)
    return data


def world_blob(world: HostWorld) -> bytes | None:
    """The persisted form, marshalled (None when marshal cannot hold it)."""
    try:
        return marshal.dumps(_shallow(world))
    except ValueError:
        return None


class WorldData(Mapping[str, Any]):
    """The persisted form kept as its blob and decoded on first read: the memory store
    keeps what it is given, and a world written there is read back only by another runner,
    so most writes never pay for the decoding."""

    __slots__ = ("_blob", "_data")

    def __init__(self, blob: bytes) -> None:
        self._blob = blob
        self._data: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._data is None:
            self._data = marshal.loads(self._blob)
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def fresh(self) -> dict[str, Any]:
        """A decoding of its own (the cached one is shared by every reader of the store)."""
        data: dict[str, Any] = marshal.loads(self._blob)
        return data


def dump_world(world: HostWorld, blob: bytes | None = None) -> dict[str, Any]:
    """The world as plain JSON data (nothing aliases the live world); `blob`: its
    `world_blob`, when the caller has it."""
    if blob is None:
        blob = world_blob(world)
    if blob is not None:
        data: dict[str, Any] = marshal.loads(blob)
        return data
    return {k: _copy(v) for k, v in _shallow(world).items()}


def load_world(data: Mapping[str, Any], where: str = "sim world") -> HostWorld:
    """A live world from its persisted form (a copy: `data` is left as it was). A world the
    memory store holds as its blob is unmarshalled afresh: the copy, made in C, instead of
    a Python walk over the shared decoding (a host's next task often runs on another worker,
    which reads the world back)."""
    owned = isinstance(data, WorldData)
    if isinstance(data, WorldData):
        data = data.fresh()
    version = data.get("schema_version")
    if version != WORLD_SCHEMA_VERSION:
        raise TransportError(
            f"{where}: stored with schema_version {version!r}, this Reaper reads "
            f"{WORLD_SCHEMA_VERSION}: upgrade Reaper or clear it with `reaper sim reset`",
            error_code="SIM_WORLD_UNREADABLE",
            retriable=False,
        )
    unknown = set(data) - {"schema_version", *_FIELDS}
    if unknown:
        raise TransportError(
            f"{where}: unknown fields {', '.join(sorted(unknown))} for schema_version "
            f"{WORLD_SCHEMA_VERSION}",
            error_code="SIM_WORLD_UNREADABLE",
            retriable=False,
        )
    return HostWorld.from_data(
        {k: v for k, v in data.items() if k != "schema_version"}, owned=owned
    )
