"""The eval harness closes the LLM clients its runs' planners hold (an HTTP pool, the
real-time thread, a llama-server), for the LLM planner and the hybrid alike."""

from __future__ import annotations

from pathlib import Path

from evals.harness import plan_jobs, run_job
from evals.scenario import Scenario, load_scenarios
from evals.scripted_desired import answer
from llm.testing import ScriptedClient
from reaper.planners.base import MissionPlanner
from reaper.planners.hybrid import HybridPlanner
from reaper.planners.llm import LLMPlanner

DESIRED = Path(__file__).resolve().parents[2] / "evals" / "scenarios" / "desired"


class _Tracked(ScriptedClient):
    def __init__(self) -> None:
        super().__init__(answer)
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def _run(wrap: type[HybridPlanner] | None) -> _Tracked:
    client = _Tracked()
    (scenario,) = load_scenarios(DESIRED, {"ds-control-9"})

    def factory(_scenario: Scenario, _seed: int) -> MissionPlanner:
        llm = LLMPlanner(client)
        return wrap(llm) if wrap is not None else llm

    (job,) = plan_jobs([scenario], [("llm", "llm")], trials=1)
    result = run_job(job, factory)
    assert result.error is None, result.error
    return client


def test_the_llm_planners_client_is_closed_once_after_the_run() -> None:
    assert _run(None).closed == 1


def test_the_hybrids_llm_client_is_closed_too() -> None:
    assert _run(HybridPlanner).closed == 1
