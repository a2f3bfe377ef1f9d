"""The persisted form of a simulated host's world, as the sim-world store keeps it.

`dump_world(world)` is `HostWorld.to_data()` with `schema_version`; `load_world(data)` reads
it back and refuses a version this code does not know (a store written by a newer Reaper)
with a one-line TransportError naming the fix. Version 1 is the `HostWorld` field layout.
Built field by field with a plain-data copy: several times cheaper than `dataclasses.asdict`,
and it runs once per change when a world is persisted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from reaper.agents.transports.sim_world import HostWorld
from reaper.errors import TransportError

__all__ = ["WORLD_SCHEMA_VERSION", "dump_world", "load_world"]

WORLD_SCHEMA_VERSION = 1
_FIELDS = tuple(f.name for f in fields(HostWorld))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def dump_world(world: HostWorld) -> dict[str, Any]:
    """The world as plain JSON data (nothing aliases the live world)."""
    data: dict[str, Any] = {"schema_version": WORLD_SCHEMA_VERSION}
    for name in _FIELDS:
        data[name] = _copy(getattr(world, name))
    return data


def load_world(data: Mapping[str, Any], where: str = "sim world") -> HostWorld:
    """A live world from its persisted form (a copy: `data` is left as it was)."""
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
    return HostWorld.from_data({k: v for k, v in data.items() if k != "schema_version"})
