"""The hybrid planner: the rule converger does the routine work; the LLM is asked only about
failures the rules do not know, and only about the hosts concerned.

A desired-state failure the converger has no fix for (a class outside `KNOWN_RECOVERIES`,
or a known fix already tried) *escalates* its host: from then on that host's tasks come from
the LLM (`LLMPlanner.plan_hosts`, shown only the escalated hosts), which may diagnose, fix the
cause and ensure the resource again. The host goes back to the rules as soon as none of its
escalated resources is failed any more (the fix worked), or when the LLM proposes nothing for
it (it cannot be fixed: the resource stays failed, its dependents blocked, the rest goes on).
Host faults that no plan fixes (authentication, host keys) never escalate. When the LLM's
budget runs out the rules carry on alone; the mission is never halted by the hybrid.

Stage missions are the rules' alone. Few calls, low cost: the default suggested for real labs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from reaper.models import MissionState, PlannedTask, ResultEvent
from reaper.planners.base import Plan
from reaper.planners.converge import FATAL_FOR_HOST, known_fix
from reaper.planners.llm import LLMPlanner
from reaper.planners.rules import RuleBasedPlanner

__all__ = ["HybridPlanner"]

log = logging.getLogger(__name__)

# A failure the converger handles itself, or one no plan can fix: never escalated.
_NOT_ESCALATED = FATAL_FOR_HOST | {"REFUSED"}


class HybridPlanner:
    """`MissionPlanner`: rules first, the LLM for the failures they do not know."""

    name = "hybrid"
    replans_after_refusal = True

    def __init__(self, llm: LLMPlanner, rules: RuleBasedPlanner | None = None) -> None:
        self.llm = llm
        self.rules = rules or RuleBasedPlanner()
        # host → the declared resources (`KIND/NAME`) whose failure put it in the LLM's hands
        self.escalated: dict[str, set[str]] = {}
        self.llm_off = ""  # why the LLM is no longer asked (its budget ran out)

    # -- MissionPlanner ------------------------------------------------------------------

    async def initial_tasks(self, state: MissionState) -> Plan:
        plan = await self.rules.initial_tasks(state)
        return Plan(tasks=plan.tasks, note=plan.note, decision=self._decision(plan.decision))

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        rules = await self.rules.next_tasks(state, results)
        if not state.converges or self.llm_off:
            return Plan(tasks=rules.tasks, note=rules.note, decision=self._decision(rules.decision))
        released = self._release_fixed(state)
        self._escalate(state, results)
        active = sorted(
            h
            for h in self.escalated
            if (host := state.hosts.get(h)) is not None
            and not host.locked
            and host.current_action is None
        )
        if not active:
            note = f"rules resume on {', '.join(released)}" if released else rules.note
            return Plan(tasks=rules.tasks, note=note, decision=self._decision(rules.decision))
        asked = await self.llm.plan_hosts(state, results, active)
        if asked.halt:
            self.llm_off = asked.note or "LLM budget exhausted"
            log.warning("mission %s: %s; the rules go on alone", state.mission_id, self.llm_off)
            self.escalated.clear()
            return Plan(
                tasks=rules.tasks,
                note=f"{self.llm_off}; the rules go on alone",
                decision=self._decision(rules.decision, asked.decision),
            )
        by_llm = {t.host_id: t for t in asked.tasks if t.host_id in active}
        for host_id in active:
            if host_id not in by_llm:
                # The LLM has nothing more for this host: what is failed stays failed.
                self.escalated.pop(host_id, None)
        tasks: list[PlannedTask] = [t for t in rules.tasks if t.host_id not in by_llm]
        tasks += [by_llm[h] for h in sorted(by_llm)]
        note = asked.note or rules.note
        return Plan(tasks=tasks, note=note, decision=self._decision(rules.decision, asked.decision))

    async def replan_hosts(self, state: MissionState, host_ids: Sequence[str]) -> Plan:
        """After a refusal: the rules go on with their hosts' other resources; an escalated
        host's LLM is asked again, and sees the refusal in the host's history."""
        mine = [h for h in host_ids if h in self.escalated]
        rules = [h for h in host_ids if h not in self.escalated]
        plan = await self.rules.replan_hosts(state, rules) if rules else Plan()
        if not mine or self.llm_off:
            return plan
        asked = await self.llm.plan_hosts(state, [], mine)
        tasks = [*plan.tasks, *(t for t in asked.tasks if t.host_id in mine)]
        decision = self._decision(plan.decision, asked.decision)
        return Plan(tasks=tasks, note=asked.note, decision=decision)

    # -- usage: the LLM's ----------------------------------------------------------------

    def usage_summary(self) -> dict[str, Any]:
        return self.llm.usage_summary()

    def set_budget(self, limits: dict[str, int | float]) -> None:
        self.llm.set_budget(limits)
        self.llm_off = ""

    def restore_usage(self, decisions: Sequence[dict[str, Any]]) -> None:
        self.llm.restore_usage(decisions)

    # -- escalation ----------------------------------------------------------------------

    def _escalate(self, state: MissionState, results: Sequence[ResultEvent]) -> None:
        for r in results:
            if r.ok or ".ensure_" not in r.action or r.error_code in _NOT_ESCALATED:
                continue
            host = state.hosts.get(r.host_id)
            rid = r.data.get("resource")
            if host is None or not isinstance(rid, str) or rid not in host.resources:
                continue  # an LLM fix on an undeclared resource: the LLM sees its result
            rs = host.resources[rid]
            if rs.outcome != "failed":
                continue
            if known_fix(rs, rid) is not None:
                continue  # the converger's own fix comes first
            self.escalated.setdefault(r.host_id, set()).add(rid)

    def _release_fixed(self, state: MissionState) -> list[str]:
        """Hosts whose escalated resources are all no longer failed: back to the rules."""
        released = []
        for host_id, rids in list(self.escalated.items()):
            host = state.hosts.get(host_id)
            if host is None or all(
                (rs := host.resources.get(rid)) is None or rs.outcome != "failed" for rid in rids
            ):
                del self.escalated[host_id]
                released.append(host_id)
        return released

    def _decision(self, rules: dict[str, Any], llm: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"planner": self.name, "rules": rules}
        if llm is not None:
            out["llm"] = llm
        if self.escalated:
            out["escalated"] = {h: sorted(r) for h, r in sorted(self.escalated.items())}
        return out
