"""StoreHostResolver: a mission's connections in one store call, then from memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from reaper.agents.hosts import StoreHostResolver
from reaper.infra.memory import MemoryMissionStore
from reaper.lazy_docs import LazyDocs
from reaper.models import HostConnection, HostState, MissionState


class _Counting:
    def __init__(self, inner: MemoryMissionStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def get_connections(self, mission_id: str) -> dict[str, HostConnection]:
        self.calls.append(mission_id)
        return await self.inner.get_connections(mission_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _mission(mid: str, *hosts: str) -> MissionState:
    return MissionState(
        mission_id=mid,
        lab_type="t",
        hosts={
            h: HostState(host_id=h, os="linux", connection=HostConnection(address=f"{h}.lab"))
            for h in hosts
        },
    )


async def test_one_store_call_per_mission_then_memory():
    inner = MemoryMissionStore()
    await inner.create(_mission("m1", "a", "b", "c"), [])
    store = _Counting(inner)
    resolver = StoreHostResolver(store)  # type: ignore[arg-type]
    for h in ("a", "b", "c", "a", "b"):
        conn = await resolver.resolve("m1", h)
        assert conn is not None and conn.address == f"{h}.lab"
    assert store.calls == ["m1"]


async def test_an_unknown_host_reloads_once_and_is_then_none():
    inner = MemoryMissionStore()
    await inner.create(_mission("m1", "a"), [])
    store = _Counting(inner)
    resolver = StoreHostResolver(store)  # type: ignore[arg-type]
    assert await resolver.resolve("m1", "a") is not None
    assert await resolver.resolve("m1", "ghost") is None
    assert store.calls == ["m1", "m1"]
    assert await resolver.resolve("ghost-mission", "a") is None


async def test_least_recently_used_missions_leave_first():
    inner = MemoryMissionStore()
    for mid in ("m1", "m2", "m3"):
        await inner.create(_mission(mid, "a"), [])
    store = _Counting(inner)
    resolver = StoreHostResolver(store, max_missions=2)  # type: ignore[arg-type]
    for mid in ("m1", "m2", "m1", "m3", "m1", "m2"):
        await resolver.resolve(mid, "a")
    # m2 was the least recently used when m3 came, so it is loaded again; m1 never left.
    assert store.calls == ["m1", "m2", "m3", "m2"]
    resolver.invalidate("m1")
    await resolver.resolve("m1", "a")
    assert store.calls[-1] == "m1"


async def test_the_host_bound_evicts_whole_missions_but_never_the_one_in_use():
    inner = MemoryMissionStore()
    await inner.create(_mission("small", "a"), [])
    await inner.create(_mission("big", "a", "b", "c"), [])
    store = _Counting(inner)
    resolver = StoreHostResolver(store, max_hosts=3)  # type: ignore[arg-type]
    await resolver.resolve("small", "a")
    await resolver.resolve("big", "b")  # 1 + 3 > 3: "small" leaves
    await resolver.resolve("big", "c")
    await resolver.resolve("small", "a")  # loaded again; "big" leaves for it
    assert store.calls == ["small", "big", "small"]
    await resolver.resolve("small", "a")
    assert store.calls == ["small", "big", "small"]


async def test_sim_hosts_memory_is_bounded_by_whole_missions():
    from reaper.agents.transports.sim import SimRunner
    from reaper.models import Task

    runner = SimRunner(max_hosts=3)
    conn = HostConnection(transport="sim")

    async def discover(mid: str, host: str) -> None:
        task = Task(
            task_id=f"{mid}-{host}", mission_id=mid, host_id=host,
            agent_type="reaper-linux", action="linux.discover",
        )  # fmt: skip
        assert (await runner.run(task, host, conn)).status.value == "success"

    for host in ("a", "b"):
        await discover("m1", host)
    await discover("m2", "a")
    assert runner.host_state("m1", "a") is not None  # 3 held: nothing forgotten yet
    await discover("m2", "b")  # 4 > 3: the least recently used mission goes
    assert runner.host_state("m1", "a") is None
    assert runner.host_state("m2", "a") is not None and runner.host_state("m2", "b") is not None


async def test_callers_that_miss_together_share_one_load():
    inner = MemoryMissionStore()
    await inner.create(_mission("m1", "a", "b", "c"), [])
    store = _Counting(inner)
    resolver = StoreHostResolver(store)  # type: ignore[arg-type]
    found = await asyncio.gather(*(resolver.resolve("m1", h) for h in ("a", "b", "c", "a")))
    assert [c.address if c else None for c in found] == ["a.lab", "b.lab", "c.lab", "a.lab"]
    assert store.calls == ["m1"]


async def test_a_cancelled_caller_does_not_cancel_the_shared_load():
    inner = MemoryMissionStore()
    await inner.create(_mission("m1", "a"), [])
    started, release = asyncio.Event(), asyncio.Event()

    class _Slow(_Counting):
        async def get_connections(self, mission_id: str) -> Any:
            started.set()
            await release.wait()
            return await super().get_connections(mission_id)

    store = _Slow(inner)
    resolver = StoreHostResolver(store)  # type: ignore[arg-type]
    first = asyncio.create_task(resolver.resolve("m1", "a"))
    second = asyncio.create_task(resolver.resolve("m1", "a"))
    await asyncio.wait_for(started.wait(), timeout=5)  # both callers now wait on the load
    first.cancel()
    release.set()
    conn = await asyncio.wait_for(second, timeout=5)
    assert conn is not None and conn.address == "a.lab"
    assert first.cancelled() and store.calls == ["m1"]


async def test_connections_are_validated_when_first_read():
    docs = {"a": HostConnection(address="a.lab").model_dump_json(), "bad": '{"port": "x"}'}
    lazy = LazyDocs(HostConnection, docs)
    assert set(lazy) == {"a", "bad"} and "bad" in lazy and len(lazy) == 2
    assert lazy["a"] is lazy["a"] and lazy["a"].address == "a.lab"  # validated once
    with pytest.raises(ValidationError):
        lazy["bad"]
