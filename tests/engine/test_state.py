"""The pure fold: results and approvals in, a transition out; the state given is never touched,
and a result is applied at most once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from reaper.engine.admission import plan
from reaper.engine.state import RetrySettings, Transition, apply, fold
from reaper.models import (
    ApprovalDecision,
    EventKind,
    HostState,
    InboundMessage,
    MissionState,
    PlannedTask,
    ResultEvent,
    ResultStatus,
    Stage,
    Task,
    TaskStatus,
)
from reaper.policy import PRESETS, Policy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RETRY = RetrySettings(max_attempts=3, backoff_s=1.0, backoff_max_s=30.0)


def new_state(*hosts: tuple[str, str], max_failures: int = 3) -> MissionState:
    return MissionState(
        mission_id="m1",
        lab_type="t",
        hosts={
            h: HostState(host_id=h, os=os, max_failures=max_failures)  # type: ignore[arg-type]
            for h, os in hosts
        },
    )


def planned(
    state: MissionState, *proposals: PlannedTask, policy: Policy = PRESETS["standard"]
) -> list[Task]:
    """Plan and apply one step; the minted tasks."""
    tr = plan(state, proposals, step=state.step + 1, policy=policy, now=NOW, planner="test")
    state.step += 1
    apply(state, tr)
    return [rec.task for rec in tr.tasks.values()]


def result(task: Task, ok: bool = True, **fields: Any) -> ResultEvent:
    values: dict[str, Any] = {
        "task_id": task.task_id,
        "mission_id": task.mission_id,
        "host_id": task.host_id,
        "agent_type": task.agent_type,
        "action": task.action,
        "attempt": task.attempt,
        "status": ResultStatus.SUCCESS if ok else ResultStatus.ERROR,
        "data": {"kernel": "6.1"} if ok else {},
        "ts": NOW,
    }
    if not ok:
        values["error_code"] = "COMMAND_FAILED"
    values.update(fields)
    return ResultEvent(**values)


def snapshot(state: MissionState) -> tuple[dict[str, Any], set[str]]:
    return state.model_dump(mode="json"), set(state.open_task_ids)


def fold_apply(state: MissionState, messages: list[InboundMessage]) -> Transition:
    tr = fold(state, messages, now=NOW, retry=RETRY)
    apply(state, tr)
    return tr


@pytest.fixture
def three() -> tuple[MissionState, list[Task]]:
    state = new_state(("a", "linux"), ("b", "windows"), ("c", "macos"))
    tasks = planned(
        state,
        PlannedTask(host_id="a", action="linux.discover"),
        PlannedTask(host_id="b", action="windows.discover"),
        PlannedTask(host_id="c", action="macos.discover"),
    )
    return state, tasks


def test_fold_does_not_mutate_the_state_it_is_given(three: tuple[MissionState, list[Task]]):
    state, (ta, tb, tc) = three
    before = snapshot(state)
    batch: list[InboundMessage] = [
        result(ta),
        result(tb, ok=False, error_code="CONNECTION_RESET", retriable=True),
        result(tc, ok=False, error_code="AUTH_FAILED"),
    ]
    tr = fold(state, batch, now=NOW, retry=RETRY)
    assert tr.changed and len(tr.finished) == 2 and len(tr.outbox) == 1
    assert snapshot(state) == before


def test_plan_does_not_mutate_the_state_it_is_given():
    state = new_state(("a", "linux"), ("b", "linux"))
    before = snapshot(state)
    tr = plan(
        state,
        [PlannedTask(host_id="a", action="linux.discover"), PlannedTask(host_id="zz", action="x")],
        step=1,
        policy=PRESETS["standard"],
        now=NOW,
        planner="test",
    )
    assert len(tr.tasks) == 1 and len(tr.outbox) == 1
    assert snapshot(state) == before


def test_redelivered_result_changes_nothing(three: tuple[MissionState, list[Task]]):
    state, (ta, _, _) = three
    fold_apply(state, [result(ta)])
    after_first = snapshot(state)
    tr = fold(state, [result(ta)], now=NOW, retry=RETRY)
    assert not tr.changed
    assert tr.ignored == 1 and not tr.events and not tr.outbox and not tr.finished
    apply(state, tr)
    assert snapshot(state) == after_first


def test_duplicate_inside_one_batch_is_applied_once(three: tuple[MissionState, list[Task]]):
    state, (ta, _, _) = three
    failed = result(ta, ok=False)
    tr = fold_apply(state, [failed, failed, failed])
    assert tr.ignored == 2
    assert [e.kind for e in tr.events].count(EventKind.TASK_RESULT) == 1
    assert state.hosts["a"].failure_count == 1


def _outcomes(tasks: list[Task]) -> list[ResultEvent]:
    ta, tb, tc = tasks
    return [
        result(ta),
        result(tb, ok=False, error_code="CONNECTION_RESET", retriable=True),
        result(tc, ok=False, error_code="AUTH_FAILED"),
        result(ta),  # a redelivery inside the batch
    ]


def test_reordered_batch_gives_the_same_final_state(three: tuple[MissionState, list[Task]]):
    state, tasks = three
    forward, backward = state.detached(), state.detached()
    batch = _outcomes(tasks)
    tr1 = fold_apply(forward, list(batch))
    tr2 = fold_apply(backward, list(reversed(batch)))
    assert forward.model_dump(mode="json") == backward.model_dump(mode="json")
    assert forward.open_task_ids == backward.open_task_ids
    assert sorted(t.key for t, _ in tr1.outbox) == sorted(t.key for t, _ in tr2.outbox)
    assert tr1.ignored == tr2.ignored == 1


def test_reordered_across_batches_gives_the_same_final_state(
    three: tuple[MissionState, list[Task]],
):
    state, tasks = three
    one, two = state.detached(), state.detached()
    batch = _outcomes(tasks)
    for r in batch:
        fold_apply(one, [r])
    fold_apply(two, [batch[2]])
    fold_apply(two, [batch[1], batch[0]])
    fold_apply(two, [batch[3]])
    assert one.model_dump(mode="json") == two.model_dump(mode="json")


def test_stale_attempt_result_is_ignored(three: tuple[MissionState, list[Task]]):
    state, (ta, _, _) = three
    fold_apply(state, [result(ta, ok=False, error_code="CONNECTION_RESET", retriable=True)])
    rec = state.tasks[ta.task_id]
    assert rec.task.attempt == 2 and rec.status is TaskStatus.QUEUED
    before = snapshot(state)
    late = result(ta, ok=False, error_code="CONNECTION_RESET", retriable=True)  # attempt 1 again
    early = result(ta.model_copy(update={"attempt": 3}))  # an attempt never published
    tr = fold(state, [late, early], now=NOW, retry=RETRY)
    assert tr.ignored == 2 and not tr.changed
    assert snapshot(state) == before
    fold_apply(state, [result(rec.task)])
    assert state.tasks[ta.task_id].status is TaskStatus.SUCCEEDED
    assert state.hosts["a"].stage is Stage.DISCOVERED


def test_results_for_unknown_tasks_and_hosts_are_ignored(three: tuple[MissionState, list[Task]]):
    state, (ta, _, _) = three
    before = snapshot(state)
    unknown_task = result(ta.model_copy(update={"task_id": "m1:99:0"}))
    wrong_host = result(ta, host_id="b")
    unknown_host = result(ta, host_id="nope")
    tr = fold(state, [unknown_task, wrong_host, unknown_host], now=NOW, retry=RETRY)
    assert tr.ignored == 3 and not tr.changed
    assert snapshot(state) == before


def test_result_after_the_task_finished_is_ignored(three: tuple[MissionState, list[Task]]):
    state, (ta, _, _) = three
    fold_apply(state, [result(ta, ok=False)])
    tr = fold(state, [result(ta)], now=NOW, retry=RETRY)  # a success arriving after failure
    assert tr.ignored == 1 and not tr.changed
    assert state.tasks[ta.task_id].status is TaskStatus.FAILED


def test_retriable_failure_is_republished_later_without_counting(
    three: tuple[MissionState, list[Task]],
):
    state, (ta, _, _) = three
    tr = fold_apply(state, [result(ta, ok=False, error_code="TIMEOUT", retriable=True)])
    ((task, due),) = tr.outbox
    assert task.task_id == ta.task_id and task.attempt == 2
    assert due is not None and due > NOW  # a delayed re-publish, not a sleep
    assert [e.kind for e in tr.events] == [EventKind.TASK_RESULT, EventKind.TASK_RETRY]
    assert state.hosts["a"].failure_count == 0
    assert not tr.finished  # the planner is not shown a failure that is being retried


def test_retriable_failure_counts_once_when_retries_run_out(
    three: tuple[MissionState, list[Task]],
):
    state, (ta, _, _) = three
    task = ta
    for _ in range(RETRY.max_attempts):
        fold_apply(state, [result(task, ok=False, error_code="CONNECTION_RESET", retriable=True)])
        task = state.tasks[ta.task_id].task
    assert state.tasks[ta.task_id].status is TaskStatus.FAILED
    assert state.tasks[ta.task_id].task.attempt == RETRY.max_attempts
    assert state.hosts["a"].failure_count == 1


@pytest.mark.parametrize("code", ["AGENT_ERROR", "UNKNOWN_ACTION", "UNSUPPORTED_TRANSPORT"])
def test_failures_that_are_not_the_hosts_fault_do_not_count(code: str):
    state = new_state(("a", "linux"), max_failures=1)
    (task,) = planned(state, PlannedTask(host_id="a", action="linux.discover"))
    tr = fold_apply(state, [result(task, ok=False, error_code=code)])
    assert state.hosts["a"].failure_count == 0 and not state.hosts["a"].locked
    assert not tr.locked
    assert state.tasks[task.task_id].status is TaskStatus.FAILED


def test_host_locks_at_max_failures_with_a_logged_reason():
    state = new_state(("a", "linux"), ("b", "linux"), max_failures=2)
    for n in range(2):
        (task,) = planned(state, PlannedTask(host_id="a", action="linux.baseline"))
        tr = fold_apply(state, [result(task, ok=False, error_code="AUTH_FAILED")])
        assert state.hosts["a"].locked is (n == 1)
    host = state.hosts["a"]
    assert host.locked and host.failure_count == 2
    assert host.lock_reason is not None and "AUTH_FAILED" in host.lock_reason
    assert tr.locked == ["a"]
    (locked_event,) = [e for e in tr.events if e.kind is EventKind.HOST_LOCKED]
    assert locked_event.payload["host_id"] == "a"


def test_approval_decisions_fold_once():
    state = new_state(("a", "linux"), ("b", "linux"))
    ta, tb = planned(
        state,
        PlannedTask(host_id="a", action="linux.baseline"),
        PlannedTask(host_id="b", action="linux.baseline"),
        policy=PRESETS["cautious"],
    )
    assert state.awaiting_approval and len(state.awaiting_approval) == 2
    yes = ApprovalDecision(mission_id="m1", task_id=ta.task_id, approved=True)
    no = ApprovalDecision(mission_id="m1", task_id=tb.task_id, approved=False)
    tr = fold_apply(state, [yes, no, yes])
    assert tr.ignored == 1
    assert [t.task_id for t, _ in tr.outbox] == [ta.task_id]
    assert state.tasks[ta.task_id].status is TaskStatus.QUEUED
    assert state.tasks[tb.task_id].status is TaskStatus.REJECTED
    assert state.hosts["b"].current_action is None
    kinds = [e.kind for e in tr.events]
    assert kinds == [EventKind.APPROVAL_GRANTED, EventKind.APPROVAL_REJECTED]


def test_json_round_trip_of_a_folded_state_is_lossless(three: tuple[MissionState, list[Task]]):
    state, tasks = three
    fold_apply(state, _outcomes(tasks))
    again = MissionState.model_validate_json(state.model_dump_json())
    assert again == state
    assert again.open_task_ids == state.open_task_ids
    assert again.created_at.tzinfo is not None


def test_discover_corrects_a_guessed_os() -> None:
    """An inventory guessed linux; the host's discover says macOS: the host's OS follows."""
    from reaper.engine.state import RetrySettings, fold
    from reaper.models import EventKind, HostState, MissionState, ResultEvent, Task, TaskRecord

    host = HostState(host_id="m", os="linux")
    task = Task(
        task_id="x:1:0",
        mission_id="x",
        host_id="m",
        agent_type="reaper-linux",
        action="linux.discover",
    )
    state = MissionState(
        mission_id="x", lab_type="t", hosts={"m": host}, tasks={task.task_id: TaskRecord(task=task)}
    )
    result = ResultEvent(
        task_id=task.task_id,
        mission_id="x",
        host_id="m",
        agent_type="reaper-linux",
        action="linux.discover",
        status="success",
        data={"os_family": "macos", "kernel": "23.4.0"},
    )
    tr = fold(state, [result], now=result.ts, retry=RetrySettings())
    assert tr.hosts["m"].os == "macos"
    assert tr.hosts["m"].agent_type == "reaper-macos"
    assert [e.kind for e in tr.events if e.kind is EventKind.HOST_OS_CORRECTED]
    assert state.hosts["m"].os == "linux"  # fold is pure
