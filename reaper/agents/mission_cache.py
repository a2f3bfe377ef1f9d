"""Per-mission maps kept by a long-running worker, bounded by missions and by entries."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Generic, TypeVar

__all__ = ["MissionCache"]

V = TypeVar("V")


class MissionCache(Generic[V]):
    """One map per mission (host id → V). Once more than `max_missions` missions or
    `max_items` entries in all are held, the least recently used missions are dropped whole;
    the mission just used always stays. A map may be read-only (a mission's connections as
    the store gave them) unless entries are `add`ed to it."""

    def __init__(self, *, max_items: int, max_missions: int | None = None) -> None:
        self._max_items = max_items
        self._max_missions = max_missions
        self._missions: dict[str, Mapping[str, V]] = {}
        self._items = 0

    def peek(self, mission_id: str) -> Mapping[str, V] | None:
        """The mission's map, without counting it as a use."""
        return self._missions.get(mission_id)

    def use(self, mission_id: str) -> Mapping[str, V] | None:
        """The mission's map, now the most recently used (None if not held)."""
        items = self._missions.pop(mission_id, None)
        if items is not None:
            self._missions[mission_id] = items  # dicts keep insertion order: most recent last
        return items

    def put(self, mission_id: str, items: Mapping[str, V]) -> None:
        """Hold `items` as the mission's map (replacing any), the most recently used."""
        self._items -= len(self._missions.pop(mission_id, {}))
        self._missions[mission_id] = items
        self._items += len(items)
        self._evict()

    def add(self, mission_id: str, key: str, value: V) -> None:
        """Add one entry to the map of a mission held (the one just used); the map must
        have been `put` as a mutable one."""
        items = self._missions[mission_id]
        if not isinstance(items, MutableMapping):
            raise TypeError(f"mission {mission_id!r}: its map is read-only")
        items[key] = value
        self._items += 1
        self._evict()

    def drop(self, mission_id: str | None = None) -> None:
        """Forget one mission, or all."""
        if mission_id is None:
            self._missions.clear()
            self._items = 0
        else:
            self._items -= len(self._missions.pop(mission_id, {}))

    def _evict(self) -> None:
        def over() -> bool:
            too_many = self._max_missions is not None and len(self._missions) > self._max_missions
            return too_many or self._items > self._max_items

        while len(self._missions) > 1 and over():
            self._items -= len(self._missions.pop(next(iter(self._missions))))
