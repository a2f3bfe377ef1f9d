"""The backend protocols the engine, workers and overseer are written against.

Delivery is at-least-once everywhere: a queue hands a task out under a lease and hands it out
again if it is not acked in time; the bus keeps an inbound message until the engine acks it.
Effects are applied once because ids are deterministic: the queue ignores a re-publish of a
(task_id, attempt) it has seen, the engine ignores a result it has applied.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from reaper.models import (
    EventRecord,
    HostConnection,
    HostState,
    InboundMessage,
    MissionState,
    MissionStatus,
    Task,
    TaskRecord,
)

__all__ = [
    "Backend",
    "Commit",
    "EventBus",
    "InboundDelivery",
    "LeaseInfo",
    "MissionStore",
    "MissionSummary",
    "OutboxItem",
    "SimWorldStore",
    "StoredWorld",
    "TaskDelivery",
    "TaskQueue",
    "WorldWrite",
    "sim_worlds_of",
]


@dataclass(frozen=True, slots=True)
class TaskDelivery:
    """One hand-out of a task to a worker; `receipt` is the backend's handle for ack."""

    task: Task
    receipt: str
    delivery_count: int = 1


@dataclass(frozen=True, slots=True)
class InboundDelivery:
    message: InboundMessage
    receipt: str
    delivery_count: int = 1


@dataclass(frozen=True, slots=True)
class OutboxItem:
    task: Task
    not_before: datetime | None = None


@dataclass(slots=True)
class Commit:
    """One atomic change to a mission: only what changed, never the whole mission.

    `mission` supplies the header (status, step, goal_reached, ...); hosts and tasks listed
    are upserted as rows; events are appended (the store assigns `seq`); the outbox holds the
    tasks this change queued, published after the commit, each the task of a record in
    `tasks` (a store may keep the entry in the record's row); `sent` names outbox entries
    published since the previous commit, marked sent in this one (no transaction of their
    own: an entry published but not yet marked is published again after a crash, and the
    queue drops the duplicate). Entries are published in the order they were queued, so a
    store may take `sent` to mean every entry queued up to the last of these.
    """

    mission: MissionState
    expected_version: int
    hosts: Sequence[HostState] = ()
    tasks: Sequence[TaskRecord] = ()
    events: Sequence[EventRecord] = ()
    outbox: Sequence[OutboxItem] = ()
    sent: Sequence[tuple[str, int]] = ()


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """Who holds a mission's ownership lease, and for how many more seconds (at most the
    lease period; an engine renews it every third of that)."""

    owner: str
    expires_in_s: float


@dataclass(frozen=True, slots=True)
class MissionSummary:
    mission_id: str
    lab_type: str
    status: MissionStatus
    status_reason: str
    hosts: int
    version: int
    updated_at: datetime


@runtime_checkable
class MissionStore(Protocol):
    async def create(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        """Persist a new mission (MissionExistsError if the id is taken)."""
        ...

    async def load(self, mission_id: str) -> MissionState | None: ...

    async def get_host(self, mission_id: str, host_id: str) -> HostState | None: ...

    async def get_connections(self, mission_id: str) -> Mapping[str, HostConnection]:
        """Every host's connection settings (all a worker needs of a host), in one round
        trip; empty for an unknown mission. A store may validate each lazily (`LazyDocs`)."""
        ...

    async def commit(self, change: Commit) -> int:
        """Apply atomically if the stored version is `expected_version`; return the new
        version. StaleStateError otherwise."""
        ...

    async def events(
        self, mission_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> list[EventRecord]: ...

    async def list_missions(self) -> list[MissionSummary]: ...

    async def unsent(self, mission_id: str) -> list[OutboxItem]:
        """Outbox entries committed but not yet marked sent (re-published on resume)."""
        ...

    async def mark_sent(self, mission_id: str, keys: Sequence[tuple[str, int]]) -> None:
        """As `Commit.sent`, outside a commit."""
        ...

    async def claim(self, mission_id: str, owner: str, ttl_s: float) -> bool:
        """Take or renew the mission's ownership lease; False if another owner holds it."""
        ...

    async def release(self, mission_id: str, owner: str) -> None: ...

    async def lease(self, mission_id: str) -> LeaseInfo | None:
        """The mission's lease if one is held and not expired, else None."""
        ...

    async def delete(self, mission_id: str) -> int:
        """Remove a mission with its hosts, tasks, events, outbox and lease (`reaper
        prune`); return how many rows or entries went (0: no such mission)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class TaskQueue(Protocol):
    async def publish(self, items: Sequence[OutboxItem]) -> None:
        """Enqueue tasks, each visible from its `not_before`. Idempotent per (task_id, attempt)."""
        ...

    async def take(
        self,
        agent_type: str,
        *,
        max_items: int = 1,
        timeout: float | None = None,
        lease_s: float = 30.0,
        worker_id: str = "",
    ) -> list[TaskDelivery]:
        """Wait up to `timeout` seconds (None: forever) for tasks and lease up to `max_items`;
        an empty list on timeout. A lease not acked in `lease_s` makes the task visible again."""
        ...

    async def ack(self, deliveries: Sequence[TaskDelivery]) -> None: ...

    async def release(self, deliveries: Sequence[TaskDelivery]) -> None:
        """Hand tasks back unfinished (graceful shutdown): visible again at once."""
        ...

    async def extend(self, deliveries: Sequence[TaskDelivery], lease_s: float) -> None:
        """Heartbeat: keep long-running tasks leased."""
        ...

    async def depth(self, agent_type: str) -> int:
        """Tasks waiting (not leased) for this agent type."""
        ...

    async def prune(self, finished: Collection[str]) -> int:
        """Housekeeping: forget the acked tasks of these finished missions (their engines
        never publish again, so the de-duplication records are no longer needed) and do the
        backend's own upkeep; return how many rows or entries were removed. Never drops a
        task that is waiting or leased; safe to call again and from several processes."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class EventBus(Protocol):
    async def publish(self, message: InboundMessage) -> None:
        """Deliver a result or an approval decision to the mission's engine."""
        ...

    async def publish_many(self, messages: Sequence[InboundMessage]) -> None:
        """Deliver several messages in one round trip (a worker's batch of results)."""
        ...

    async def receive(
        self, mission_id: str, *, max_items: int = 10_000, timeout: float | None = None
    ) -> list[InboundDelivery]:
        """Wait up to `timeout` for at least one message, then return all waiting (up to
        `max_items`) as one batch; unacked messages are delivered again to the next
        `receive` after a restart (or after `redeliver`)."""
        ...

    async def ack(self, mission_id: str, deliveries: Sequence[InboundDelivery]) -> None: ...

    async def recover(self, mission_id: str) -> None:
        """Make every delivered-but-unacked message of the mission deliverable again. Called
        by an engine that has just taken the mission over (it holds the mission's lease)."""
        ...

    async def retire(self, mission_ids: Collection[str]) -> int:
        """Drop everything held for these finished missions (their streams, inbox rows),
        acked or not: no engine will receive for them again. Returns how many streams or
        rows were removed. A message published for a retired mission afterwards is kept
        as for any mission (a later `retire` drops it); safe to call again."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredWorld:
    """A simulated host's stored world: `version` counts its writes (1 after the first);
    `data` is its persisted form, None when the caller already holds this version. The data
    is the store's: read it, never mutate it."""

    version: int
    data: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class WorldWrite:
    """One world to write: `expected_version` is the version read (0: not stored yet)."""

    host_id: str
    data: Mapping[str, Any]
    expected_version: int


@runtime_checkable
class SimWorldStore(Protocol):
    """The sim worlds (`reaper.agents.transports.sim_world`), kept beside the missions and
    keyed by (lab, host id), not by mission: a resumed mission, every worker process and a
    later mission of the same lab see one world. The lab is the mission's `lab_type`."""

    async def lab_of(self, mission_id: str) -> str | None:
        """The lab a mission runs (None: no such mission)."""
        ...

    async def load_world(
        self, lab: str, host_id: str, *, known_version: int = 0
    ) -> StoredWorld | None:
        """The committed world, without its data if it is still at `known_version`; None
        when nothing is stored."""
        ...

    async def load_lab(
        self, lab: str, known: Mapping[str, int] | None = None
    ) -> dict[str, StoredWorld]:
        """Every stored world of the lab by host id (data None where `known` has its
        version)."""
        ...

    async def save_worlds(self, lab: str, writes: Sequence[WorldWrite]) -> list[int]:
        """Write all or none: each world must still be at its `expected_version`
        (compare-and-set), else StaleStateError; returns the new versions in order."""
        ...

    async def clear_worlds(
        self, lab: str | None = None, host_id: str | None = None
    ) -> list[tuple[str, str]]:
        """Forget every stored world (of one lab, of one host of it); returns the
        (lab, host id) pairs removed, sorted (`reaper sim reset`)."""
        ...


def sim_worlds_of(store: MissionStore) -> SimWorldStore | None:
    """The sim-world store kept with this mission store (`store.worlds`), if it has one."""
    worlds = getattr(store, "worlds", None)
    return worlds if isinstance(worlds, SimWorldStore) else None


@dataclass(slots=True)
class Backend:
    """The three parts, as built from URLs by `reaper.infra.factory`."""

    store: MissionStore
    queue: TaskQueue
    bus: EventBus
    description: str = ""

    async def close(self) -> None:
        # Parts may share one connection (sqlite): close each once.
        seen: set[int] = set()
        for part in (self.bus, self.queue, self.store):
            if id(part) not in seen:
                seen.add(id(part))
                await part.close()
