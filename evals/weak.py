"""Deliberately weakened desired-state planners: the rule converger with one thing broken.

Each must score measurably worse than the converger on the scenarios where that thing
matters (tests/evals/test_weak_world.py), which is what shows the scorecard reads the world
and not the trace. Use them by name: `--planners rule,evals.weak:CheckModeOnly`.
"""

from __future__ import annotations

from collections.abc import Sequence

from reaper.models import MissionState, PlannedTask, ResultEvent
from reaper.planners.base import Plan
from reaper.planners.rules import RuleBasedPlanner

__all__ = ["CheckModeOnly", "HammersRetries", "OneItemOnly", "SkipsDiscovery"]


def _is_ensure(action: str) -> bool:
    return ".ensure_" in action


class _Filtered:
    """The converger, with its proposals passed through `_keep` / `_rewrite`."""

    name = "weak"

    def __init__(self) -> None:
        self.inner = RuleBasedPlanner()

    def _rewrite(self, state: MissionState, tasks: list[PlannedTask]) -> list[PlannedTask]:
        return tasks

    async def initial_tasks(self, state: MissionState) -> Plan:
        plan = await self.inner.initial_tasks(state)
        plan.tasks = self._rewrite(state, plan.tasks)
        return plan

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        plan = await self.inner.next_tasks(state, results)
        plan.tasks = self._rewrite(state, plan.tasks)
        return plan


class CheckModeOnly(_Filtered):
    """Runs every ensure in check mode: the trace shows work, the world is unchanged."""

    name = "weak-check-mode"

    def _rewrite(self, state: MissionState, tasks: list[PlannedTask]) -> list[PlannedTask]:
        return [
            t.model_copy(update={"params": {**t.params, "check_mode": True}})
            if _is_ensure(t.action)
            else t
            for t in tasks
        ]


class OneItemOnly(_Filtered):
    """Applies one ensure per host, then proposes nothing more for it."""

    name = "weak-one-item"

    def __init__(self) -> None:
        super().__init__()
        self.applied: set[str] = set()

    def _rewrite(self, state: MissionState, tasks: list[PlannedTask]) -> list[PlannedTask]:
        out = []
        for t in tasks:
            if _is_ensure(t.action):
                if t.host_id in self.applied:
                    continue
                self.applied.add(t.host_id)
            out.append(t)
        return out


class SkipsDiscovery(_Filtered):
    """Never reads a host before acting: discover is dropped, so nothing is known to fix."""

    name = "weak-skips-discovery"

    def _rewrite(self, state: MissionState, tasks: list[PlannedTask]) -> list[PlannedTask]:
        return [t for t in tasks if not t.action.endswith(".discover")]


class HammersRetries(_Filtered):
    """Answers every failed ensure by running it again, never the fix the failure needs."""

    name = "weak-hammers-retries"

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[tuple[str, str], dict[str, object]] = {}

    def _rewrite(self, state: MissionState, tasks: list[PlannedTask]) -> list[PlannedTask]:
        for t in tasks:
            self.sent[(t.host_id, t.action)] = t.params
        return tasks

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        failed = [r for r in results if not r.ok and (r.host_id, r.action) in self.sent]
        failed = [r for r in failed if _is_ensure(r.action)]
        plan = await super().next_tasks(state, results)
        if not failed:
            return plan
        hosts = {r.host_id for r in failed}
        plan.tasks = [t for t in plan.tasks if t.host_id not in hosts] + [
            PlannedTask(
                host_id=r.host_id,
                action=r.action,
                params=dict(self.sent[(r.host_id, r.action)]),
                reason="try again",
            )
            for r in failed
        ]
        return plan
