"""The backend conformance suite: the same tests for memory, SQLite, Redis and PostgreSQL.

Each test asks for the parts it exercises (`store`, `queue`, `bus`); conftest runs it against
every implementation providing them. Ids (missions, agent types) are unique per test, so
shared servers never mix runs.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from reaper.errors import MissionExistsError, StaleStateError
from reaper.infra.base import Commit, EventBus, MissionStore, TaskQueue
from reaper.models import EventKind, MissionControl, MissionStatus, TaskRecord, TaskStatus
from tests.infra import builders as b
from tests.infra.conftest import Kit

# -- mission store ------------------------------------------------------------------------


async def test_create_load_round_trip(store: MissionStore, uid: str) -> None:
    mid = f"m-{uid}"
    state = b.mission(mid, hosts=4)
    await store.create(state, [b.event(mid, EventKind.MISSION_CREATED)])
    loaded = await store.load(mid)
    assert loaded == state
    assert list(loaded.hosts) == list(state.hosts)
    assert loaded.open_task_ids == state.open_task_ids
    # Lossless in value; the order of the task table is not part of the contract (a
    # database may return rows in any order).
    assert json.loads(loaded.model_dump_json()) == json.loads(state.model_dump_json())
    assert await store.load(f"absent-{uid}") is None
    assert await store.get_host(mid, "h00001") == state.hosts["h00001"]
    assert await store.get_host(mid, "nope") is None
    connections = await store.get_connections(mid)
    assert connections == {h: s.connection for h, s in state.hosts.items()}
    assert await store.get_connections(f"absent-{uid}") == {}
    summary = next(s for s in await store.list_missions() if s.mission_id == mid)
    assert (summary.hosts, summary.version, summary.status) == (4, 0, MissionStatus.RUNNING)
    assert summary.updated_at == state.updated_at


async def test_duplicate_create_is_refused(store: MissionStore, uid: str) -> None:
    mid = f"m-{uid}"
    await store.create(b.mission(mid), [])
    with pytest.raises(MissionExistsError):
        await store.create(b.mission(mid, hosts=1), [])
    loaded = await store.load(mid)
    assert loaded is not None and len(loaded.hosts) == 3


async def test_commit_applies_only_what_it_names(store: MissionStore, uid: str) -> None:
    mid = f"m-{uid}"
    await store.create(b.mission(mid), [])
    state = await store.load(mid)
    assert state is not None
    changed = state.hosts["h00000"].model_copy(update={"failure_count": 2, "locked": True})
    # A change to another host in the mission object is not part of the commit.
    state.hosts["h00001"] = state.hosts["h00001"].model_copy(update={"failure_count": 9})
    state.status = MissionStatus.AWAITING_APPROVAL
    state.status_reason = "waiting for an operator"
    state.step = 3
    state.goal_reached = True
    state.settings = {"max_steps": 10}
    new_task = TaskRecord(task=b.task(mid, 7), status=TaskStatus.AWAITING_APPROVAL, step=3)
    done = state.tasks[f"{mid}-s1-1"].model_copy(update={"status": TaskStatus.SUCCEEDED})
    version = await store.commit(
        Commit(mission=state, expected_version=0, hosts=[changed], tasks=[new_task, done])
    )
    assert version == 1
    loaded = await store.load(mid)
    assert loaded is not None
    assert loaded.version == 1
    assert loaded.hosts["h00000"] == changed
    assert loaded.hosts["h00001"].failure_count == 0
    assert (loaded.status, loaded.status_reason, loaded.step, loaded.goal_reached) == (
        MissionStatus.AWAITING_APPROVAL,
        "waiting for an operator",
        3,
        True,
    )
    assert loaded.settings == {"max_steps": 10}
    assert loaded.tasks[new_task.task.task_id] == new_task
    assert loaded.awaiting_approval == [new_task.task.task_id]
    assert f"{mid}-s1-1" not in loaded.open_task_ids
    assert await store.commit(Commit(mission=loaded, expected_version=1)) == 2


async def test_stale_version_is_refused(store: MissionStore, uid: str) -> None:
    mid = f"m-{uid}"
    await store.create(b.mission(mid), [b.event(mid)])
    state = await store.load(mid)
    assert state is not None
    await store.commit(Commit(mission=state, expected_version=0))
    state.step = 99
    with pytest.raises(StaleStateError):
        await store.commit(
            Commit(
                mission=state,
                expected_version=0,
                events=[b.event(mid)],
                tasks=[TaskRecord(task=b.task(mid, 50))],
            )
        )
    loaded = await store.load(mid)
    assert loaded is not None
    assert (loaded.version, loaded.step) == (1, 0)
    assert f"{mid}-s1-50" not in loaded.tasks
    assert len(await store.events(mid)) == 1
    with pytest.raises(StaleStateError):
        await store.commit(Commit(mission=b.mission(f"absent-{uid}"), expected_version=0))


async def test_events_get_increasing_seq_and_filter(store: MissionStore, uid: str) -> None:
    mid = f"m-{uid}"
    await store.create(
        b.mission(mid), [b.event(mid, EventKind.MISSION_CREATED, n) for n in range(2)]
    )
    state = await store.load(mid)
    assert state is not None
    more = [b.event(mid, EventKind.TASK_RESULT, n) for n in range(2, 5)]
    await store.commit(Commit(mission=state, expected_version=0, events=more))
    events = await store.events(mid)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.payload["n"] for e in events] == [0, 1, 2, 3, 4]
    assert events[2] == more[0].model_copy(update={"seq": 3})
    assert [e.seq for e in await store.events(mid, after_seq=2)] == [3, 4, 5]
    assert [e.seq for e in await store.events(mid, limit=2)] == [1, 2]
    assert [e.seq for e in await store.events(mid, after_seq=2, limit=1)] == [3]
    assert await store.events(mid, after_seq=5) == []
    assert await store.events(f"absent-{uid}") == []


async def test_outbox_unsent_until_marked_sent(kit: Kit, store: MissionStore, uid: str) -> None:
    mid, other = f"m-{uid}", f"o-{uid}"
    for m in (mid, other):
        await store.create(b.mission(m), [])
    later = kit.clock.now() + timedelta(seconds=30)
    items = [b.item(mid, 1), b.item(mid, 2, not_before=later), b.item(mid, 3)]
    state = await store.load(mid)
    assert state is not None
    await store.commit(Commit(mission=state, expected_version=0, **b.queued(items)))
    ostate = await store.load(other)
    assert ostate is not None
    await store.commit(Commit(mission=ostate, expected_version=0, **b.queued([b.item(other, 1)])))
    unsent = await store.unsent(mid)
    assert sorted(unsent, key=lambda i: i.task.task_id) == items
    await store.mark_sent(mid, [items[0].task.key, items[1].task.key])
    assert await store.unsent(mid) == [items[2]]
    assert [i.task.task_id for i in await store.unsent(other)] == [f"{other}-s1-1"]


async def test_a_commit_marks_what_was_sent_since_the_last(store: MissionStore, uid: str) -> None:
    mid = f"m-{uid}"
    await store.create(b.mission(mid), [])
    state = await store.load(mid)
    assert state is not None
    first = [b.item(mid, 1), b.item(mid, 2)]
    await store.commit(Commit(mission=state, expected_version=0, **b.queued(first)))
    # The next commit plans one more task and marks the first two sent, atomically.
    later = [b.item(mid, 3)]
    sent = [first[0].task.key, first[1].task.key]
    await store.commit(Commit(mission=state, expected_version=1, sent=sent, **b.queued(later)))
    assert await store.unsent(mid) == later
    with pytest.raises(StaleStateError):  # a refused commit marks nothing
        await store.commit(Commit(mission=state, expected_version=1, sent=[later[0].task.key]))
    assert await store.unsent(mid) == later


async def test_claim_is_exclusive_until_expiry(kit: Kit, store: MissionStore, uid: str) -> None:
    mid = f"m-{uid}"
    await store.create(b.mission(mid), [])
    ttl = kit.lease()
    assert await store.claim(mid, "engine-a", ttl)
    assert not await store.claim(mid, "engine-b", ttl)
    assert await store.claim(mid, "engine-a", ttl)  # renewal
    await store.release(mid, "engine-b")  # not the holder: no effect
    assert not await store.claim(mid, "engine-b", ttl)
    await kit.advance(ttl * 1.5)
    assert await store.claim(mid, "engine-b", ttl)
    assert not await store.claim(mid, "engine-a", ttl)
    await store.release(mid, "engine-b")
    assert await store.claim(mid, "engine-a", ttl)


async def test_lease_names_the_holder_until_expiry(kit: Kit, store: MissionStore, uid: str) -> None:
    mid = f"m-{uid}"
    await store.create(b.mission(mid), [])
    ttl = kit.lease()
    assert await store.lease(mid) is None
    assert await store.claim(mid, "engine-a", ttl)
    held = await store.lease(mid)
    assert held is not None and held.owner == "engine-a"
    assert 0 < held.expires_in_s <= ttl + 0.5
    await kit.advance(ttl * 1.5)
    assert await store.lease(mid) is None  # expired: nobody holds it
    assert await store.claim(mid, "engine-b", ttl)
    await store.release(mid, "engine-b")
    assert await store.lease(mid) is None


async def test_delete_removes_the_mission_and_only_it(store: MissionStore, uid: str) -> None:
    mid, other = f"m-{uid}", f"o-{uid}"
    for m in (mid, other):
        await store.create(b.mission(m, hosts=2), [b.event(m, EventKind.MISSION_CREATED)])
    state = await store.load(mid)
    assert state is not None
    rec = TaskRecord(task=b.task(mid, 1))
    await store.commit(
        Commit(
            mission=state,
            expected_version=0,
            tasks=[rec],
            events=[b.event(mid, EventKind.TASK_PLANNED)],
            outbox=[b.item(mid, 1)],
        )
    )
    assert await store.claim(mid, "engine-a", 30)
    removed = await store.delete(mid)
    assert removed >= 1 + 2 + 2  # the header, its hosts and events at least
    assert await store.load(mid) is None
    assert await store.events(mid) == []
    assert await store.unsent(mid) == []
    assert await store.lease(mid) is None
    assert mid not in {m.mission_id for m in await store.list_missions()}
    assert await store.delete(mid) == 0
    kept = await store.load(other)
    assert kept is not None and len(kept.hosts) == 2
    assert len(await store.events(other)) == 1


# -- task queue ---------------------------------------------------------------------------


async def test_publish_take_ack(queue: TaskQueue, uid: str) -> None:
    agent, mid = f"reaper-t{uid}", f"m-{uid}"
    it = b.item(mid, 1, agent)
    await queue.publish([it])
    got = await queue.take(agent, timeout=1, worker_id="w1")
    assert [d.task for d in got] == [it.task]
    assert got[0].delivery_count == 1
    assert await queue.take(agent, timeout=0.05) == []
    await queue.ack(got)
    assert await queue.depth(agent) == 0
    assert await queue.take(agent, timeout=0.05) == []


async def test_fifo_per_agent_type(queue: TaskQueue, uid: str) -> None:
    agent, other, mid = f"reaper-t{uid}", f"reaper-u{uid}", f"m-{uid}"
    await queue.publish([b.item(mid, i, agent) for i in range(5)])
    await queue.publish([b.item(mid, 100, other)])
    await queue.publish([b.item(mid, 5, agent)])
    await queue.publish([b.item(mid, 6, agent)])
    order = [d.task.params["i"] for d in await queue.take(agent, timeout=1)]
    order += [d.task.params["i"] for d in await queue.take(agent, max_items=3, timeout=1)]
    order += [d.task.params["i"] for d in await queue.take(agent, max_items=10, timeout=1)]
    assert order == [0, 1, 2, 3, 4, 5, 6]
    assert [d.task.params["i"] for d in await queue.take(other, timeout=1)] == [100]


async def test_publish_is_idempotent_per_task_and_attempt(queue: TaskQueue, uid: str) -> None:
    agent, mid = f"reaper-t{uid}", f"m-{uid}"
    it = b.item(mid, 1, agent)
    await queue.publish([it, it])
    await queue.publish([it])
    assert await queue.depth(agent) == 1
    got = await queue.take(agent, max_items=10, timeout=1)
    assert len(got) == 1
    await queue.publish([it])  # while leased
    await queue.ack(got)
    await queue.publish([it])  # after ack
    assert await queue.take(agent, max_items=10, timeout=0.05) == []
    retry = b.item(mid, 1, agent, attempt=2)  # attempt + 1 is a new message
    await queue.publish([retry])
    again = await queue.take(agent, max_items=10, timeout=1)
    assert [d.task.key for d in again] == [retry.task.key]
    assert again[0].delivery_count == 1


async def test_take_times_out_empty(queue: TaskQueue, uid: str) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    got = await asyncio.wait_for(queue.take(f"reaper-t{uid}", timeout=0.1), timeout=5)
    assert got == []
    assert loop.time() - start >= 0.09


async def test_take_wakes_when_a_task_is_published(queue: TaskQueue, uid: str) -> None:
    agent, mid = f"reaper-t{uid}", f"m-{uid}"
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(queue.take(agent, timeout=30))
    for _ in range(5):  # let the taker reach its wait (yielding, not sleeping)
        await asyncio.sleep(0)
    start = loop.time()
    await queue.publish([b.item(mid, 1, agent)])
    got = await asyncio.wait_for(waiter, timeout=2)
    assert [d.task.task_id for d in got] == [f"{mid}-s1-1"]
    assert loop.time() - start < 1.0


async def test_not_before_delays_visibility(kit: Kit, queue: TaskQueue, uid: str) -> None:
    agent, mid = f"reaper-t{uid}", f"m-{uid}"
    # Real clocks: long enough that the publish and first take fit inside it on a loaded
    # machine (0.3 s did not, now and then, and the delayed task showed up early).
    delay = kit.lease(30.0, 1.5)
    later = kit.clock.now() + timedelta(seconds=delay)
    await queue.publish([b.item(mid, 1, agent, not_before=later), b.item(mid, 2, agent)])
    first = await queue.take(agent, max_items=10, timeout=0.05, lease_s=300)
    assert [d.task.params["i"] for d in first] == [2]
    assert await queue.take(agent, timeout=0.05) == []
    await kit.advance(delay)
    got = await queue.take(agent, timeout=5)
    assert [d.task.params["i"] for d in got] == [1]


async def test_expired_lease_is_delivered_again(kit: Kit, queue: TaskQueue, uid: str) -> None:
    agent, mid = f"reaper-t{uid}", f"m-{uid}"
    lease = kit.lease()
    await queue.publish([b.item(mid, 1, agent)])
    first = await queue.take(agent, timeout=1, lease_s=lease, worker_id="w1")
    assert first[0].delivery_count == 1
    assert await queue.take(agent, timeout=0.05) == []
    await kit.advance(lease * 1.2)
    again = await queue.take(agent, timeout=5, worker_id="w2")
    assert [d.task for d in again] == [first[0].task]
    assert again[0].delivery_count == 2
    await queue.ack(again)
    assert await queue.take(agent, timeout=0.05) == []


async def test_release_hands_back_at_once(queue: TaskQueue, uid: str) -> None:
    agent, mid = f"reaper-t{uid}", f"m-{uid}"
    await queue.publish([b.item(mid, 1, agent)])
    got = await queue.take(agent, timeout=1, lease_s=300)
    await queue.release(got)
    again = await queue.take(agent, timeout=1)
    assert [d.task for d in again] == [got[0].task]
    assert again[0].delivery_count == 2


async def test_extend_keeps_the_lease(kit: Kit, queue: TaskQueue, uid: str) -> None:
    agent, mid = f"reaper-t{uid}", f"m-{uid}"
    lease = kit.lease(10.0, 0.4)
    await queue.publish([b.item(mid, 1, agent)])
    got = await queue.take(agent, timeout=1, lease_s=lease)
    await kit.advance(lease * 0.6)
    await queue.extend(got, lease * 5)
    await kit.advance(lease * 0.6)
    assert await queue.take(agent, timeout=0.05) == []
    await queue.ack(got)


async def test_depth_counts_waiting_tasks(queue: TaskQueue, uid: str) -> None:
    agent, mid = f"reaper-t{uid}", f"m-{uid}"
    await queue.publish([b.item(mid, i, agent) for i in range(3)])
    assert await queue.depth(agent) == 3
    got = await queue.take(agent, timeout=1)
    assert await queue.depth(agent) == 2
    assert await queue.depth(f"reaper-u{uid}") == 0
    await queue.ack(got)
    assert await queue.depth(agent) == 2


# -- event bus ----------------------------------------------------------------------------


async def test_receive_returns_all_waiting_as_one_batch(bus: EventBus, uid: str) -> None:
    mid = f"m-{uid}"
    messages = [b.result(b.task(mid, i)) for i in range(3)]
    messages.append(b.approval(mid, f"{mid}-s1-9", approved=False))
    for message in messages:
        await bus.publish(message)
    got = await bus.receive(mid, timeout=1)
    assert [d.message for d in got] == messages
    assert type(got[3].message).__name__ == "ApprovalDecision"
    await bus.ack(mid, got)
    assert await bus.receive(mid, timeout=0.05) == []


async def test_mission_control_requests_travel_like_approvals(bus: EventBus, uid: str) -> None:
    mid = f"m-{uid}"
    sent = [
        MissionControl(mission_id=mid, command="cancel", by="op", note="wrong lab"),
        MissionControl(mission_id=mid, command="unlock", host_id="h00001"),
        MissionControl(mission_id=mid, command="budget", budget={"calls": 40, "usd": 1.5}),
    ]
    await bus.publish_many(sent)
    got = await bus.receive(mid, timeout=1)
    assert [d.message for d in got] == sent
    await bus.ack(mid, got)


async def test_publish_many_delivers_in_order_across_missions(bus: EventBus, uid: str) -> None:
    a, other = f"m-{uid}", f"n-{uid}"
    messages = [b.result(b.task(a, i)) for i in range(3)] + [b.result(b.task(other, 0))]
    await bus.publish_many(messages)
    got = await bus.receive(a, timeout=1)
    assert [d.message for d in got] == messages[:3]
    theirs = await bus.receive(other, timeout=1)
    assert [d.message for d in theirs] == messages[3:]
    await bus.ack(a, got)
    await bus.ack(other, theirs)


async def test_receive_respects_max_items(bus: EventBus, uid: str) -> None:
    mid = f"m-{uid}"
    for i in range(3):
        await bus.publish(b.result(b.task(mid, i)))
    first = await bus.receive(mid, max_items=2, timeout=1)
    rest = await bus.receive(mid, timeout=1)
    assert [d.message.task_id for d in first + rest] == [f"{mid}-s1-{i}" for i in range(3)]


async def test_receive_times_out_empty(bus: EventBus, uid: str) -> None:
    got = await asyncio.wait_for(bus.receive(f"m-{uid}", timeout=0.1), timeout=5)
    assert got == []


async def test_receive_wakes_when_a_message_is_published(bus: EventBus, uid: str) -> None:
    mid = f"m-{uid}"
    loop = asyncio.get_running_loop()
    waiter = asyncio.create_task(bus.receive(mid, timeout=30))
    for _ in range(5):
        await asyncio.sleep(0)
    start = loop.time()
    await bus.publish(b.approval(mid, "t1"))
    got = await asyncio.wait_for(waiter, timeout=2)
    assert [d.message for d in got] == [
        b.approval(mid, "t1").model_copy(update={"ts": got[0].message.ts})
    ]
    assert loop.time() - start < 1.0


async def test_recover_redelivers_unacked(bus: EventBus, uid: str) -> None:
    mid = f"m-{uid}"
    messages = [b.result(b.task(mid, i)) for i in range(3)]
    for message in messages:
        await bus.publish(message)
    got = await bus.receive(mid, timeout=1)
    await bus.ack(mid, [got[1]])
    assert await bus.receive(mid, timeout=0.05) == []  # in flight, not redelivered yet
    await bus.recover(mid)
    again = await bus.receive(mid, timeout=1)
    assert [d.message for d in again] == [messages[0], messages[2]]
    await bus.ack(mid, again)
    await bus.recover(mid)
    assert await bus.receive(mid, timeout=0.05) == []


async def test_missions_are_not_mixed(bus: EventBus, uid: str) -> None:
    a, other = f"a-{uid}", f"b-{uid}"
    await bus.publish(b.result(b.task(a, 1)))
    await bus.publish(b.result(b.task(other, 2)))
    await bus.publish(b.approval(a, "t3"))
    got_a = await bus.receive(a, timeout=1)
    assert [d.message.mission_id for d in got_a] == [a, a]
    got_b = await bus.receive(other, timeout=1)
    assert [d.message.task_id for d in got_b] == [f"{other}-s1-2"]
    await bus.recover(other)  # recovering one mission leaves the other's in flight
    assert await bus.receive(a, timeout=0.05) == []
