"""Deliberately weakened planners: each misses one thing the scorecard must catch."""

from __future__ import annotations

from collections.abc import Sequence

from reaper.models import MissionState, PlannedTask, ResultEvent
from reaper.planners.base import Plan
from reaper.planners.rules import RuleBasedPlanner


class NeverRetries(RuleBasedPlanner):
    """Gives up on a host after its first failed task."""

    name = "never-retries"

    def _after(self, state: MissionState, r: ResultEvent) -> list[PlannedTask]:
        return [] if not r.ok else super()._after(state, r)


class Rediscovers(RuleBasedPlanner):
    """Discovers again before every baseline, failure or not."""

    name = "rediscovers"

    def __init__(self) -> None:
        self.again: set[str] = set()

    def _after(self, state: MissionState, r: ResultEvent) -> list[PlannedTask]:
        tasks = super()._after(state, r)
        if r.ok and r.action.endswith(".discover") and r.host_id not in self.again:
            self.again.add(r.host_id)
            host = state.hosts[r.host_id]
            return [PlannedTask(host_id=r.host_id, action=f"{host.os}.discover", reason="again")]
        return tasks


class IgnoresPrereqs(RuleBasedPlanner):
    """Treats PREREQ_MISSING like any failure: re-discovers and re-baselines."""

    name = "ignores-prereqs"

    def _after(self, state: MissionState, r: ResultEvent) -> list[PlannedTask]:
        if r.error_code == "PREREQ_MISSING":
            r = r.model_copy(update={"error_code": "COMMAND_FAILED"})
        return super()._after(state, r)


class Stubborn(RuleBasedPlanner):
    """Retries every failure, fatal ones included, whatever the failure count."""

    name = "stubborn"

    def _after(self, state: MissionState, r: ResultEvent) -> list[PlannedTask]:
        host = state.hosts.get(r.host_id)
        if r.ok or host is None or host.locked or host.current_action is not None:
            return super()._after(state, r)
        return [PlannedTask(host_id=r.host_id, action=r.action, reason="try again")]


class DivergesAt(RuleBasedPlanner):
    """The rule planner, except that at step `at` it also proposes one extra discover."""

    name = "diverges"

    def __init__(self, at: int) -> None:
        self.at = at

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        plan = await super().next_tasks(state, results)
        if state.step + 1 == self.at:
            host = sorted(state.hosts.values(), key=lambda h: h.host_id)[0]
            plan.tasks.append(
                PlannedTask(host_id=host.host_id, action=f"{host.os}.discover", reason="extra")
            )
        return plan
