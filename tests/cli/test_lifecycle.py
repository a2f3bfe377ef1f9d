"""The mission lifecycle through the real CLI: cancel (with and without a running engine),
unlock, prune, facts, bulk approvals, a raised budget."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from reaper.models import MissionStatus
from reaper.overseer import Overseer
from reaper.runtime import LocalWorkers
from tests.cli.conftest import Run
from tests.cli.test_cli import _one_line_error, _write_lab
from tests.missions import (
    PYTHON,
    WAIT_S,
    Recorder,
    cli_env,
    count_rows,
    make_lab,
    open_sqlite,
    sim_host,
)


def _events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _awaiting(db: Path, *hosts: dict[str, Any]) -> list[str]:
    """Run mission m1 (policy cautious: changes need approval) until it waits for approval,
    then stop its engine: the tasks waiting, in the store, with no engine."""

    async def go() -> list[str]:
        backend = open_sqlite(db)
        recorder = Recorder()
        overseer = Overseer(backend, listener=recorder)
        workers = LocalWorkers(backend)
        workers.start()
        await overseer.create_mission(make_lab(*hosts, mission_id="m1", policy="cautious"))
        overseer.start("m1")
        state = await recorder.wait_status(MissionStatus.AWAITING_APPROVAL, WAIT_S)
        await overseer.stop_all()
        await workers.stop()
        await backend.close()
        return sorted(state.awaiting_approval)

    return asyncio.run(go())


# -- cancel -----------------------------------------------------------------------------


def test_cancel_without_an_engine_is_applied_through_the_store(cli: Run, tmp_path: Path):
    waiting = _awaiting(tmp_path / "reaper.db", sim_host("a", "linux"), sim_host("b", "macos"))
    rc, out, err = cli("cancel", "m1", "--json", "--by", "ops", "--note", "wrong lab")
    assert rc == 0, err
    report = json.loads(out)
    assert report["outcome"] == "applied" and report["status"] == "cancelled"
    assert (
        "ops" in report["status_reason"] and f"{len(waiting)} open task" in report["status_reason"]
    )

    rc, out, _ = cli("events", "m1", "--json", "--kind", "task.abandoned")
    abandoned = _events(out)
    assert sorted(e["payload"]["task_id"] for e in abandoned) == waiting
    assert all("cancelled by ops" in e["payload"]["reason"] for e in abandoned)
    rc, out, _ = cli("events", "m1", "--kind", "task.abandoned")
    assert out.count("abandon ") == len(waiting) and "CANCELLED" in out
    rc, out, _ = cli("status", "m1", "--json")
    status = json.loads(out)
    assert status["status"] == "cancelled" and status["awaiting_approval"] == []
    assert status["engine"] == {"owner": None, "alive": False, "expires_in_s": None}

    # Final: resume reports it and does not run it; a second cancel is bad input.
    rc, out, _ = cli("resume", "m1", "--no-live", "--json")
    assert rc == 3 and json.loads(out)["status"] == "cancelled"
    rc, _, err = cli("cancel", "m1")
    _one_line_error(rc, err, "already ended (cancelled)")


def _results_or_waiting(db: Path) -> int:
    try:
        return count_rows(db, "SELECT count(*) FROM missions WHERE status = 'awaiting_approval'")
    except Exception:  # not created yet
        return 0


def test_cancel_reaches_an_engine_in_another_process(cli: Run, tmp_path: Path):
    db = tmp_path / "reaper.db"
    lab = tmp_path / "lab.yaml"
    spec = make_lab(sim_host("a", "linux"), sim_host("b", "windows"), policy="cautious")
    lab.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True)))
    proc = subprocess.Popen(
        [PYTHON, "-m", "reaper.cli", "run", str(lab), "--db", str(db), "--no-live", "--no-input"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Another process: follow its file under a deadline until it waits for approval.
        deadline = time.monotonic() + 30
        while _results_or_waiting(db) < 1:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the mission never waited for approval"
            time.sleep(0.02)
        rc, out, err = cli("cancel", "m1", "--json", "--wait", str(WAIT_S))
        assert rc == 0, err
        report = json.loads(out)
        assert report["outcome"] == "sent" and report["status"] == "cancelled"
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err  # the run ends: its mission did not reach its goal
    assert "Traceback" not in err and "cancelled" in out
    rc, out, _ = cli("events", "m1", "--json", "--kind", "status.changed")
    assert _events(out)[-1]["payload"]["to"] == "cancelled"


async def test_cancel_reaches_a_running_engine_and_stops_it(tmp_path: Path):
    from reaper.models import MissionControl

    backend = open_sqlite(tmp_path / "reaper.db")
    recorder = Recorder()
    overseer = Overseer(backend, listener=recorder)
    await overseer.create_mission(
        make_lab(sim_host("a", "linux"), sim_host("b", "linux"), mission_id="m1")
    )
    engine = overseer.start("m1")  # no workers: its tasks stay in flight
    await recorder.wait_for(
        lambda: recorder.state is not None and bool(recorder.state.open_task_ids), WAIT_S
    )
    outcome = await Overseer(backend).control(
        MissionControl(mission_id="m1", command="cancel", by="ops")
    )
    assert outcome == "sent"  # the engine holds the mission
    final = await asyncio.wait_for(engine, WAIT_S)
    assert final.status is MissionStatus.CANCELLED and not final.open_task_ids
    assert all(r.last_error == "CANCELLED" for r in final.tasks.values())
    assert await backend.store.unsent("m1") == []
    assert await backend.store.lease("m1") is None
    await backend.close()


# -- unlock -----------------------------------------------------------------------------


def test_unlock_clears_a_lock_and_logs_it(cli: Run, tmp_path: Path):
    lab = _write_lab(
        tmp_path / "lab.yaml",
        sim_host("mac", "macos", faults=[{"kind": "down"}]),
        sim_host("lin", "linux"),
        settings={"max_failures": 1, "retry_attempts": 1},
    )
    rc, _, err = cli("run", str(lab), "--no-live", "--no-input")
    assert rc == 3, err
    rc, out, _ = cli("status", "m1", "--json")
    assert json.loads(out)["hosts"]["mac"]["locked"]

    rc, out, err = cli("unlock", "m1", "mac", "--by", "ops", "--note", "fixed the cable")
    assert rc == 0, err
    assert "unlocked mac" in out
    rc, out, _ = cli("status", "m1", "--json")
    mac = json.loads(out)["hosts"]["mac"]
    assert not mac["locked"] and mac["failure_count"] == 0 and mac["lock_reason"] is None
    rc, out, _ = cli("events", "m1", "--json", "--kind", "host.unlocked")
    (event,) = _events(out)
    assert event["payload"]["host_id"] == "mac" and event["payload"]["by"] == "ops"
    assert event["payload"]["note"] == "fixed the cable" and event["payload"]["was"]

    rc, out, _ = cli("events", "m1", "--kind", "host.unlocked")
    assert "unlock  mac by ops" in out and "fixed the cable" in out

    rc, _, err = cli("unlock", "m1", "mac")
    _one_line_error(rc, err, "not locked")
    rc, _, err = cli("unlock", "m1", "ghost")
    _one_line_error(rc, err, "no host 'ghost'")
    rc, _, err = cli("unlock", "nope", "mac")
    _one_line_error(rc, err, "nope")

    # The mission had ended short of its goal: stopped now, so a resume plans for mac again.
    rc, out, _ = cli("status", "m1", "--json")
    assert json.loads(out)["status"] == "stopped"
    rc, out, _ = cli("events", "m1", "--json", "--kind", "task.planned")
    planned_before = sum(1 for e in _events(out) if e["payload"]["host_id"] == "mac")
    rc, out, err = cli("resume", "m1", "--no-live", "--no-input", "--json")
    assert rc == 3, err  # mac is still down: locked again
    rc, out, _ = cli("events", "m1", "--json", "--kind", "task.planned")
    assert sum(1 for e in _events(out) if e["payload"]["host_id"] == "mac") > planned_before


# -- prune ------------------------------------------------------------------------------


def test_prune_dry_run_then_delete(cli: Run, tmp_path: Path):
    lab = _write_lab(tmp_path / "lab.yaml", sim_host("a", "linux"))
    for mid in ("m1", "m2"):
        assert cli("run", str(lab), "--mission-id", mid, "--no-live", "--no-input")[0] == 0

    rc, out, _ = cli("prune", "--json")  # the default age, 30 days: nothing that old
    assert rc == 0 and json.loads(out)["missions"] == []
    rc, out, _ = cli("prune", "--older-than", "0", "--dry-run", "--json")
    listed = json.loads(out)
    assert listed["dry_run"] and [m["mission_id"] for m in listed["missions"]] == ["m1", "m2"]
    assert all(m["rows"] == 0 for m in listed["missions"])
    rc, out, _ = cli("prune", "--older-than", "0", "--dry-run")
    assert "would remove 2 mission(s)" in out
    assert len(json.loads(cli("status", "--json")[1])) == 2  # a dry run deletes nothing

    rc, out, _ = cli("prune", "--older-than", "0s", "--status", "failed")
    assert rc == 0 and "nothing to prune" in out
    rc, out, _ = cli("prune", "--older-than", "0", "--status", "completed")
    assert rc == 0 and "removed 2 mission(s)" in out and "m1" in out
    assert json.loads(cli("status", "--json")[1]) == []
    db = tmp_path / "reaper.db"
    for table in ("events", "tasks", "hosts"):
        assert count_rows(db, f"SELECT count(*) FROM {table}") == 0
    rc, _, err = cli("events", "m1")
    _one_line_error(rc, err, "m1")


@pytest.mark.parametrize("age", ["soon", "-3d", "3y"])
def test_prune_bad_age(cli: Run, age: str):
    rc, _, err = cli("prune", "--older-than", age)
    _one_line_error(rc, err, "--older-than")


# -- facts ------------------------------------------------------------------------------


def test_facts_per_host_json_and_tree(cli: Run, tmp_path: Path):
    lab = _write_lab(
        tmp_path / "lab.yaml",
        sim_host("lin", "linux", sim={"facts": {"rack": "r7"}}),
        sim_host("win", "windows"),
    )
    assert cli("run", str(lab), "--no-live", "--no-input")[0] == 0
    rc, out, err = cli("facts", "m1", "--json")
    assert rc == 0, err
    facts = json.loads(out)
    assert set(facts) == {"lin", "win"} and all(facts.values())
    assert facts["lin"]["rack"] == "r7"
    rc, out, _ = cli("status", "m1", "--json")
    assert json.loads(out)["hosts"]["lin"]["facts"] == facts["lin"]

    rc, out, _ = cli("facts", "m1", "lin")
    assert rc == 0 and "lin" in out and "rack: r7" in out and "win" not in out
    rc, out, _ = cli("facts", "m1", "win", "--json")
    assert list(json.loads(out)) == ["win"]
    rc, _, err = cli("facts", "m1", "mac")
    _one_line_error(rc, err, "no host 'mac'")


# -- approvals in bulk ------------------------------------------------------------------


def test_bulk_approve_by_host_then_all(cli: Run, tmp_path: Path):
    waiting = _awaiting(tmp_path / "reaper.db", sim_host("a", "linux"), sim_host("b", "linux"))
    assert len(waiting) == 2

    # Not a terminal and no --yes: refused with the hint, nothing decided.
    rc, _, err = cli("approve", "m1", "--all")
    _one_line_error(rc, err, "--yes")
    rc, _, err = cli("approve", "m1")
    _one_line_error(rc, err, "--all")
    rc, _, err = cli("approve", "m1", waiting[0], "--all")
    _one_line_error(rc, err, "not both")
    rc, _, err = cli("reject", "m1", "--action", "linux.nothing-like-it", "--yes")
    _one_line_error(rc, err, "no task")

    rc, out, err = cli("reject", "m1", "--host", "b", "--yes", "--json")
    assert rc == 0, err
    rejected = json.loads(out)
    assert rejected["decision"] == "rejected" and len(rejected["task_ids"]) == 1
    rc, out, err = cli("approve", "m1", "--all", "--yes", "--json", "--by", "ops")
    assert rc == 0, err
    # The engine applies decisions: both are on the bus; the one for b is stale by then.
    assert set(json.loads(out)["task_ids"]) == set(waiting)
    rc, out, err = cli("resume", "m1", "--no-live", "--no-input", "--json")
    report = json.loads(out)
    assert report["hosts"]["a"]["stage"] == "baselined"
    rc, out, _ = cli("events", "m1", "--json", "--kind", "approval.rejected")
    assert [e["payload"]["host_id"] for e in _events(out)] == ["b"]


def test_bulk_approve_previews_and_asks_on_a_terminal(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import io
    import sys

    waiting = _awaiting(tmp_path / "reaper.db", sim_host("a", "linux"))

    class _Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", _Tty("n\n"))
    rc, out, err = cli("approve", "m1", "--all")
    assert rc == 0, err
    assert waiting[0] in out and "linux." in out and "risk" in out
    assert "nothing decided" in out
    monkeypatch.setattr(sys, "stdin", _Tty("y\n"))
    rc, out, err = cli("approve", "m1", "--all")
    assert rc == 0, err
    assert f"approved {waiting[0]}" in out


def test_cancel_after_kill_9_is_applied_once_the_lease_expires(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import signal

    db = tmp_path / "reaper.db"
    lab = tmp_path / "lab.yaml"
    spec = make_lab(sim_host("a", "linux"), policy="cautious")
    lab.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True)))
    proc = subprocess.Popen(
        [PYTHON, "-m", "reaper.cli", "run", str(lab), "--db", str(db), "--no-live", "--no-input"],
        cwd=tmp_path,
        env=cli_env(tmp_path, REAPER_LEASE_TTL_S="2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while _results_or_waiting(db) < 1:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the mission never waited for approval"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # The dead engine's lease still holds: the cancel goes to the bus, then, once the lease
    # has expired, is applied here (the message left on the bus changes nothing later).
    rc, out, err = cli("cancel", "m1", "--json", "--wait", str(WAIT_S))
    assert rc == 0, err
    report = json.loads(out)
    assert report["outcome"] == "applied" and report["status"] == "cancelled"
    rc, out, _ = cli("resume", "m1", "--no-live", "--json")
    assert rc == 3 and json.loads(out)["status"] == "cancelled"


# -- budget -----------------------------------------------------------------------------


def test_resume_with_budget_flags_records_the_new_limits(cli: Run, tmp_path: Path):
    from importlib import resources

    demo = yaml.safe_load(resources.files("reaper.labs").joinpath("demo.yaml").read_text())
    demo.update(planner="llm", budget={"calls": 1}, mission_id="b1")
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(demo))
    cassette = str(resources.files("reaper.labs").joinpath("demo-llm.cassette.jsonl"))
    rc, out, err = cli(
        "demo", "--lab", "lab.yaml", "--backend", "sqlite", "--no-live", "--no-input", "--json"
    )
    report = json.loads(out)
    assert rc == 3 and report["status"] == "stopped", err
    assert "LLM budget exhausted: calls 1/1" in report["status_reason"]

    # Tokens raised, calls not: the planner is still out of calls and stops again, without
    # a call, but the new limits are the mission's now.
    rc, out, err = cli(
        "resume", "b1", "--budget-tokens", "500000", "--replay", cassette, "--no-live", "--json"
    )
    assert rc == 3, err
    assert json.loads(out)["status"] == "stopped"
    rc, out, _ = cli("events", "b1", "--json", "--kind", "budget.raised")
    (raised,) = _events(out)
    assert raised["payload"]["before"] == {"calls": 1}
    assert raised["payload"]["after"] == {"calls": 1, "tokens": 500000}
    rc, _, err = cli("resume", "b1", "--budget-calls", "0")
    _one_line_error(rc, err, "--budget-calls")
