"""The `hybrid` name builds the lead's HybridPlanner around an LLMPlanner (not a bare client)
and runs the desired-state suite with the scripted model; skipped when it is not importable."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.harness import plan_jobs, run_suite
from evals.planners import LLMSource, hybrid_available
from evals.scenario import load_scenarios

DESIRED = Path(__file__).resolve().parents[2] / "evals" / "scenarios" / "desired"
SCRIPTED = LLMSource(mode="live", client_factory="evals.scripted_desired:client", synthetic=True)


@pytest.mark.skipif(not hybrid_available(), reason="reaper.planners.hybrid is not importable")
def test_hybrid_runs_the_desired_suite_without_errors() -> None:
    scenarios = load_scenarios(DESIRED)
    results = run_suite(
        plan_jobs(scenarios, [("hybrid", "hybrid")], trials=1, source=SCRIPTED), processes=1
    )
    assert [r.error for r in results if r.error] == []
    assert all(r.world_resources for r in results)


@pytest.mark.skipif(not hybrid_available(), reason="reaper.planners.hybrid is not importable")
def test_hybrid_llm_calls_and_prompt_are_scored() -> None:
    # The hybrid nests its LLM's decision in its own: the scorecard must still count it.
    skew = [s for s in load_scenarios(DESIRED) if "fault:clock_skew" in s.tags]
    results = run_suite(
        plan_jobs(skew, [("hybrid", "hybrid")], trials=1, source=SCRIPTED), processes=1
    )
    assert all(r.llm_calls > 0 and r.prompt_hash for r in results)
    assert all(r.provenance == "scripted" and r.success for r in results)
