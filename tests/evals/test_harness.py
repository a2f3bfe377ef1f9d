"""The suite itself: deterministic, fast, and sensitive to a weakened planner."""

from __future__ import annotations

from dataclasses import replace

import pytest

from evals.harness import plan_jobs, run_suite
from evals.planners import LLMSource
from evals.scenario import Scenario
from evals.scorecard import RunResult
from reaper.planners.base import MissionPlanner

from .weak_planners import IgnoresPrereqs, NeverRetries, Rediscovers, Stubborn


def _dump(results: list[RunResult]) -> list[dict[str, object]]:
    return [r.model_dump(exclude={"code_version"}) for r in results]


def test_same_suite_twice_gives_identical_results(
    subset: list[Scenario], subset_results: list[RunResult]
) -> None:
    again = run_suite(plan_jobs(subset, [("rule", "rule"), ("llm", "llm")], trials=2), processes=2)
    assert _dump(again) == _dump(subset_results)
    assert all(r.error is None for r in again)
    # Trials differ from each other (seeded variants), not from their replays.
    llm = [r for r in again if r.planner == "llm" and r.scenario == "flaky-storm"]
    assert len({(r.steps, r.input_tokens) for r in llm}) > 1


def test_shipped_suite_replays_offline(scenarios: list[Scenario]) -> None:
    # How fast it replays is a figure for `reaper eval` to print, not a timed assertion here.
    results = run_suite(plan_jobs(scenarios, [("rule", "rule"), ("llm", "llm")], trials=3))
    assert len(results) == len(scenarios) * 2 * 3
    assert [r for r in results if r.error] == []
    assert all(r.success for r in results), [
        (r.planner, r.scenario, r.seed, r.stop) for r in results if not r.success
    ]
    llm = [r for r in results if r.planner == "llm"]
    assert all(r.llm_calls > 0 and r.model and r.prompt_hash for r in llm)
    assert any(r.invalid_outputs > 0 for r in llm)  # the synthetic model slips sometimes


def _scores(scenarios: list[Scenario], name: str, planner: type[MissionPlanner]) -> list[RunResult]:
    chosen = [s for s in scenarios if s.name == name]
    jobs = plan_jobs(chosen, [(planner.name, "x")], trials=3)
    return run_suite(jobs, factory=lambda _s, _seed: planner())


@pytest.mark.parametrize(
    ("scenario", "weak", "worse"),
    [
        # Never retrying leaves a host that came back short of the goal.
        ("host-down-recovers", NeverRetries, ("success", "goal_pct")),
        # Needless re-discovery is redundant work (and more steps).
        ("happy-path", Rediscovers, ("redundant_tasks", "wasted_tasks", "tasks_issued")),
        # Ignoring PREREQ_MISSING burns failures on baselines that cannot succeed.
        ("needs-prepare", IgnoresPrereqs, ("success", "failed_tasks", "goal_pct")),
        # Retrying a fatal error locks a host that needed no lock.
        ("auth-failure", Stubborn, ("success", "hosts_locked", "failed_tasks")),
    ],
)
def test_weakened_planner_scores_worse(
    scenarios: list[Scenario],
    scenario: str,
    weak: type[MissionPlanner],
    worse: tuple[str, ...],
) -> None:
    from reaper.planners.rules import RuleBasedPlanner

    good = _scores(scenarios, scenario, RuleBasedPlanner)
    bad = _scores(scenarios, scenario, weak)
    higher_is_better = {"success", "goal_pct"}
    for metric in worse:
        g = sum(float(getattr(r, metric)) for r in good) / len(good)
        b = sum(float(getattr(r, metric)) for r in bad) / len(bad)
        if metric in higher_is_better:
            assert b < g, (metric, g, b)
        else:
            assert b > g, (metric, g, b)


def test_the_llm_planner_runs_in_lockstep_like_reaper_run(scenarios: list[Scenario]) -> None:
    from evals.harness import _settings

    scenario = next(s for s in scenarios if s.name == "happy-path")
    [llm, rule] = plan_jobs([scenario], [("llm", "llm"), ("rule", "rule")], trials=1)
    live = replace(llm, source=LLMSource(mode="live"))
    state = scenario.lab_file(0).to_state("m")
    assert _settings(live, state).lockstep
    assert not _settings(rule, state).lockstep
    # the shipped cassettes are recorded in lockstep too, so their replay runs so
    assert _settings(llm, state).lockstep
    unlocked = replace(llm, source=LLMSource(lockstep=False))
    assert not _settings(unlocked, state).lockstep  # a cassette recorded without it
