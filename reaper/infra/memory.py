"""In-process backend: asyncio, notification-driven, no polling. For tests, demos, benchmarks.

State lives in this process only. Waiting is on `asyncio.Condition`s notified by publishers;
leases expire through the clock: a `take` that finds only leased tasks waits until the earliest
lease runs out (or a publish wakes it).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from reaper.clock import Clock, RealClock
from reaper.errors import MissionExistsError, StaleStateError
from reaper.infra.base import (
    Commit,
    InboundDelivery,
    LeaseInfo,
    MissionSummary,
    OutboxItem,
    TaskDelivery,
)
from reaper.infra.memory_worlds import MemorySimWorldStore
from reaper.models import EventRecord, HostConnection, HostState, InboundMessage, MissionState

__all__ = ["MemoryEventBus", "MemoryMissionStore", "MemoryTaskQueue", "memory_backend"]


class MemoryMissionStore:
    """Keeps each mission as a model copy plus its event list and outbox."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or RealClock()
        self._missions: dict[str, MissionState] = {}
        self._events: dict[str, list[EventRecord]] = {}
        self._outbox: dict[str, dict[tuple[str, int], OutboxItem]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self.worlds = MemorySimWorldStore(self._lab_of)

    def _lab_of(self, mission_id: str) -> str | None:
        state = self._missions.get(mission_id)
        return None if state is None else state.lab_type

    async def create(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        if state.mission_id in self._missions:
            raise MissionExistsError(state.mission_id)
        self._missions[state.mission_id] = state.detached()
        self._events[state.mission_id] = []
        self._outbox[state.mission_id] = {}
        self._append(state.mission_id, events)

    async def load(self, mission_id: str) -> MissionState | None:
        state = self._missions.get(mission_id)
        return None if state is None else state.detached()

    async def get_host(self, mission_id: str, host_id: str) -> HostState | None:
        state = self._missions.get(mission_id)
        host = None if state is None else state.hosts.get(host_id)
        return host  # shared: host models are replaced on change, never mutated

    async def get_connections(self, mission_id: str) -> Mapping[str, HostConnection]:
        state = self._missions.get(mission_id)
        return {} if state is None else {h: s.connection for h, s in state.hosts.items()}

    async def commit(self, change: Commit) -> int:
        mid = change.mission.mission_id
        stored = self._missions.get(mid)
        if stored is None or stored.version != change.expected_version:
            found = None if stored is None else stored.version
            raise StaleStateError(
                f"mission {mid}: expected version {change.expected_version}, found {found}"
            )
        # Only what changed is touched, so the cost follows the change, not the mission's
        # size. The commit takes ownership of the given objects (the engine replaces host and
        # task models rather than mutating them), so they are stored without copying.
        header = change.mission
        stored.status = header.status
        stored.status_reason = header.status_reason
        stored.goal_reached = header.goal_reached
        stored.step = header.step
        stored.updated_at = header.updated_at
        stored.settings = dict(header.settings)
        for host in change.hosts:
            stored.hosts[host.host_id] = host
        for rec in change.tasks:
            stored.put_task(rec)
        outbox = self._outbox[mid]
        for key in change.sent:
            outbox.pop(key, None)
        for item in change.outbox:
            outbox[item.task.key] = item
        self._append(mid, change.events)
        stored.version += 1
        return stored.version

    def _append(self, mission_id: str, events: Sequence[EventRecord]) -> None:
        log = self._events[mission_id]
        for event in events:
            event.seq = len(log) + 1  # the store owns the record from here on
            log.append(event)

    async def events(
        self, mission_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        log = self._events.get(mission_id, [])
        selected = log[after_seq:]
        return list(selected if limit is None else selected[:limit])

    async def list_missions(self) -> list[MissionSummary]:
        return [
            MissionSummary(
                mission_id=s.mission_id,
                lab_type=s.lab_type,
                status=s.status,
                status_reason=s.status_reason,
                hosts=len(s.hosts),
                version=s.version,
                updated_at=s.updated_at,
            )
            for s in self._missions.values()
        ]

    async def unsent(self, mission_id: str) -> list[OutboxItem]:
        return list(self._outbox.get(mission_id, {}).values())

    async def mark_sent(self, mission_id: str, keys: Sequence[tuple[str, int]]) -> None:
        outbox = self._outbox.get(mission_id, {})
        for key in keys:
            outbox.pop(key, None)

    async def claim(self, mission_id: str, owner: str, ttl_s: float) -> bool:
        now = self._clock.monotonic()
        holder = self._leases.get(mission_id)
        if holder is not None and holder[0] != owner and holder[1] > now:
            return False
        self._leases[mission_id] = (owner, now + ttl_s)
        return True

    async def release(self, mission_id: str, owner: str) -> None:
        holder = self._leases.get(mission_id)
        if holder is not None and holder[0] == owner:
            del self._leases[mission_id]

    async def lease(self, mission_id: str) -> LeaseInfo | None:
        holder = self._leases.get(mission_id)
        left = None if holder is None else holder[1] - self._clock.monotonic()
        return None if holder is None or left is None or left <= 0 else LeaseInfo(holder[0], left)

    async def delete(self, mission_id: str) -> int:
        state = self._missions.pop(mission_id, None)
        if state is None:
            return 0
        removed = 1 + len(state.hosts) + len(state.tasks)
        removed += len(self._events.pop(mission_id, []))
        removed += len(self._outbox.pop(mission_id, {}))
        removed += int(self._leases.pop(mission_id, None) is not None)
        return removed

    async def close(self) -> None:
        return None


@dataclass(slots=True)
class _Lease:
    item: OutboxItem
    expires: float
    count: int


class MemoryTaskQueue:
    """Per-agent-type FIFO with delayed visibility and leases."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or RealClock()
        self._ready: dict[str, deque[OutboxItem]] = {}
        self._delayed: list[tuple[float, int, OutboxItem]] = []
        self._leased: dict[str, _Lease] = {}
        self._counts: dict[tuple[str, int], int] = {}
        # (task_id, attempt) -> mission: a re-publish is ignored until the mission is pruned.
        self._seen: dict[tuple[str, int], str] = {}
        self._seq = itertools.count()
        # An Event rather than a Condition: waking a waiter must not make the publisher
        # yield (a Condition's lock hands over on every notify and defeats batching).
        self._wakeup = asyncio.Event()

    async def publish(self, items: Sequence[OutboxItem]) -> None:
        now = self._clock.now()
        added = False
        seen = self._seen
        for item in items:
            key = item.task.key
            if key in seen:
                continue
            seen[key] = item.task.mission_id
            if item.not_before is not None and item.not_before > now:
                due = self._clock.monotonic() + (item.not_before - now).total_seconds()
                heapq.heappush(self._delayed, (due, next(self._seq), item))
            else:
                self._ready.setdefault(item.task.agent_type, deque()).append(item)
            added = True
        if added:
            self._wakeup.set()

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, item = heapq.heappop(self._delayed)
            self._ready.setdefault(item.task.agent_type, deque()).append(item)
        for receipt in [r for r, lease in self._leased.items() if lease.expires <= now]:
            lease = self._leased.pop(receipt)
            self._ready.setdefault(lease.item.task.agent_type, deque()).appendleft(lease.item)

    def _next_deadline(self) -> float | None:
        deadlines = [lease.expires for lease in self._leased.values()]
        if self._delayed:
            deadlines.append(self._delayed[0][0])
        return min(deadlines) if deadlines else None

    async def take(
        self,
        agent_type: str,
        *,
        max_items: int = 1,
        timeout: float | None = None,
        lease_s: float = 30.0,
        worker_id: str = "",
    ) -> list[TaskDelivery]:
        # The timeout is real waiting, so it runs on the loop's time; leases and delays run
        # on the clock (a ManualClock does not move while we wait; the loop's time does).
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            now = self._clock.monotonic()
            if self._leased or self._delayed:
                self._promote(now)
            ready = self._ready.get(agent_type)
            if ready:
                return self._lease(ready, max_items, now + lease_s)
            wait = None if end is None else end - loop.time()
            if wait is not None and wait <= 0:
                return []
            deadline = self._next_deadline()
            if deadline is not None:
                until = deadline - now
                wait = until if wait is None else min(wait, until)
            self._wakeup.clear()
            try:
                async with asyncio.timeout(wait):  # not wait_for: see MemoryEventBus.receive
                    await self._wakeup.wait()
            except TimeoutError:
                continue

    def _lease(
        self, ready: deque[OutboxItem], max_items: int, expires: float
    ) -> list[TaskDelivery]:
        out: list[TaskDelivery] = []
        while ready and len(out) < max_items:
            item = ready.popleft()
            key = item.task.key
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
            receipt = f"{key[0]}#{key[1]}#{count}"
            self._leased[receipt] = _Lease(item, expires, count)
            out.append(TaskDelivery(task=item.task, receipt=receipt, delivery_count=count))
        return out

    async def ack(self, deliveries: Sequence[TaskDelivery]) -> None:
        for d in deliveries:
            if self._leased.pop(d.receipt, None) is not None:
                self._counts.pop(d.task.key, None)

    async def release(self, deliveries: Sequence[TaskDelivery]) -> None:
        returned = False
        for d in deliveries:
            lease = self._leased.pop(d.receipt, None)
            if lease is not None:
                self._ready.setdefault(d.task.agent_type, deque()).appendleft(lease.item)
                returned = True
        if returned:
            self._wakeup.set()

    async def extend(self, deliveries: Sequence[TaskDelivery], lease_s: float) -> None:
        expires = self._clock.monotonic() + lease_s
        for d in deliveries:
            lease = self._leased.get(d.receipt)
            if lease is not None:
                lease.expires = expires

    async def depth(self, agent_type: str) -> int:
        if self._leased or self._delayed:
            self._promote(self._clock.monotonic())
        return len(self._ready.get(agent_type, ()))

    async def prune(self, finished: Collection[str]) -> int:
        """Forget the de-duplication keys of the finished missions' acked tasks; keys of
        tasks still waiting, delayed or leased stay, so those are never published twice."""
        missions = set(finished)
        open_keys = {item.task.key for ready in self._ready.values() for item in ready}
        open_keys.update(item.task.key for _, _, item in self._delayed)
        open_keys.update(lease.item.task.key for lease in self._leased.values())
        done = [
            key
            for key, mission_id in self._seen.items()
            if mission_id in missions and key not in open_keys
        ]
        for key in done:
            del self._seen[key]
        return len(done)

    async def close(self) -> None:
        return None


class MemoryEventBus:
    """Per-mission inbox; delivered messages stay in flight until acked."""

    def __init__(self) -> None:
        self._inbox: dict[str, deque[tuple[int, InboundMessage]]] = {}
        self._inflight: dict[str, dict[int, InboundMessage]] = {}
        self._ids = itertools.count(1)
        self._wakeups: dict[str, asyncio.Event] = {}

    def _wakeup(self, mission_id: str) -> asyncio.Event:
        event = self._wakeups.get(mission_id)
        if event is None:
            event = self._wakeups[mission_id] = asyncio.Event()
        return event

    async def publish(self, message: InboundMessage) -> None:
        self._inbox.setdefault(message.mission_id, deque()).append((next(self._ids), message))
        self._wakeup(message.mission_id).set()

    async def publish_many(self, messages: Sequence[InboundMessage]) -> None:
        for message in messages:
            await self.publish(message)

    async def receive(
        self, mission_id: str, *, max_items: int = 10_000, timeout: float | None = None
    ) -> list[InboundDelivery]:
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        # A loop, not one wait: `retire` wakes waiters on the structures it drops, and they
        # go back to waiting on the mission's new ones.
        while not (inbox := self._inbox.setdefault(mission_id, deque())):
            wait = None if end is None else end - loop.time()
            if wait is not None and wait <= 0:
                return []
            wakeup = self._wakeup(mission_id)
            wakeup.clear()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result and
                # drops a cancellation that arrives as the event is set, so a cancelled engine
                # went on running (seen in tests/core/test_resume.py).
                async with asyncio.timeout(wait):
                    await wakeup.wait()
            except TimeoutError:
                return []
        inflight = self._inflight.setdefault(mission_id, {})
        out: list[InboundDelivery] = []
        while inbox and len(out) < max_items:
            msg_id, message = inbox.popleft()
            inflight[msg_id] = message
            out.append(InboundDelivery(message=message, receipt=str(msg_id)))
        return out

    async def ack(self, mission_id: str, deliveries: Sequence[InboundDelivery]) -> None:
        inflight = self._inflight.get(mission_id, {})
        for d in deliveries:
            inflight.pop(int(d.receipt), None)

    async def recover(self, mission_id: str) -> None:
        inflight = self._inflight.pop(mission_id, {})
        if inflight:
            inbox = self._inbox.setdefault(mission_id, deque())
            inbox.extendleft(reversed(sorted(inflight.items())))
            self._wakeup(mission_id).set()

    async def retire(self, mission_ids: Collection[str]) -> int:
        """Drop the missions' inboxes, in-flight messages and wake-up events."""
        dropped = 0
        for mission_id in mission_ids:
            inbox = self._inbox.pop(mission_id, None)
            inflight = self._inflight.pop(mission_id, None)
            dropped += len(inbox or ()) + len(inflight or ())
            wakeup = self._wakeups.pop(mission_id, None)
            if wakeup is not None:
                wakeup.set()  # a waiter re-checks and waits on the mission's new event
        return dropped

    async def close(self) -> None:
        return None


def memory_backend(
    clock: Clock | None = None,
) -> tuple[MemoryMissionStore, MemoryTaskQueue, MemoryEventBus]:
    clock = clock or RealClock()
    return MemoryMissionStore(clock), MemoryTaskQueue(clock), MemoryEventBus()
