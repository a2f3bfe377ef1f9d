"""The rule-based planner: discover every host, then walk each one to the goal.

Rules, per finished result:
- discover succeeded → baseline (a missing prerequisite shows as PREREQ_MISSING), unless the
  goal is only `discovered`;
- prepare succeeded → baseline;
- baseline failed with PREREQ_MISSING → prepare, then baseline again;
- a host fault that will not go away by itself (auth failure, host-key problem, permission
  denied) → stop planning for that host: repeating it only locks the host;
- any other failure → re-discover once the host answers again, then resume from its stage,
  while the host has failures to spare (the engine locks it at `max_failures`).
Work is O(results), never O(hosts): only hosts named in the batch are looked at.
"""

from __future__ import annotations

from collections.abc import Sequence

from reaper.models import MissionState, PlannedTask, ResultEvent, Stage
from reaper.planners.base import Plan, planned_task
from reaper.planners.converge import Converger

__all__ = ["FATAL_ERRORS", "RuleBasedPlanner"]

FATAL_ERRORS = frozenset(
    {
        "AUTH_FAILED",
        "HOST_KEY_MISMATCH",
        "HOST_KEY_UNKNOWN",
        "PERMISSION_DENIED",
        "CERT_INVALID",
        "INSECURE_TRANSPORT",
        "UNSUPPORTED_TRANSPORT",
        "UNKNOWN_HOST",
        "UNKNOWN_ACTION",
        "CREDENTIALS_MISSING",
        "CONFIG_INVALID",
        "AUTH_UNSUPPORTED",
        "TLS_ERROR",
        "INVALID_PARAMS",
        "UNSUPPORTED_COMMAND",
        "SCRIPT_TOO_LONG",
    }
)


class RuleBasedPlanner:
    """Stage goals by the rules above; desired-state missions by `Converger`."""

    name = "rule"

    def __init__(self) -> None:
        self._converger = Converger()

    async def initial_tasks(self, state: MissionState) -> Plan:
        if state.converges:
            return await self._converger.initial_tasks(state)
        tasks = [
            planned_task(h.host_id, f"{h.os}.discover", "start: collect facts")
            for h in state.hosts.values()
            if not h.locked and h.stage.rank < Stage.DISCOVERED.rank
        ]
        tasks += [
            t
            for h in state.hosts.values()
            if not h.locked and h.stage.rank >= Stage.DISCOVERED.rank
            for t in self._advance(state, h.host_id, "resume")
        ]
        return Plan(tasks=tasks, decision={"planner": self.name, "rules": "initial"})

    replans_after_refusal = True  # desired state only: see Converger.replan_hosts

    async def replan_hosts(self, state: MissionState, host_ids: Sequence[str]) -> Plan:
        if not state.converges:
            return Plan()
        return await self._converger.replan_hosts(state, host_ids)

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        if state.converges:
            return await self._converger.next_tasks(state, results)
        tasks: list[PlannedTask] = []
        seen: set[str] = set()
        for r in results:
            if r.host_id in seen:
                continue
            seen.add(r.host_id)
            tasks.extend(self._after(state, r))
        return Plan(tasks=tasks, decision={"planner": self.name, "results": len(results)})

    def _after(self, state: MissionState, r: ResultEvent) -> list[PlannedTask]:
        host = state.hosts.get(r.host_id)
        if host is None or host.locked or host.current_action is not None:
            return []
        verb = r.action.partition(".")[2]
        if r.ok:
            return self._advance(state, host.host_id, f"{verb} succeeded")
        code = r.error_code or "ERROR"
        if code in FATAL_ERRORS:
            return []
        if code == "PREREQ_MISSING" and verb == "baseline":
            return [
                planned_task(
                    host.host_id,
                    f"{host.os}.prepare",
                    "baseline needs prerequisites: prepare first",
                )
            ]
        if host.failure_count >= host.max_failures - 1:
            return []  # one more failure would lock it: leave the host as it is
        if verb == "discover":
            return [
                planned_task(
                    host.host_id,
                    f"{host.os}.discover",
                    f"discover failed ({code}): try again",
                )
            ]
        return [
            planned_task(
                host.host_id,
                f"{host.os}.discover",
                f"{verb} failed ({code}): re-discover before retrying",
            )
        ]

    @staticmethod
    def _advance(state: MissionState, host_id: str, why: str) -> list[PlannedTask]:
        host = state.hosts[host_id]
        if host.stage.rank >= state.goal.rank:
            return []
        if host.stage is Stage.NEW:
            return [planned_task(host_id, f"{host.os}.discover", f"{why}: collect facts")]
        return [
            planned_task(
                host_id,
                f"{host.os}.baseline",
                f"{why}: apply baseline toward goal {state.goal.value}",
            )
        ]
