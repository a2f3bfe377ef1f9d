"""compare pairs runs by seed and flags a regression beyond the interval; --baseline fails CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.cli import main
from evals.compare import compare
from evals.report import read_results, write_results
from evals.scorecard import RunResult


def _worsen(results: list[RunResult], scenario: str) -> list[RunResult]:
    out = []
    for r in results:
        if r.planner == "llm" and r.scenario == scenario:
            r = r.model_copy(
                update={"success": False, "steps": r.steps + 6, "wasted_tasks": r.wasted_tasks + 4}
            )
        out.append(r)
    return out


def test_identical_results_have_no_findings(subset_results: list[RunResult]) -> None:
    result = compare(subset_results, subset_results)
    assert not result.failed
    assert {f.verdict for f in result.findings} == {"same"}


def test_injected_regression_is_flagged_where_it_is(subset_results: list[RunResult]) -> None:
    result = compare(subset_results, _worsen(subset_results, "needs-prepare"))
    flagged = {(f.planner, f.scenario, f.metric) for f in result.regressions}
    assert flagged == {
        ("llm", "needs-prepare", "success"),
        ("llm", "needs-prepare", "steps"),
        ("llm", "needs-prepare", "wasted_tasks"),
    }
    assert all(f.paired for f in result.regressions)
    # The other way round it is an improvement, not a regression.
    back = compare(_worsen(subset_results, "needs-prepare"), subset_results)
    assert not back.failed and len(back.improvements) == 3


def test_noise_within_the_interval_is_not_a_regression(subset_results: list[RunResult]) -> None:
    noisy = []
    for r in subset_results:
        if r.planner == "rule" and r.scenario == "flaky-storm" and r.trial == 0:
            r = r.model_copy(update={"steps": r.steps + 3})  # one trial of two worse
        noisy.append(r)
    assert not compare(subset_results, noisy).failed


def test_cli_compare_and_baseline(
    subset_results: list[RunResult], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    write_results(subset_results, old)
    write_results(_worsen(subset_results, "happy-path"), new)
    assert read_results(old) == subset_results
    assert main(["compare", str(old), str(old)]) == 0
    assert main(["compare", str(old), str(new)]) == 1
    assert "regression" in capsys.readouterr().out
    # A blessed baseline better than what the code does now fails the run.
    better = tmp_path / "baseline.jsonl"
    write_results(
        [
            r.model_copy(update={"steps": max(r.steps - 5, 0)}) if r.scenario == "happy-path" else r
            for r in subset_results
        ],
        better,
    )
    args = [
        "--planners",
        "rule,llm",
        "--only",
        "happy-path,needs-prepare",
        "--trials",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--json",
    ]
    assert main([*args, "--baseline", str(old)]) == 0
    assert main([*args, "--baseline", str(better)]) == 1
