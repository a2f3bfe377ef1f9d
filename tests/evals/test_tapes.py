"""Tapes: recorded as deltas, rebuilt exactly, and replayed against another planner."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evals.cli import main
from evals.harness import plan_jobs, run_suite
from evals.planners import LLMSource, build_planner
from evals.scenario import Scenario
from evals.tapes import Tape, TapeHeader, TapeStep, counterfactual, load_tape, replay_states
from reaper.models import HostState, MissionState
from reaper.planners.rules import RuleBasedPlanner
from reaper.policy import PRESETS

from .weak_planners import DivergesAt

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _result(task_id: str, action: str, data: dict[str, object]) -> dict[str, object]:
    return {
        "task_id": task_id,
        "mission_id": "m",
        "host_id": "h1",
        "agent_type": "reaper-linux",
        "action": action,
        "attempt": 1,
        "status": "success",
        "data": data,
        "ts": (T0 + timedelta(seconds=1)).isoformat(),
    }


def _constructed() -> Tape:
    """One Linux host: discover, then baseline, then done — written by hand."""
    state = MissionState(
        mission_id="m",
        lab_type="t",
        hosts={"h1": HostState(host_id="h1", os="linux")},
        policy=PRESETS["standard"].model_dump(mode="json"),
    )
    planned = {"host_id": "h1", "params": {}, "reason": "r"}
    steps = [
        TapeStep(
            commit=1,
            ts=T0,
            step=1,
            decision={"planner": "rule", "step": 1},
            planned=[{"task_id": "m:1:0", "action": "linux.discover", **planned}],
        ),
        TapeStep(
            commit=2,
            ts=T0 + timedelta(seconds=1),
            step=2,
            results=[_result("m:1:0", "linux.discover", {"kernel": "6.1"})],
            decision={"planner": "rule", "step": 2},
            planned=[{"task_id": "m:2:0", "action": "linux.baseline", **planned}],
        ),
        TapeStep(
            commit=3,
            ts=T0 + timedelta(seconds=2),
            step=3,
            results=[_result("m:2:0", "linux.baseline", {"changed": 2})],
            decision={"planner": "rule", "step": 3},
            status={"to": "completed", "reason": "goal reached"},
        ),
    ]
    header = TapeHeader(mission_id="m", initial_state=state.model_dump(mode="json"))
    return Tape(header=header, steps=steps)


def test_constructed_tape_rebuilds_state_step_by_step() -> None:
    points = list(replay_states(_constructed()))
    assert [p.step for p in points] == [1, 2, 3]
    assert points[0].initial and not points[1].initial
    assert [r.action for r in points[1].results] == ["linux.discover"]
    # At step 3 the state is what the engine had: facts folded in, host baselined.
    host = points[2].state.hosts["h1"]
    assert host.stage.value == "baselined" and host.facts["kernel"] == "6.1"


@pytest.mark.parametrize("at", [2, 3])
def test_first_divergent_step_on_constructed_tape(at: int) -> None:
    tape = _constructed()
    same = asyncio.run(counterfactual(tape, RuleBasedPlanner()))
    assert same.first_divergent_step is None and len(same.steps) == 3
    diff = asyncio.run(counterfactual(tape, DivergesAt(at)))
    assert diff.first_divergent_step == at
    step = next(s for s in diff.steps if s.step == at)
    assert step.only_alternative == ["h1 linux.discover"] and step.only_recorded == []


def test_recorded_mission_tape_replays_against_planners(
    scenarios: list[Scenario], tmp_path: Path
) -> None:
    chosen = [s for s in scenarios if s.name in ("needs-prepare-hinted", "flaky-storm")]
    jobs = plan_jobs(chosen, [("rule", "rule"), ("llm", "llm")], trials=1, tape_dir=tmp_path)
    results = run_suite(jobs, processes=1)
    assert all(r.error is None for r in results)
    tapes = sorted(tmp_path.glob("*.tape.jsonl"))
    assert len(tapes) == 4
    for path in tapes:
        tape = load_tape(path)
        # Deltas only: the header holds the one full state.
        assert all("initial_state" not in line for line in path.read_text().splitlines()[1:])
        assert asyncio.run(counterfactual(tape, RuleBasedPlanner())).steps
    rule_tape = load_tape(tmp_path / "rule--flaky-storm-s300.tape.jsonl")
    assert asyncio.run(counterfactual(rule_tape, RuleBasedPlanner())).first_divergent_step is None
    llm_tape = load_tape(tmp_path / "llm--needs-prepare-hinted-s800.tape.jsonl")
    # The LLM prepares first where the facts say so; the rule planner baselines.
    div = asyncio.run(counterfactual(llm_tape, RuleBasedPlanner()))
    assert div.first_divergent_step is not None
    first = next(s for s in div.steps if not s.same)
    assert any(".prepare" in t for t in first.only_recorded)
    assert any(".baseline" in t for t in first.only_alternative)
    # The same LLM planner, fed the rebuilt states, asks exactly the recorded prompts.
    scenario = chosen[0] if chosen[0].name == "needs-prepare-hinted" else chosen[1]
    llm = build_planner(
        "llm", scenario.lab_file(800), seed=800, scenario=scenario.name, source=LLMSource()
    )
    assert asyncio.run(counterfactual(llm_tape, llm)).first_divergent_step is None


def test_cli_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tape = _constructed()
    path = tmp_path / "m.tape.jsonl"
    path.write_text(
        "\n".join([tape.header.model_dump_json(), *(s.model_dump_json() for s in tape.steps)])
        + "\n"
    )
    assert main(["replay", str(path), "--planner", "rule", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["first_divergent_step"] is None
    assert (
        main(["replay", str(path), "--planner", "tests.evals.weak_planners:Rediscovers", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["first_divergent_step"] == 2
    assert main(["replay", str(path), "--planner", "rule"]) == 0
    assert "no divergence" in capsys.readouterr().out


def test_every_shipped_mission_rebuilds_exactly(scenarios: list[Scenario], tmp_path: Path) -> None:
    """Replaying each tape against the planner that made it reproduces every decision: for the
    LLM planner that means byte-identical prompts (the cassette would miss otherwise)."""
    jobs = plan_jobs(scenarios, [("rule", "rule"), ("llm", "llm")], trials=1, tape_dir=tmp_path)
    assert all(r.error is None for r in run_suite(jobs))
    by_name = {s.name: s for s in scenarios}
    for path in sorted(tmp_path.glob("*.tape.jsonl")):
        tape = load_tape(path)
        name, seed = str(tape.header.meta["scenario"]), int(tape.header.meta["seed"])
        planner = build_planner(
            str(tape.header.meta["planner"]),
            by_name[name].lab_file(seed),
            seed=seed,
            scenario=name,
            source=LLMSource(),
        )
        div = asyncio.run(counterfactual(tape, planner))
        assert div.steps and div.first_divergent_step is None, path.name
