"""What a fold produces (`Transition`), the state as seen through it (`StateView`), and the
log entries it makes (`make_event`): the types `reaper.engine.state` and
`reaper.engine.control` share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reaper.models import (
    SCHEMA_VERSION,
    EventKind,
    EventRecord,
    HostState,
    MissionControl,
    MissionState,
    ResultEvent,
    Task,
    TaskRecord,
    trusted,
)

__all__ = ["StateView", "Transition", "make_event"]


@dataclass(slots=True)
class Transition:
    hosts: dict[str, HostState] = field(default_factory=dict)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)
    outbox: list[tuple[Task, datetime | None]] = field(default_factory=list)
    # Results that finished a task (success or final failure): what the planner is shown.
    finished: list[ResultEvent] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)
    ignored: int = 0
    # Hosts whose proposed ensure was refused (desired state): the resource is marked failed
    # and the planner may go on with the host's other resources in the same step.
    refused_on: list[str] = field(default_factory=list)
    # Operator requests folded in (`MissionControl`): a cancel, and new budget limits.
    cancel: MissionControl | None = None
    budget: dict[str, int | float] | None = None
    unlocked: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.hosts or self.tasks or self.events)


class StateView:
    """The state as seen through the changes made so far in this transition."""

    __slots__ = ("state", "tr")

    def __init__(self, state: MissionState, tr: Transition) -> None:
        self.state = state
        self.tr = tr

    def host(self, host_id: str) -> HostState | None:
        return self.tr.hosts.get(host_id) or self.state.hosts.get(host_id)

    def task(self, task_id: str) -> TaskRecord | None:
        return self.tr.tasks.get(task_id) or self.state.tasks.get(task_id)


_EVENT_SET = frozenset({"mission_id", "ts", "kind", "payload"})


def make_event(state: MissionState, now: datetime, kind: EventKind, **payload: Any) -> EventRecord:
    """`EventRecord(mission_id=..., ts=now, kind=kind, payload=payload)`, built without
    validation: two of these are made per task, and every value here is already valid."""
    if now.tzinfo is None:  # what AwareDatetime would refuse
        raise ValueError("event timestamps must be timezone-aware")
    return trusted(
        EventRecord,
        {
            "schema_version": SCHEMA_VERSION,
            "seq": 0,
            "ts": now,
            "mission_id": state.mission_id,
            "kind": kind,
            "payload": payload,
        },
        set(_EVENT_SET),
    )
