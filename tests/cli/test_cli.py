"""The `reaper` command line: bad input is one line on stderr and exit 2, never a traceback;
`--json` output parses; run, status, events, approve, resume and demo work end to end."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from reaper.models import MissionStatus
from reaper.overseer import Overseer
from tests.cli.conftest import Run
from tests.missions import (
    PYTHON,
    WAIT_S,
    Recorder,
    cli_env,
    make_lab,
    open_sqlite,
    sim_host,
)


def _write_lab(path: Path, *hosts: dict[str, Any], **fields: Any) -> Path:
    lab = make_lab(*hosts, **fields)
    path.write_text(yaml.safe_dump(lab.model_dump(mode="json", exclude_none=True)))
    return path


def _one_line_error(rc: int, err: str, expected: str = "") -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    if lines[0].startswith("{"):  # under --json: one JSON object
        error = json.loads(lines[0])
        assert error["code"] == 2 and expected in error["error"]
        return
    assert lines[0].startswith("reaper: error: ") or ": error: " in lines[0]
    assert expected in lines[0]


# -- bad lab files ----------------------------------------------------------------------

BAD_LABS: dict[str, tuple[str, str]] = {
    "invalid YAML": ("hosts: [{host_id: a, os: linux\n", "invalid YAML"),
    "unknown OS": ("hosts: [{host_id: a, os: solaris}]\n", "hosts[0].os"),
    "unknown transport": (
        "hosts: [{host_id: a, os: linux, transport: telnet}]\n",
        "hosts[0].transport",
    ),
    "duplicate host id": (
        "hosts: [{host_id: a, os: linux}, {host_id: a, os: linux}]\n",
        "duplicate host_id",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LABS))
def test_bad_lab_file(cli: Run, tmp_path: Path, case: str):
    text, expected = BAD_LABS[case]
    lab = tmp_path / "lab.yaml"
    lab.write_text(text)
    rc, _out, err = cli("run", str(lab), "--no-live", "--no-input")
    _one_line_error(rc, err, expected)
    assert str(lab) in err


def test_missing_lab_file(cli: Run, tmp_path: Path):
    rc, _, err = cli("run", str(tmp_path / "nope.yaml"), "--no-live")
    _one_line_error(rc, err, "no such lab file")


def test_run_without_a_lab(cli: Run):
    rc, _, err = cli("run", "--no-live")
    _one_line_error(rc, err, "lab file")


@pytest.mark.parametrize(
    "args",
    [
        ["status", "ghost"],
        ["status", "ghost", "--json"],
        ["resume", "ghost", "--no-live"],
        ["events", "ghost"],
        ["approve", "ghost", "ghost:1:0"],
        ["reject", "ghost", "ghost:1:0"],
    ],
    ids=lambda a: " ".join(a),
)
def test_unknown_mission(cli: Run, args: list[str]):
    rc, out, err = cli(*args)
    _one_line_error(rc, err, "ghost")
    assert out == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status", "--backend", "carrier-pigeon://x"], "unknown backend spec"),
        (["status", "--config", "missing.toml"], "missing.toml"),
        (["events", "m1", "--kind", "task.exploded"], "task.exploded"),
        (["events", "m1", "--limit", "-3"], "limit"),
        (["events", "m1", "--limit", "0"], "limit"),
    ],
)
def test_bad_values_reaching_the_commands(cli: Run, tmp_path: Path, args: list[str], expected: str):
    if args[0] == "events":
        lab = _write_lab(tmp_path / "lab.yaml", sim_host("a", "linux"))
        assert cli("run", str(lab), "--no-live", "--no-input")[0] == 0
    rc, _, err = cli(*args)
    _one_line_error(rc, err, expected)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "lab.yaml", "--concurrency", "abc"],
        ["events", "m1", "--limit", "many"],
        ["frobnicate"],
        ["status", "--log-level", "LOUD"],
        ["run", "lab.yaml", "--concurrency", "0", "--no-live", "--no-input"],
        ["run", "lab.yaml", "--stall-after", "-5", "--no-live", "--no-input"],
        pytest.param(["run", "lab.yaml", "--mission-id", "Not Valid", "--no-live"]),
        pytest.param(["status", "--db", "/proc/nope/reaper.db"]),
    ],
    ids=lambda a: " ".join(a),
)
def test_bad_flag_values(cli: Run, tmp_path: Path, args: list[str]):
    _write_lab(tmp_path / "lab.yaml", sim_host("a", "linux"), mission_id="other")
    rc, _out, err = cli(*args)
    _one_line_error(rc, err)


def test_subprocess_missing_lab_is_one_line(tmp_path: Path):
    proc = subprocess.run(
        [PYTHON, "-m", "reaper.cli", "run", "nope.yaml", "--db", str(tmp_path / "r.db")],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    _one_line_error(proc.returncode, proc.stderr, "no such lab file")


def test_subprocess_duplicate_host_and_unknown_mission(tmp_path: Path):
    lab = tmp_path / "lab.yaml"
    lab.write_text("hosts: [{host_id: a, os: linux}, {host_id: a, os: macos}]\n")
    env = cli_env(tmp_path)
    env.pop("COLUMNS", None)
    for args, expected in (
        (["run", str(lab), "--no-live"], "duplicate host_id"),
        (["status", "nobody-here"], "nobody-here"),
    ):
        proc = subprocess.run(
            [PYTHON, "-m", "reaper.cli", *args, "--db", str(tmp_path / "r.db")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        _one_line_error(proc.returncode, proc.stderr, expected)


# -- working commands and their JSON ----------------------------------------------------


def test_run_status_events_json(cli: Run, tmp_path: Path):
    lab = _write_lab(
        tmp_path / "lab.yaml",
        sim_host("lin", "linux"),
        sim_host("win", "windows"),
        mission_id="m1",
    )
    rc, out, err = cli("run", str(lab), "--no-live", "--no-input", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["mission_id"] == "m1" and report["status"] == "completed"
    assert report["goal_reached"] and set(report["hosts"]) == {"lin", "win"}

    rc, out, _ = cli("status", "m1", "--json")
    assert rc == 0 and json.loads(out)["hosts"]["win"]["stage"] == "baselined"

    rc, out, _ = cli("status", "--json")
    assert rc == 0
    (row,) = json.loads(out)
    assert row["mission_id"] == "m1" and row["status"] == "completed" and row["hosts"] == 2

    rc, out, _ = cli("events", "m1", "--json")
    assert rc == 0
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert events[0]["kind"] == "mission.created"
    assert events[-1]["kind"] == "status.changed"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    rc, out, _ = cli("events", "m1", "--json", "--kind", "task.result", "--limit", "1")
    assert rc == 0
    (only,) = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert only["kind"] == "task.result"

    rc, out, _ = cli("status", "m1")
    assert rc == 0 and "lin" in out and "completed" in out


def test_run_exit_code_when_goal_is_not_reached(cli: Run, tmp_path: Path):
    lab = _write_lab(
        tmp_path / "lab.yaml", sim_host("mac", "macos", faults=[{"kind": "auth_failure"}])
    )
    rc, out, err = cli("run", str(lab), "--no-live", "--no-input")
    assert rc == 3, err
    assert "mac" in out and "completed" in out


def test_approve_json_then_resume(cli: Run, tmp_path: Path):
    db = tmp_path / "reaper.db"

    async def until_awaiting() -> str:
        backend = open_sqlite(db)
        recorder = Recorder()
        overseer = Overseer(backend, listener=recorder)
        from reaper.runtime import LocalWorkers

        workers = LocalWorkers(backend)
        workers.start()
        await overseer.create_mission(
            make_lab(sim_host("lin", "linux"), mission_id="m1", policy="cautious")
        )
        overseer.start("m1")
        state = await recorder.wait_status(MissionStatus.AWAITING_APPROVAL, WAIT_S)
        await overseer.stop_all()
        await workers.stop()
        await backend.close()
        return state.awaiting_approval[0]

    task_id = asyncio.run(until_awaiting())
    rc, out, err = cli("approve", "m1", task_id, "--json", "--by", "ops", "--note", "ok")
    assert rc == 0, err
    assert json.loads(out) == {"mission_id": "m1", "task_id": task_id, "decision": "approved"}
    rc, out, err = cli("resume", "m1", "--no-live", "--no-input", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["status"] == "completed" and report["goal_reached"]
    rc, out, _ = cli("events", "m1", "--json", "--kind", "approval.granted")
    (granted,) = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert granted["payload"]["by"] == "ops" and granted["payload"]["note"] == "ok"


def test_demo_runs_and_lists_the_four_hosts(cli: Run):
    rc, out, err = cli("demo", "--no-live", "--no-input")
    assert rc == 0, err
    for host in ("win-01", "win-02", "lnx-01", "mac-01"):
        assert host in out
    assert "completed" in out


def test_housekeep_drops_what_a_finished_mission_left(cli: Run, tmp_path: Path):
    lab = _write_lab(tmp_path / "lab.yaml", sim_host("a", "linux"), sim_host("b", "windows"))
    assert cli("run", str(lab), "--no-live", "--no-input")[0] == 0
    rc, out, _ = cli("housekeep", "--json")  # within the default grace period: kept
    assert rc == 0 and json.loads(out) == {"finished": 0, "pruned": 0, "retired": 0}
    rc, out, _ = cli("housekeep", "--grace", "0", "--json")
    assert rc == 0 and json.loads(out) == {"finished": 1, "pruned": 4, "retired": 0}
    rc, out, _ = cli("housekeep", "--grace", "0")
    assert rc == 0 and out.strip() == (
        "housekeeping: 1 finished missions, 0 queue entries pruned, 0 bus entries retired"
    )
    rc, _, err = cli("housekeep", "--grace", "-1")
    _one_line_error(rc, err, "--grace")
