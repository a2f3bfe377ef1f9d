from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from evals.aggregate import aggregate
from evals.chart import text_chart
from evals.cli import main
from evals.report import scorecard_table, usage_table, write_markdown
from evals.scorecard import RunResult


def test_aggregates_tables_markdown_and_chart(
    subset_results: list[RunResult], tmp_path: Path
) -> None:
    aggs = aggregate(subset_results)
    overall = {a.planner: a for a in aggs if a.scenario == "*"}
    assert set(overall) == {"rule", "llm"}
    assert overall["llm"].metrics["llm_calls"].mean > 0
    assert overall["rule"].metrics["cost_usd"].mean == 0
    console = Console(file=io.StringIO(), width=200)
    console.print(scorecard_table(aggs))
    console.print(usage_table(aggs))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "happy-path" in text and "pass^k" in text and "claude-sonnet-4-5" in text
    chart = write_markdown(aggs, tmp_path / "report.md", meta={"trials": "2"}, synthetic=True)
    ET.fromstring(chart.read_text())  # well-formed SVG
    md = (tmp_path / "report.md").read_text()
    assert "![planners side by side](report.svg)" in md and "synthetic" in md
    assert "█" in text_chart(aggs)


def test_cli_run_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "--planners",
            "rule,llm",
            "--only",
            "happy-path",
            "--trials",
            "2",
            "--json",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["results"]) == 4 and doc["regressions"] == []
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    for key in (
        "planner",
        "provider",
        "model",
        "prompt_hash",
        "scenario_hash",
        "code_version",
        "seed",
        "schema_version",
    ):
        assert key in first
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.svg").exists()
