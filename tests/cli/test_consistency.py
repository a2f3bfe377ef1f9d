"""Consistent answers from the CLI (issue 17, points 5 and 6): bad input is exit 2 with a hint,
an unreachable server exit 4, errors are JSON under --json, unknown keys get a "did you mean",
one id rule, `--backend sqlite`, unpriced costs shown as unknown; a first run says what to do
next, and the log file holds Reaper's lines only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from evals.aggregate import aggregate
from evals.scorecard import RunResult
from reaper.cli.console import format_cost, render_recap
from reaper.cli.context import EXIT_CODES
from tests.cli.conftest import Run
from tests.cli.test_cli import _one_line_error, _write_lab
from tests.missions import make_lab, sim_host


def test_a_taken_mission_id_is_bad_input_with_the_way_out(cli: Run, tmp_path: Path):
    lab = _write_lab(tmp_path / "lab.yaml", sim_host("a", "linux"))
    assert cli("run", str(lab), "--no-live", "--no-input")[0] == 0
    rc, _, err = cli("run", str(lab), "--no-live", "--no-input")
    _one_line_error(rc, err, "mission 'm1' already exists")
    assert "--mission-id" in err and "reaper resume m1" in err
    rc, _, err = cli("run", str(lab), "--no-live", "--submit-only", "--json")
    _one_line_error(rc, err, "--mission-id")


def test_an_unreachable_postgres_is_exit_4(cli: Run):
    pytest.importorskip("psycopg")
    rc, _, err = cli("status", "--backend", "postgresql://127.0.0.1:1/none")
    assert rc == 4, err
    assert "reaper: error: postgres" in err and "Traceback" not in err
    rc, _, err = cli("status", "--backend", "postgresql://127.0.0.1:1/none", "--json")
    assert rc == 4
    assert json.loads(err.strip().splitlines()[-1])["code"] == 4


def test_help_documents_every_exit_code(cli: Run):
    rc, out, _ = cli("--help")
    assert rc == 0
    for code, meaning in EXIT_CODES:
        assert f"{code:<4} {meaning}" in out
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    for code, _ in EXIT_CODES:
        assert f"| {code} |" in readme


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status", "ghost", "--json"], "no mission 'ghost'"),
        (["events", "m1", "--limit", "many", "--json"], "many"),  # argparse's own error
        (["status", "--backend", "carrier-pigeon://x", "--json"], "unknown backend spec"),
        (["approve", "ghost", "--json"], "--all"),
    ],
)
def test_errors_under_json_are_json_on_stderr(cli: Run, args: list[str], expected: str):
    rc, out, err = cli(*args)
    assert rc == 2 and out == ""
    (line,) = err.strip().splitlines()
    error = json.loads(line)
    assert error["code"] == 2 and expected in error["error"]


def test_a_lab_file_and_an_inventory_are_refused_together(cli: Run, tmp_path: Path):
    lab = _write_lab(tmp_path / "lab.yaml", sim_host("a", "linux"))
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[web]\nweb-01 ansible_host=10.0.0.5\n")
    rc, _, err = cli("run", str(lab), "--inventory", str(inventory), "--no-live")
    _one_line_error(rc, err, "not both")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hosts: [{host_id: a, os: linux, adress: 10.0.0.1}]\n", "did you mean 'address'?"),
        ("hostz: [{host_id: a, os: linux}]\n", "unknown key 'hostz': did you mean 'hosts'?"),
        (
            "hosts: [{host_id: a, os: linux}]\nsettings: {max_failure: 2}\n",
            "settings: unknown key 'max_failure': did you mean 'max_failures'?",
        ),
        (
            "hosts: [{host_id: a, os: linux}]\npolicy: {rules: [{action: '*', decison: allow}]}\n",
            "rules[0]: unknown key 'decison': did you mean 'decision'?",
        ),
        (
            "hosts: [{host_id: a, os: linux}]\npolicy: {rules: [{action: '*', decision: maybe}]}\n",
            "rules[0].decision: Input should be 'allow', 'ask' or 'deny'",
        ),
        (
            "hosts: [{host_id: a, os: linux}]\npolicy: {rules: [{decision: allow, risk: huge}]}\n",
            "rules[0].risk",
        ),
        ("hosts: [{host_id: 'web 01', os: linux}]\n", "starts with a letter or digit"),
    ],
    ids=["host key", "top key", "settings key", "rule key", "rule value", "risk", "host id"],
)
def test_lab_and_policy_mistakes_name_the_fix(cli: Run, tmp_path: Path, text: str, expected: str):
    (tmp_path / "lab.yaml").write_text(text)
    rc, _, err = cli("run", "lab.yaml", "--no-live")
    _one_line_error(rc, err, expected)


def test_mission_and_host_ids_follow_one_rule(cli: Run, tmp_path: Path):
    # FQDN-like and mixed-case ids are fine for both; a space or a leading dot for neither.
    lab = _write_lab(tmp_path / "lab.yaml", sim_host("Web-01.lab.example", "linux"))
    rc, out, err = cli("run", str(lab), "--mission-id", "Nightly.2026-01_a", "--no-live", "--json")
    assert rc == 0, err
    assert set(json.loads(out)["hosts"]) == {"Web-01.lab.example"}
    for bad in ("has space", ".hidden"):
        rc, _, err = cli("run", str(lab), "--mission-id", bad, "--no-live")
        _one_line_error(rc, err, "starts with a letter or digit")
        (tmp_path / "bad.yaml").write_text(f"hosts: [{{host_id: '{bad}', os: linux}}]\n")
        rc, _, err = cli("run", "bad.yaml", "--no-live")
        _one_line_error(rc, err, "starts with a letter or digit")


def test_backend_sqlite_is_the_default_file(cli: Run, tmp_path: Path):
    lab = _write_lab(tmp_path / "lab.yaml", sim_host("a", "linux"))
    rc, _, err = cli("run", str(lab), "--backend", "sqlite", "--no-live", "--no-input")
    assert rc == 0, err
    assert (tmp_path / "reaper.db").exists()
    rc, out, _ = cli("status", "--json")  # the default backend: the same file
    assert [m["mission_id"] for m in json.loads(out)] == ["m1"]


def test_unpriced_models_show_an_unknown_cost():
    usage = {"provider": "openai-compatible", "model": "local-llama", "calls": 3}
    assert format_cost({**usage, "cost_usd": 0.0, "priced": False}) == "cost unknown"
    assert format_cost({**usage, "cost_usd": 0.01, "priced": False}) == "$0.0100 + unknown"
    assert format_cost({**usage, "cost_usd": 0.01, "priced": True}) == "$0.0100"

    state = make_lab(sim_host("a", "linux")).to_state()
    console = Console(file=__import__("io").StringIO(), width=160)
    console.print(render_recap(state, usage={**usage, "cost_usd": 0.0, "priced": False}))
    text = " ".join(console.file.getvalue().split())  # the caption wraps with the table
    assert "cost unknown" in text and "$0.0000" not in text

    runs = [
        RunResult(
            planner="llm",
            scenario="s",
            scenario_hash="h",
            seed=seed,
            trial=seed,
            llm_calls=2,
            unpriced_calls=2,
        )
        for seed in (1, 2)
    ]
    (agg,) = aggregate(runs, overall=False)
    assert not agg.priced
    assert agg.cost(agg.metrics["cost_usd"].mean) == "unknown"


def test_after_the_demo_a_hint_and_an_empty_status_says_why(cli: Run):
    rc, _, err = cli("demo", "--no-live", "--no-input")
    assert rc == 0, err
    assert "kept nothing" in err and "--backend sqlite" in " ".join(err.split())
    assert "`reaper demo --lab ad` converges an Active Directory lab" in " ".join(err.split())
    rc, out, _ = cli("status")
    said = " ".join(out.split())
    assert rc == 0 and "no missions in" in said and "reaper run LAB.yaml" in said
    assert "--backend sqlite" in said

    rc, _, err = cli("demo", "--no-live", "--no-input", "--backend", "sqlite")
    assert rc == 0, err
    rc, out, _ = cli("status", "--json")
    assert len(json.loads(out)) == 1


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_the_log_file_holds_reapers_lines_at_the_chosen_level(cli: Run, tmp_path: Path, level: str):
    lab = _write_lab(tmp_path / "lab.yaml", sim_host("a", "linux"))
    log = tmp_path / "reaper.jsonl"
    rc, _, err = cli(
        "run", str(lab), "--no-live", "--no-input", "--log-file", str(log), "--log-level", level
    )
    assert rc == 0, err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records, "nothing logged"
    assert any(r["logger"].startswith("reaper") for r in records)
    chatty = [r for r in records if r["level"] in ("DEBUG", "INFO")]
    assert all(r["logger"].split(".")[0] in ("reaper", "llm", "evals") for r in chatty), chatty
    if level == "INFO":
        assert not any(r["level"] == "DEBUG" for r in records)


def test_scripted_answers_are_never_shown_as_a_models_or_priced(cli: Run):
    # The shipped demo cassette was recorded from a scripted model: console and JSON say so.
    rc, out, err = cli("demo", "--planner", "llm", "--no-live", "--no-input")
    assert rc == 0, err
    text = " ".join(out.split())
    assert "synthetic: scripted answers, no model" in text and "$" not in text
    rc, out, err = cli("demo", "--planner", "llm", "--json")
    usage = json.loads(out)["llm_usage"]
    assert usage["synthetic"] is True and usage["cost_usd"] is None
    assert all(h["cost_usd"] is None for h in usage["hosts"].values())
