"""The sim-world store's contract, on every mission-store backend (memory, sqlite,
postgres): versions, compare-and-set, all-or-none writes, reads that skip what the caller
holds, clearing by scope, and concurrent writers that lose no update."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from reaper.errors import StaleStateError
from reaper.infra.base import MissionStore, SimWorldStore, WorldWrite, sim_worlds_of
from tests.missions import make_lab, sim_host


def _worlds(store: MissionStore) -> SimWorldStore:
    worlds = sim_worlds_of(store)
    assert worlds is not None, "every mission store keeps sim worlds"
    return worlds


def _data(n: int, **more: Any) -> dict[str, Any]:
    return {"schema_version": 1, "n": n, "users": {"a": {"uid": 1}}, **more}


async def test_a_write_is_read_back_with_its_version_and_skipped_when_already_held(store):
    worlds = _worlds(store)
    assert await worlds.load_world("lab", "h1") is None
    assert await worlds.save_worlds("lab", [WorldWrite("h1", _data(1), 0)]) == [1]
    got = await worlds.load_world("lab", "h1")
    assert got is not None and got.version == 1 and dict(got.data or {}) == _data(1)
    held = await worlds.load_world("lab", "h1", known_version=1)
    assert held is not None and held.version == 1 and held.data is None
    assert await worlds.load_world("other-lab", "h1") is None  # keyed by lab and host


async def test_a_stale_write_is_refused_and_a_batch_is_all_or_none(store):
    worlds = _worlds(store)
    await worlds.save_worlds("lab", [WorldWrite("h1", _data(1), 0)])
    with pytest.raises(StaleStateError):
        await worlds.save_worlds("lab", [WorldWrite("h1", _data(2), 0)])  # exists already
    with pytest.raises(StaleStateError):
        await worlds.save_worlds(
            "lab", [WorldWrite("h2", _data(9), 0), WorldWrite("h1", _data(9), 5)]
        )
    assert await worlds.load_world("lab", "h2") is None  # the batch rolled back whole
    got = await worlds.load_world("lab", "h1")
    assert got is not None and got.version == 1 and dict(got.data or {})["n"] == 1
    assert await worlds.save_worlds("lab", [WorldWrite("h1", _data(3), 1)]) == [2]


async def test_a_lab_is_read_whole_without_the_worlds_the_caller_holds(store):
    worlds = _worlds(store)
    await worlds.save_worlds("lab", [WorldWrite("h1", _data(1), 0), WorldWrite("h2", _data(2), 0)])
    await worlds.save_worlds("lab", [WorldWrite("h2", _data(3), 1)])
    got = await worlds.load_lab("lab", {"h1": 1, "h2": 1})
    assert {h: (w.version, w.data is None) for h, w in got.items()} == {
        "h1": (1, True),
        "h2": (2, False),
    }
    assert await worlds.load_lab("nothing-here") == {}


async def test_clearing_takes_one_host_one_lab_or_everything(store):
    worlds = _worlds(store)
    for lab in ("a", "b"):
        await worlds.save_worlds(lab, [WorldWrite(h, _data(0), 0) for h in ("h1", "h2")])
    assert await worlds.clear_worlds("a", "h2") == [("a", "h2")]
    assert await worlds.clear_worlds("a", "h2") == []
    assert await worlds.clear_worlds("b") == [("b", "h1"), ("b", "h2")]
    assert await worlds.clear_worlds() == [("a", "h1")]
    assert await worlds.load_lab("a") == {}


async def test_a_mission_names_its_lab(store):
    worlds = _worlds(store)
    lab = make_lab(sim_host("h1", "linux"), mission_id="m-lab", lab_type="web-range")
    await store.create(lab.to_state(), [])
    assert await worlds.lab_of("m-lab") == "web-range"
    assert await worlds.lab_of("no-such-mission") is None


async def test_concurrent_writers_lose_no_update(store):
    """Each writer reads, adds its own key and writes back compare-and-set, retrying on a
    conflict: every key is there at the end."""
    worlds = _worlds(store)
    await worlds.save_worlds("lab", [WorldWrite("h1", {"schema_version": 1, "keys": []}, 0)])
    conflicts = 0

    async def writer(name: str, n: int) -> None:
        nonlocal conflicts
        for i in range(n):
            while True:
                got = await worlds.load_world("lab", "h1")
                assert got is not None and got.data is not None
                data = {"schema_version": 1, "keys": [*got.data["keys"], f"{name}{i}"]}
                await asyncio.sleep(0)  # let the others read the same version
                try:
                    await worlds.save_worlds("lab", [WorldWrite("h1", data, got.version)])
                    break
                except StaleStateError:
                    conflicts += 1

    await asyncio.wait_for(asyncio.gather(*(writer(w, 10) for w in "abcd")), 60)
    got = await worlds.load_world("lab", "h1")
    assert got is not None and got.data is not None
    assert sorted(got.data["keys"]) == sorted(f"{w}{i}" for w in "abcd" for i in range(10))
    assert got.version == 41 and conflicts > 0
