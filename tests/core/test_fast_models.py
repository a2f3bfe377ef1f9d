"""The unvalidated fast paths (`replace`, `trusted` and their callers) build exactly what
the validated constructors and `model_copy` build: same values, same repr, same fields set."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from reaper.agents.base import ActionOutcome
from reaper.agents.worker import Worker
from reaper.engine.state import make_event
from reaper.infra.memory import memory_backend
from reaper.models import (
    EventKind,
    EventRecord,
    HostState,
    HostStatus,
    MissionState,
    PlannedTask,
    ResultEvent,
    ResultStatus,
    Stage,
    Task,
    TaskRecord,
    TaskStatus,
    replace,
)
from reaper.planners.base import planned_task

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _same(a: BaseModel, b: BaseModel) -> None:
    assert type(a) is type(b)
    assert a == b
    assert repr(a) == repr(b)
    assert a.model_fields_set == b.model_fields_set
    assert a.model_dump_json() == b.model_dump_json()


def _task() -> Task:
    return Task(
        task_id="m:1:0",
        mission_id="m",
        host_id="h1",
        agent_type="reaper-linux",
        action="linux.discover",
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"current_action": "linux.baseline"},
        {"last_status": HostStatus.HEALTHY, "stage": Stage.DISCOVERED, "facts": {"a": {"b": 1}}},
        {},
    ],
)
def test_replace_matches_model_copy(changes: dict[str, Any]) -> None:
    host = HostState(host_id="h1", os="linux", last_tasks=["x"])
    new = replace(host, **changes)
    _same(new, host.model_copy(update=changes))
    assert new is not host and new.__dict__ is not host.__dict__
    assert new.model_fields_set is not host.model_fields_set
    rec = TaskRecord(task=_task(), step=1)
    _same(
        replace(rec, status=TaskStatus.SUCCEEDED, last_error=None),
        rec.model_copy(update={"status": TaskStatus.SUCCEEDED, "last_error": None}),
    )


def test_replace_keeps_private_state_apart() -> None:
    state = MissionState(mission_id="m", lab_type="lab", hosts={})
    copy = replace(state, step=3)
    _same(copy, state.model_copy(update={"step": 3}))


def test_make_event_matches_the_constructor() -> None:
    state = MissionState(mission_id="m", lab_type="lab", hosts={})
    made = make_event(state, NOW, EventKind.TASK_PLANNED, task_id="t", step=1, params={})
    built = EventRecord(
        mission_id="m",
        ts=NOW,
        kind=EventKind.TASK_PLANNED,
        payload={"task_id": "t", "step": 1, "params": {}},
    )
    _same(made, built)
    made.seq = 4  # the store numbers events: only this record changes
    assert made.model_fields_set == {"mission_id", "ts", "kind", "payload", "seq"}
    again = make_event(state, NOW, EventKind.TASK_PLANNED)
    assert again.model_fields_set == {"mission_id", "ts", "kind", "payload"}


def test_make_event_refuses_a_naive_timestamp() -> None:
    state = MissionState(mission_id="m", lab_type="lab", hosts={})
    with pytest.raises(ValueError):
        make_event(state, datetime(2026, 1, 1), EventKind.TASK_PLANNED)  # noqa: DTZ001


def test_rule_planner_tasks_match_the_constructor() -> None:
    built = PlannedTask(host_id="h1", action="linux.discover", reason="why")
    _same(planned_task("h1", "linux.discover", "why"), built)
    a, b = planned_task("h1", "a", "r"), planned_task("h1", "a", "r")
    assert a.params is not b.params
    params = {"resource": {"kind": "package", "name": "curl"}, "check_mode": False}
    action = "linux.ensure_package"
    with_params = PlannedTask(host_id="h1", action=action, params=params, reason="r")
    _same(planned_task("h1", action, "r", params), with_params)


def _worker() -> Worker:
    _store, queue, bus = memory_backend()
    return Worker("reaper-linux", queue, bus, hosts=None, runners={})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "outcome",
    [
        ActionOutcome(status=ResultStatus.SUCCESS, summary="ok", data={"k": {"n": 1}}),
        ActionOutcome(
            status=ResultStatus.ERROR,
            summary="bad",
            stderr_tail="e",
            error_code="COMMAND_FAILED",
            retriable=True,
            logs_ref="ref",
        ),
    ],
)
def test_worker_results_match_the_constructor(outcome: ActionOutcome) -> None:
    worker = _worker()
    task = _task()
    made = worker._result(task, outcome, worker._clock.monotonic())
    built = ResultEvent(
        task_id=task.task_id,
        mission_id=task.mission_id,
        host_id=task.host_id,
        agent_type=task.agent_type,
        action=task.action,
        attempt=task.attempt,
        status=outcome.status,
        summary=outcome.summary,
        stdout_tail=outcome.stdout_tail,
        stderr_tail=outcome.stderr_tail,
        data=outcome.data,
        logs_ref=outcome.logs_ref,
        ts=made.ts,
        retriable=outcome.retriable,
        error_code=outcome.error_code,
        duration_s=made.duration_s,
    )
    _same(made, built)
    assert made.data is not outcome.data  # a copy, as validation makes


def test_worker_still_validates_unusual_outcomes() -> None:
    worker = _worker()
    odd = ActionOutcome(status="success", summary="ok")  # type: ignore[arg-type]
    made = worker._result(_task(), odd, worker._clock.monotonic())
    assert made.status is ResultStatus.SUCCESS
    bad = ActionOutcome(status=ResultStatus.SUCCESS, summary="ok", data=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        worker._result(_task(), bad, worker._clock.monotonic())
