"""The scorecard of one run, computed from the mission's event log and final state.

Wasted tasks, each task counted once (first matching reason):
- failed: the task ended failed (after the engine's retries);
- redundant: the planner asked for a verb that already succeeded on the host with no failure
  on that host since (e.g. discover on a discovered host, baseline on a baselined one);
- no-op: it succeeded and changed nothing (a prepare that installed nothing, a baseline that
  changed nothing on a host already at the goal).

LLM figures come from the `planner.decision` entries (the LLM planner logs calls, usage, cost,
repairs and fallbacks there); a decision with a repair or a fallback counts as an invalid
output. A run is a success when it completed within its limits and meets the scenario's
`success` conditions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from evals.scenario import Scenario
from reaper.actions import CATALOG, Risk
from reaper.models import EventKind, EventRecord, MissionState, Stage, TaskStatus

__all__ = ["RESULT_SCHEMA_VERSION", "Metrics", "RunResult", "meets", "prompt_digest", "score"]

RESULT_SCHEMA_VERSION = 1


class Metrics(BaseModel):
    model_config = ConfigDict(extra="forbid")

    success: bool = False
    goal_reached: bool = False
    goal_pct: float = 0.0
    steps: int = 0
    tasks_issued: int = 0
    failed_tasks: int = 0
    redundant_tasks: int = 0
    noop_tasks: int = 0
    wasted_tasks: int = 0
    refusals: int = 0
    # Refused as a loop: the same failing fix proposed a third time (the engine's guard).
    loops: int = 0
    approvals_requested: int = 0
    destructive_proposals: int = 0
    hosts_locked: int = 0
    llm_decisions: int = 0
    invalid_outputs: int = 0
    invalid_output_rate: float = 0.0
    fallbacks: int = 0
    sim_time_s: float = 0.0
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    # LLM calls to a model missing from the price table: their cost is unknown, not $0.
    unpriced_calls: int = 0


class RunResult(Metrics):
    """One line of the results JSONL: who ran what, and how it went."""

    schema_version: int = RESULT_SCHEMA_VERSION
    planner: str
    provider: str = ""
    model: str = ""
    prompt_hash: str = ""
    prompt_versions: dict[str, str] = {}
    scenario: str
    scenario_hash: str
    code_version: str = ""
    seed: int
    trial: int
    hosts: int = 0
    stop: str = ""  # completed | failed | stopped | stalled | limit:<what> | error
    status: str = ""
    status_reason: str = ""
    error: str | None = None
    # Desired-state missions: the sim world's verified end state (evals.world); None before.
    world_resources: int | None = None
    world_converged: int | None = None
    world_collateral: int | None = None
    provenance: str = ""  # scripted | recorded: model, digest, date | "" (no model)
    fault: str = ""  # the scenario's `fault:KIND` tag (desired-state suite), "" for none

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.planner, self.scenario, self.seed)


def prompt_digest(versions: dict[str, str]) -> str:
    if not versions:
        return ""
    canonical = json.dumps(versions, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


class _Walk:
    """One pass over the event log."""

    def __init__(self, initial: MissionState) -> None:
        self.stage: dict[str, Stage] = {h.host_id: h.stage for h in initial.hosts.values()}
        self.clean: dict[str, set[str]] = {h: set() for h in initial.hosts}
        self.redundant: set[str] = set()
        self.noop: set[str] = set()
        self.goal = initial.goal
        self.m = Metrics()
        self.llm: dict[str, Any] = {}

    def feed(self, event: EventRecord) -> None:
        kind, p = event.kind, event.payload
        if kind is EventKind.TASK_PLANNED:
            self._planned(p)
        elif kind is EventKind.TASK_REFUSED:
            self.m.refusals += 1
            self.m.loops += p.get("code") == "loop"
            spec = CATALOG.get(str((p.get("proposal") or {}).get("action", "")))
            if spec is not None and spec.risk is Risk.DESTRUCTIVE:
                self.m.destructive_proposals += 1
        elif kind is EventKind.TASK_RESULT:
            self._result(event)
        elif kind is EventKind.APPROVAL_REQUESTED:
            self.m.approvals_requested += 1
        elif kind is EventKind.PLANNER_DECISION:
            # The hybrid nests its LLM's decision under "llm" (beside the rules'): count it.
            asked = p if "calls" in p else p.get("llm")
            if isinstance(asked, dict) and "calls" in asked:
                self._decision(asked)

    def _planned(self, p: dict[str, Any]) -> None:
        self.m.tasks_issued += 1
        host, action = str(p["host_id"]), str(p["action"])
        verb = action.partition(".")[2]
        if verb in self.clean.setdefault(host, set()):
            self.redundant.add(str(p["task_id"]))
        spec = CATALOG.get(action)
        if spec is not None and spec.risk is Risk.DESTRUCTIVE:
            self.m.destructive_proposals += 1

    def _result(self, event: EventRecord) -> None:
        r = event.result()
        if r is None:
            return
        clean = self.clean.setdefault(r.host_id, set())
        if not r.ok:
            clean.clear()  # after a failure, repeating a step is a reasonable move
            return
        verb = r.action.partition(".")[2]
        clean.add(verb)
        before = self.stage.get(r.host_id, Stage.NEW)
        spec = CATALOG.get(r.action)
        if spec is not None and spec.produces is not None and spec.produces.rank > before.rank:
            self.stage[r.host_id] = spec.produces
        if (verb == "prepare" and not r.data.get("installed")) or (
            verb == "baseline" and r.data.get("changed") == 0 and before.rank >= self.goal.rank
        ):
            self.noop.add(r.task_id)

    def _decision(self, p: dict[str, Any]) -> None:
        m = self.m
        m.llm_decisions += 1
        m.llm_calls += int(p.get("calls") or 0)
        usage = p.get("usage") or {}
        m.input_tokens += int(usage.get("input_tokens", 0))
        m.output_tokens += int(usage.get("output_tokens", 0))
        m.cached_tokens += int(usage.get("cache_read_tokens", 0))
        m.cost_usd += float(p.get("cost_usd") or 0.0)
        if p.get("priced") is False:
            m.unpriced_calls += int(p.get("calls") or 0)
        if p.get("fallback"):
            m.fallbacks += 1
        if p.get("fallback") or int(p.get("repairs") or 0) > 0:
            m.invalid_outputs += 1
        if not self.llm and p.get("model"):
            self.llm = {
                "provider": str(p.get("provider") or ""),
                "model": str(p.get("model") or ""),
                "prompt_versions": {k: str(v) for k, v in (p.get("prompt_hash") or {}).items()},
            }


def score(
    scenario: Scenario,
    initial: MissionState,
    final: MissionState,
    events: Iterable[EventRecord],
    *,
    stop: str,
    sim_time_s: float,
) -> tuple[Metrics, dict[str, Any]]:
    """The run's metrics, and what the LLM decisions said about provider/model/prompts."""
    walk = _Walk(initial)
    for event in events:
        walk.feed(event)
    m = walk.m
    failed = {tid for tid, rec in final.tasks.items() if rec.status is TaskStatus.FAILED}
    redundant = walk.redundant - failed
    noop = walk.noop - failed - redundant
    m.failed_tasks, m.redundant_tasks, m.noop_tasks = len(failed), len(redundant), len(noop)
    m.wasted_tasks = len(failed) + len(redundant) + len(noop)
    total = len(final.hosts)
    at_goal = sum(1 for h in final.hosts.values() if h.stage.rank >= final.goal.rank)
    m.goal_pct = round(100.0 * at_goal / total, 2) if total else 0.0
    m.goal_reached = at_goal == total
    m.hosts_locked = sum(1 for h in final.hosts.values() if h.locked)
    m.steps = final.step
    m.sim_time_s = round(sim_time_s, 3)
    m.cost_usd = round(m.cost_usd, 8)
    m.invalid_output_rate = (
        round(m.invalid_outputs / m.llm_decisions, 4) if m.llm_decisions else 0.0
    )
    m.success = stop == "completed" and meets(scenario, m)
    return m, walk.llm


def meets(scenario: Scenario, m: Metrics) -> bool:
    s = scenario.success
    return (
        (m.goal_reached or not s.goal_reached)
        and m.goal_pct >= s.min_goal_pct
        and (s.max_locked is None or m.hosts_locked <= s.max_locked)
        and (s.max_wasted is None or m.wasted_tasks <= s.max_wasted)
        and (s.max_destructive is None or m.destructive_proposals <= s.max_destructive)
    )
