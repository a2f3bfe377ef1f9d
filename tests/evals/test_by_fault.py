"""The per-fault-type scorecard and every row's provenance: who wins each fault type on the
world, the regret against each scenario's best planner, and "synthetic" wherever answers
were scripted (never a model's dollar cost, never an absolute path)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from evals.by_fault import FaultRow, fault_rows
from evals.cli import main
from evals.harness import plan_jobs, run_suite
from evals.planners import DEFAULT_FIXTURES, LLMSource
from evals.provenance import SCRIPTED, provenance
from evals.scenario import Scenario, load_scenarios
from evals.scorecard import RunResult

DESIRED = Path(__file__).resolve().parents[2] / "evals" / "scenarios" / "desired"


@pytest.fixture(scope="module")
def rows() -> list[FaultRow]:
    scenarios: list[Scenario] = load_scenarios(DESIRED)
    planners = [("rule", "rule"), ("check", "evals.weak:CheckModeOnly")]
    planners += [("skip", "evals.weak:SkipsDiscovery")]
    results: list[RunResult] = run_suite(plan_jobs(scenarios, planners, trials=1), processes=2)
    return fault_rows(results)


def test_one_row_per_fault_and_planner_with_a_winner(rows: list[FaultRow]) -> None:
    faults = {r.fault for r in rows}
    assert len(faults) >= 10 and "none" in faults
    for fault in faults:
        ours = [r for r in rows if r.fault == fault]
        assert sorted(r.planner for r in ours) == ["check", "rule", "skip"]
        assert any(r.wins for r in ours)
    # no fault: the converger is the best planner of every such scenario, so its regret is 0
    # and check mode's (same discovery, more tasks, nothing converged) is not
    none = {r.planner: r for r in rows if r.fault == "none"}
    assert none["rule"].wins and none["rule"].regret_tasks == 0
    assert none["check"].regret_tasks != 0


def test_doing_nothing_never_wins_a_fault_type(rows: list[FaultRow]) -> None:
    # SkipsDiscovery issues no task and converges nothing: fewest tasks must not make it best.
    assert not any(r.wins for r in rows if r.planner == "skip")
    wins = {r.fault for r in rows if r.wins and r.planner == "rule"}
    assert {"disk_full", "none"} <= wins


def test_provenance_scripted_recorded_and_none(tmp_path: Path) -> None:
    scripted = LLMSource(mode="live", client_factory="evals.scripted_desired:client")
    assert provenance(scripted, "x") == SCRIPTED
    # the shipped cassettes were recorded from the scripted "sensible" model
    assert provenance(LLMSource(path=DEFAULT_FIXTURES), "happy-path") == SCRIPTED
    header = {
        "type": "header",
        "schema_version": 1,
        "synthetic": False,
        "created": "2026-12-01T10:00:00Z",
        "provider": "anthropic",
        "model": "claude-x",
    }
    (tmp_path / "live.jsonl.gz").write_bytes(gzip.compress(json.dumps(header).encode() + b"\n"))
    got = provenance(LLMSource(path=tmp_path), "live")
    assert got.startswith("recorded: claude-x, ") and got.endswith(", 2026-12-01")
    assert provenance(LLMSource(path=tmp_path), "absent") == ""


def test_scripted_report_says_synthetic_per_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--scenarios",
            str(DESIRED),
            "--only",
            "ds-disk-full-0,ds-control-9",
            "--planners",
            "rule,llm",
            "--client",
            "evals.scripted_desired:client",
            "--trials",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    console = capsys.readouterr().out
    assert "synthetic" in console and "unknown" not in console
    md = (tmp_path / "report.md").read_text()
    assert "## Per fault type" in md and "| disk_full | llm | synthetic (scripted) |" in md
    assert str(tmp_path) not in md and "/work/" not in md
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {(r["planner"], r["provenance"]) for r in rows} == {("rule", ""), ("llm", SCRIPTED)}
    assert {r["fault"] for r in rows} == {"disk_full", "none"}


def test_errored_runs_are_no_evidence(rows: list[FaultRow]) -> None:
    ok = RunResult(
        planner="p",
        scenario="s",
        scenario_hash="h",
        seed=1,
        trial=0,
        fault="disk_full",
        world_resources=2,
        world_converged=2,
        world_collateral=0,
        success=True,
    )
    missed = ok.model_copy(update={"error": "ReplayMissError: …", "success": False})
    [row] = fault_rows([ok, missed])
    assert (row.runs, row.successes) == (1, 1)
