"""Model builders shared by the backend tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from reaper.infra.base import OutboxItem
from reaper.models import (
    ApprovalDecision,
    EventKind,
    EventRecord,
    HostConnection,
    HostState,
    HostStatus,
    MissionState,
    ResultEvent,
    ResultStatus,
    SimSettings,
    Stage,
    Task,
    TaskRecord,
    TaskStatus,
)


def host(i: int, os: str = "linux") -> HostState:
    return HostState(
        host_id=f"h{i:05d}",
        os=os,  # type: ignore[arg-type]
        last_status=HostStatus.HEALTHY,
        facts={"kernel": "6.1", "cpus": 2, "disks": [{"dev": "sda", "gb": 20.5}]},
        stage=Stage.DISCOVERED,
        last_tasks=[f"t{i}"],
        connection=HostConnection(
            transport="sim", sim=SimSettings(facts={"x": i}, latency_s=(0.0, 0.1))
        ),
    )


def task(mission_id: str, i: int, agent_type: str = "reaper-linux", attempt: int = 1) -> Task:
    return Task(
        task_id=f"{mission_id}-s1-{i}",
        mission_id=mission_id,
        host_id=f"h{i % 3:05d}",
        agent_type=agent_type,
        action="linux.discover",
        params={"i": i, "nested": {"a": [1, 2]}},
        attempt=attempt,
        reason="contract test",
    )


def item(
    mission_id: str,
    i: int,
    agent_type: str = "reaper-linux",
    attempt: int = 1,
    not_before: datetime | None = None,
) -> OutboxItem:
    return OutboxItem(task=task(mission_id, i, agent_type, attempt), not_before=not_before)


def queued(items: Sequence[OutboxItem]) -> dict[str, Any]:
    """Commit fields queuing `items`: the entries and, as the engine commits them, their
    task records."""
    return {
        "tasks": [TaskRecord(task=i.task, not_before=i.not_before) for i in items],
        "outbox": list(items),
    }


def mission(mission_id: str, hosts: int = 3, now: datetime | None = None) -> MissionState:
    state = MissionState(
        mission_id=mission_id,
        lab_type="contract",
        hosts={
            h.host_id: h
            for h in (host(i, ("linux", "windows", "macos")[i % 3]) for i in range(hosts))
        },
        policy={"default": "allow", "rules": [{"action": "*.reboot", "decision": "ask"}]},
        settings={"max_steps": 50, "budget": {"usd": 1.5}},
        planner="rule",
        **({} if now is None else {"created_at": now, "updated_at": now}),
    )
    state.put_task(TaskRecord(task=task(mission_id, 0), status=TaskStatus.SUCCEEDED, step=1))
    state.put_task(TaskRecord(task=task(mission_id, 1), status=TaskStatus.QUEUED, step=1))
    state.put_task(
        TaskRecord(
            task=task(mission_id, 2, attempt=2),
            status=TaskStatus.RETRY_WAIT,
            step=1,
            last_error="timeout",
            not_before=state.created_at,
        )
    )
    return state


def event(mission_id: str, kind: EventKind = EventKind.TASK_PLANNED, n: int = 0) -> EventRecord:
    return EventRecord(mission_id=mission_id, kind=kind, payload={"n": n, "tags": ["a", "b"]})


def result(t: Task, status: ResultStatus = ResultStatus.SUCCESS) -> ResultEvent:
    return ResultEvent(
        task_id=t.task_id,
        mission_id=t.mission_id,
        host_id=t.host_id,
        agent_type=t.agent_type,
        action=t.action,
        attempt=t.attempt,
        status=status,
        summary="ok",
        data={"facts": {"os": "debian"}},
        duration_s=0.25,
    )


def approval(mission_id: str, task_id: str, approved: bool = True) -> ApprovalDecision:
    return ApprovalDecision(mission_id=mission_id, task_id=task_id, approved=approved)


__all__ = ["approval", "event", "host", "item", "mission", "result", "task"]
