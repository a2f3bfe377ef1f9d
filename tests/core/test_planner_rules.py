"""The rule-based planner: discover everything, walk each host to the goal, and react sensibly
to failures (give up on what will not heal, prepare on a missing prerequisite)."""

from __future__ import annotations

from typing import Any

import pytest

from reaper.models import HostState, MissionState, ResultEvent, ResultStatus, Stage
from reaper.planners.rules import FATAL_ERRORS, RuleBasedPlanner


def state(goal: Stage = Stage.BASELINED, **hosts: dict[str, Any]) -> MissionState:
    return MissionState(
        mission_id="m1",
        lab_type="t",
        goal=goal,
        hosts={h: HostState(host_id=h, **{"os": "linux", **kw}) for h, kw in hosts.items()},
    )


def result(host_id: str, action: str, ok: bool = True, code: str | None = None) -> ResultEvent:
    os_name = action.split(".")[0]
    return ResultEvent(
        task_id=f"m1:1:{host_id}",
        mission_id="m1",
        host_id=host_id,
        agent_type=f"reaper-{os_name}",
        action=action,
        status=ResultStatus.SUCCESS if ok else ResultStatus.ERROR,
        error_code=code,
    )


def actions(plan: Any) -> list[tuple[str, str]]:
    assert all(t.reason for t in plan.tasks), "every planned task says why"
    return [(t.host_id, t.action) for t in plan.tasks]


async def test_initial_discovers_new_hosts_and_resumes_the_others():
    s = state(
        a={"os": "windows"},
        b={"os": "macos", "stage": Stage.DISCOVERED},
        c={"locked": True},
        d={"stage": Stage.BASELINED},
    )
    plan = await RuleBasedPlanner().initial_tasks(s)
    assert sorted(actions(plan)) == [("a", "windows.discover"), ("b", "macos.baseline")]


async def test_discover_success_leads_to_baseline_then_nothing():
    planner = RuleBasedPlanner()
    s = state(a={"stage": Stage.DISCOVERED})
    assert actions(await planner.next_tasks(s, [result("a", "linux.discover")])) == [
        ("a", "linux.baseline")
    ]
    s = state(a={"stage": Stage.BASELINED})
    assert actions(await planner.next_tasks(s, [result("a", "linux.baseline")])) == []


async def test_goal_discovered_stops_after_discover():
    s = state(goal=Stage.DISCOVERED, a={"stage": Stage.DISCOVERED})
    assert actions(await RuleBasedPlanner().next_tasks(s, [result("a", "linux.discover")])) == []


async def test_missing_prerequisite_prepares_then_baselines():
    planner = RuleBasedPlanner()
    s = state(a={"stage": Stage.DISCOVERED, "failure_count": 1})
    failed = result("a", "linux.baseline", ok=False, code="PREREQ_MISSING")
    assert actions(await planner.next_tasks(s, [failed])) == [("a", "linux.prepare")]
    s = state(a={"stage": Stage.PREPARED, "failure_count": 1})
    assert actions(await planner.next_tasks(s, [result("a", "linux.prepare")])) == [
        ("a", "linux.baseline")
    ]


@pytest.mark.parametrize("code", sorted(FATAL_ERRORS))
async def test_fatal_errors_are_not_repeated(code: str):
    s = state(a={"failure_count": 1})
    failed = result("a", "linux.discover", ok=False, code=code)
    assert actions(await RuleBasedPlanner().next_tasks(s, [failed])) == []


async def test_other_failures_rediscover_while_failures_are_to_spare():
    planner = RuleBasedPlanner()
    s = state(a={"stage": Stage.DISCOVERED, "failure_count": 1, "max_failures": 3})
    failed = result("a", "linux.baseline", ok=False, code="COMMAND_FAILED")
    assert actions(await planner.next_tasks(s, [failed])) == [("a", "linux.discover")]
    # One more failure would lock the host: leave it as it is.
    s = state(a={"stage": Stage.DISCOVERED, "failure_count": 2, "max_failures": 3})
    assert actions(await planner.next_tasks(s, [failed])) == []


async def test_locked_and_busy_hosts_get_nothing():
    s = state(a={"locked": True}, b={"current_action": "linux.discover"})
    batch = [result("a", "linux.discover"), result("b", "linux.discover")]
    assert actions(await RuleBasedPlanner().next_tasks(s, batch)) == []


async def test_one_task_per_host_per_batch_and_only_hosts_in_the_batch():
    s = state(a={"stage": Stage.DISCOVERED}, b={"stage": Stage.DISCOVERED}, c={"stage": Stage.NEW})
    batch = [result("a", "linux.discover"), result("a", "linux.discover")]
    assert actions(await RuleBasedPlanner().next_tasks(s, batch)) == [("a", "linux.baseline")]


async def test_results_for_unknown_hosts_are_skipped():
    s = state(a={})
    assert actions(await RuleBasedPlanner().next_tasks(s, [result("zz", "linux.discover")])) == []
