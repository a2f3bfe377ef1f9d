"""Shared fixtures: the shipped scenarios, and one replay of the shipped suite per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.harness import plan_jobs, run_suite
from evals.scenario import Scenario, load_scenarios
from evals.scorecard import RunResult

SCENARIOS = Path(__file__).resolve().parents[2] / "evals" / "scenarios"
# A small, varied subset for tests that run the suite more than once.
SUBSET = {"happy-path", "host-down-recovers", "needs-prepare", "auth-failure", "flaky-storm"}


@pytest.fixture(scope="session")
def scenarios() -> list[Scenario]:
    return load_scenarios(SCENARIOS)


@pytest.fixture(scope="session")
def subset(scenarios: list[Scenario]) -> list[Scenario]:
    return [s for s in scenarios if s.name in SUBSET]


@pytest.fixture(scope="session")
def subset_results(subset: list[Scenario]) -> list[RunResult]:
    jobs = plan_jobs(subset, [("rule", "rule"), ("llm", "llm")], trials=2)
    return run_suite(jobs, processes=1)
