"""What an ensure handler works with: the context (the host's world, its peers, facts, check
mode) and the failure it raises (an error code of `reaper.actions.FAILURE_CLASSES` and the
tool's text)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reaper.agents.transports.sim_world import HostWorld

__all__ = ["Ctx", "Failure", "Peers"]


@dataclass(slots=True)
class Failure(Exception):
    code: str
    stderr: str
    stdout: str = ""
    summary: str = ""


@dataclass(slots=True)
class Ctx:
    """One ensure's view: the world it changes (a copy in check mode) and the rest."""

    world: HostWorld
    peers: Peers
    facts: Mapping[str, Any]
    host_id: str
    check: bool
    reboot_required: bool = False
    notes: list[str] = field(default_factory=list)


class Peers(Mapping[str, HostWorld]):
    """The other hosts' worlds, read lazily (a lab may hold thousands). In check mode a peer
    a handler writes to is a copy (`writable`), seen in place of the original from then on."""

    def __init__(self, raw: Mapping[str, HostWorld], *, check: bool) -> None:
        self._raw = raw
        self._check = check
        self._copies: dict[str, HostWorld] = {}

    def __getitem__(self, key: str) -> HostWorld:
        return self._copies.get(key) or self._raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def writable(self, world: HostWorld) -> HostWorld:
        if not self._check or any(w is world for w in self._copies.values()):
            return world
        for key, candidate in self._raw.items():
            if candidate is world:
                copy = self._copies[key] = world.copy()
                return copy
        return world
