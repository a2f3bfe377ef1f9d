"""The loop guard: the third identical try of a fix that failed twice the same way is refused
as a `loop`, recorded, shown to the planner through the host's refusals, and its resource is
failed; the engine's own retries of one task never count."""

from __future__ import annotations

from collections.abc import Sequence

from reaper.engine.loops import loop_reason
from reaper.lab import parse_lab
from reaper.models import (
    EventKind,
    HostState,
    MissionState,
    MissionStatus,
    PlannedTask,
    ResultEvent,
    Task,
    TaskRecord,
    TaskStatus,
)
from reaper.planners.base import Plan
from tests.missions import HarnessFactory, of_kind
from tests.worlds import LAB, World

_NGINX = {"kind": "package", "name": "nginx"}


class _Stubborn:
    """Answers every result by installing nginx on web-01 again, whatever happened."""

    name = "stubborn"

    def __init__(self) -> None:
        self.asked = 0

    def _task(self) -> PlannedTask:
        return PlannedTask(
            host_id="web-01",
            action="linux.ensure_package",
            params={"resource": _NGINX},
            reason="install nginx",
        )

    async def initial_tasks(self, state: MissionState) -> Plan:
        return Plan(tasks=[self._task()])

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        self.asked += 1
        return Plan(tasks=[self._task()] if self.asked < 10 else [])


async def test_a_third_identical_failing_fix_is_refused_as_a_loop(
    harness: HarnessFactory,
) -> None:
    world = World()
    world.fail[("web-01", "package/nginx")] = ("PACKAGE_NOT_FOUND", "E: no nginx")
    planner = _Stubborn()
    h = await harness(runners={"sim": world}, planner=planner)
    state = await h.run(parse_lab(LAB))
    assert state.status is MissionStatus.COMPLETED and not state.goal_reached
    # two real tries reached the host; the third was refused before it was queued
    assert world.log.count(("web-01", "linux.ensure_package")) == 2
    refused = [e for e in of_kind(await h.events("web"), EventKind.TASK_REFUSED)]
    assert [e.payload["code"] for e in refused] == ["loop"]
    assert "already failed 2 times with PACKAGE_NOT_FOUND" in refused[0].payload["reason"]
    host = state.hosts["web-01"]
    assert len(host.refusals) == 1 and "refused (loop)" in host.refusals[0]
    nginx = host.resources["package/nginx"]
    assert nginx.outcome == "failed" and nginx.error_code == "REFUSED"
    assert planner.asked == 2  # nothing ran after the refusal, so nothing more to answer


def _record(task_id: str, params: dict[str, object], status: TaskStatus, code: str) -> TaskRecord:
    task = Task(
        task_id=task_id,
        mission_id="m",
        host_id="h",
        agent_type="linux",
        action="linux.ensure_package",
        params=params,
    )
    return TaskRecord(task=task, status=status, last_error=code)


def test_only_identical_tasks_failing_the_same_way_count() -> None:
    same = {"resource": _NGINX}
    other = {"resource": {"kind": "package", "name": "apache2"}}
    records = {
        "t1": _record("t1", same, TaskStatus.FAILED, "PACKAGE_NOT_FOUND"),
        "t2": _record("t2", other, TaskStatus.FAILED, "PACKAGE_NOT_FOUND"),
        "t3": _record("t3", same, TaskStatus.FAILED, "DISK_FULL"),
        "t4": _record("t4", same, TaskStatus.SUCCEEDED, ""),
    }
    host = HostState(host_id="h", os="linux", last_tasks=list(records))
    assert loop_reason(host, "linux.ensure_package", same, records.get) is None
    records["t5"] = _record("t5", same, TaskStatus.FAILED, "DISK_FULL")
    host = host.model_copy(update={"last_tasks": list(records)})
    reason = loop_reason(host, "linux.ensure_package", same, records.get)
    assert reason is not None and "2 times with DISK_FULL" in reason
    assert loop_reason(host, "linux.ensure_package", other, records.get) is None


def test_a_task_the_engine_retried_counts_once() -> None:
    # A PM_LOCKED try retried by the engine, whose last attempt failed DISK_FULL: its id is in
    # `last_tasks` once per result; the fix after it (cleanup) deserves its retry.
    same = {"resource": _NGINX}
    records = {"t1": _record("t1", same, TaskStatus.FAILED, "DISK_FULL")}
    host = HostState(host_id="h", os="linux", last_tasks=["t1", "t1"])
    assert loop_reason(host, "linux.ensure_package", same, records.get) is None


def test_a_new_fix_that_succeeded_starts_the_count_again() -> None:
    same = {"resource": _NGINX}
    records = {
        "t1": _record("t1", same, TaskStatus.FAILED, "PM_LOCKED"),
        "t2": _record("t2", same, TaskStatus.FAILED, "PM_LOCKED"),
    }
    host = HostState(host_id="h", os="linux", last_tasks=list(records))
    assert loop_reason(host, "linux.ensure_package", same, records.get) is not None
    reboot = _record("t3", {}, TaskStatus.SUCCEEDED, "")
    records["t3"] = reboot.model_copy(
        update={"task": reboot.task.model_copy(update={"action": "linux.reboot"})}
    )
    host = host.model_copy(update={"last_tasks": list(records)})
    assert loop_reason(host, "linux.ensure_package", same, records.get) is None
