"""A replay that cannot find its answer stops with a clear error, never a silent fallback."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from evals.cli import main
from evals.harness import plan_jobs, run_suite
from evals.planners import DEFAULT_FIXTURES, LLMSource, cassette_for
from evals.scenario import Scenario


def _happy(scenarios: list[Scenario]) -> list[Scenario]:
    return [s for s in scenarios if s.name == "happy-path"]


def test_prompt_change_is_a_cassette_miss(scenarios: list[Scenario], tmp_path: Path) -> None:
    # Another scenario's cassette: every request (mission, hosts, facts) differs.
    wrong = tmp_path / "happy-path.jsonl.gz"
    shutil.copy(cassette_for(DEFAULT_FIXTURES, "slow-host"), wrong)
    source = LLMSource(mode="replay", path=tmp_path)
    [result] = run_suite(plan_jobs(_happy(scenarios), [("llm", "llm")], trials=1, source=source))
    assert result.stop == "error"
    assert result.error is not None
    assert "ReplayMissError" in result.error and "no recorded answer" in result.error
    assert "differs in: messages" in result.error  # says what changed


def test_more_trials_than_recorded_cycle_the_recorded_seeds(scenarios: list[Scenario]) -> None:
    results = run_suite(plan_jobs(_happy(scenarios), [("llm", "llm")], trials=5), processes=1)
    assert [r.error for r in results] == [None] * 5
    base = int(_happy(scenarios)[0].lab["seed"])
    assert sorted(r.seed - base for r in results) == [0, 0, 1, 1, 2]


def test_a_cassette_of_one_seed_replays_that_seed_every_trial(
    scenarios: list[Scenario], tmp_path: Path
) -> None:
    # A user's own recording of one trial (a slow local model): keep the header and the
    # first seed's answers only.
    lines = gzip.decompress(cassette_for(DEFAULT_FIXTURES, "happy-path").read_bytes()).splitlines()
    first = json.loads(lines[1])["request"]["seed"]
    kept = [lines[0], *(line for line in lines[1:] if json.loads(line)["request"]["seed"] == first)]
    (tmp_path / "happy-path.jsonl").write_bytes(b"\n".join(kept) + b"\n")
    source = LLMSource(mode="replay", path=tmp_path)
    results = run_suite(plan_jobs(_happy(scenarios), [("llm", "llm")], trials=3, source=source))
    assert [(r.error, r.seed) for r in results] == [(None, first)] * 3


def test_a_seed_outside_the_recording_is_a_miss(scenarios: list[Scenario]) -> None:
    jobs = plan_jobs(_happy(scenarios), [("llm", "llm")], trials=4, replay_seeds=4)
    results = run_suite(jobs, processes=1)
    assert [r.error is None for r in results] == [True, True, True, False]


def test_missing_cassette_names_the_file(scenarios: list[Scenario], tmp_path: Path) -> None:
    source = LLMSource(mode="replay", path=tmp_path)
    [result] = run_suite(plan_jobs(_happy(scenarios), [("llm", "llm")], trials=1, source=source))
    assert result.error is not None and "happy-path.jsonl" in result.error


def test_cli_exits_2_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--planners",
            "llm",
            "--only",
            "happy-path",
            "--trials",
            "1",
            "--replay",
            str(tmp_path),
            "--out",
            "",
        ]
    )
    assert code == 2
    assert "no cassette" in capsys.readouterr().err


def test_record_then_replay_round_trip(tmp_path: Path) -> None:
    common = ["--planners", "llm", "--only", "goal-discovered", "--trials", "2", "--json"]
    recorded = tmp_path / "rec"
    assert (
        main(
            [
                *common,
                "--record",
                str(recorded),
                "--client",
                "evals.sensible:sensible_client",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    assert (recorded / "goal-discovered.jsonl").exists()
    assert main([*common, "--replay", str(recorded), "--out", str(tmp_path / "b")]) == 0
    assert main([*common, "--out", str(tmp_path / "c")]) == 0  # the shipped fixtures

    def lines(name: str) -> list[str]:
        return (tmp_path / name / "results.jsonl").read_text().splitlines()

    assert lines("a") == lines("b")
    # The shipped cassettes are recorded in lockstep now (SHIPPED_FIXTURES_LOCKSTEP), like a
    # fresh recording and `reaper run --planner llm`: the same scripted model plans in the
    # same steps from either.
    steps = [json.loads(line)["steps"] for line in (*lines("a"), *lines("c"))]
    assert steps[:2] == steps[2:]
