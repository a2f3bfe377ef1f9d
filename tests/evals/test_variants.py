"""`reaper eval --prompts DIR`: a prompt variant runs beside the shipped prompts on the same
scenarios and seeds, each row carries its prompt hash, and the two are compared run by run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.cli import main
from prompts import PLANNER_SYSTEM, load_prompt

_SCRIPTED = "evals.sensible:sensible_client"


def _variant(tmp_path: Path) -> Path:
    directory = tmp_path / "careful"
    directory.mkdir()
    text = load_prompt(PLANNER_SYSTEM).text.replace("You are the", "You are the careful")
    (directory / PLANNER_SYSTEM).write_text(text, encoding="utf-8")
    return directory


def test_a_variant_is_run_beside_the_shipped_prompts_and_paired_by_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    variant = _variant(tmp_path)
    argv = ["--planners", "llm", "--prompts", str(variant), "--client", _SCRIPTED,
            "--only", "happy-path", "--trials", "2", "--out", "", "--json"]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["results"]
    assert sorted({r["planner"] for r in rows}) == ["llm", "llm@careful"]
    hashes = {r["planner"]: {x["prompt_hash"] for x in rows if x["planner"] == r["planner"]}
              for r in rows}  # fmt: skip
    assert len(hashes["llm"]) == 1 and len(hashes["llm@careful"]) == 1
    assert hashes["llm"] != hashes["llm@careful"]
    seeds = {r["planner"]: sorted(x["seed"] for x in rows if x["planner"] == r["planner"])
             for r in rows}  # fmt: skip
    assert seeds["llm"] == seeds["llm@careful"]
    findings = doc["prompt_variant"]["findings"]
    assert findings and all(f["paired"] and f["scenario"] == "happy-path" for f in findings)
    # the scripted model ignores the system prompt: the variant changes nothing measurable
    assert {f["verdict"] for f in findings} == {"same"}


def test_a_variant_directory_must_hold_prompt_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--planners", "llm", "--prompts", str(empty), "--client", _SCRIPTED, "--out", ""]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reaper eval: --prompts") and "holds none of the prompt files" in err
    assert len(err.splitlines()) == 1
    assert main(["--planners", "rule", "--prompts", str(_variant(tmp_path)), "--out", ""]) == 2
    assert "add llm to --planners" in capsys.readouterr().err
