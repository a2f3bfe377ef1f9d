"""Crash and resume: the engine is cancelled, killed, or dies between commit and ack or between
commit and publish; a new engine on the same store finishes the mission, loses no task and
applies no result twice."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from reaper.cli import main
from reaper.engine.core import MissionEngine
from reaper.errors import BackendError, LeaseLostError
from reaper.infra.base import Backend, EventBus, InboundDelivery, OutboxItem, TaskQueue
from reaper.models import EventKind, MissionState, MissionStatus, Stage, TaskStatus
from reaper.overseer import Overseer
from reaper.planners.rules import RuleBasedPlanner
from reaper.policy import PRESETS
from reaper.runtime import LocalWorkers
from tests.missions import (
    PYTHON,
    WAIT_S,
    HarnessFactory,
    Recorder,
    cli_env,
    count_rows,
    keep_root_logging,
    make_lab,
    open_memory,
    open_sqlite,
    result_keys,
    sim_host,
)

OSES = ("linux", "windows", "macos")


def _lab(n: int = 9, latency: float = 0.0, **fields: Any) -> Any:
    flaky = [{"kind": "flaky", "action": "baseline", "times": 1}]
    hosts = [
        sim_host(f"h{i}", OSES[i % 3], latency=latency, faults=flaky if i % 4 == 0 else ())
        for i in range(n)
    ]
    return make_lab(*hosts, **fields)


async def _assert_finished_once(backend: Backend, final: MissionState) -> None:
    """Every host at the goal, every task finished, every result applied exactly once."""
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    assert all(h.stage is Stage.BASELINED for h in final.hosts.values())
    assert not final.open_task_ids
    keys = result_keys(await backend.store.events(final.mission_id))
    duplicates = {k: n for k, n in keys.items() if n != 1}
    assert not duplicates, f"results applied more than once: {duplicates}"
    for rec in final.tasks.values():
        assert rec.status is TaskStatus.SUCCEEDED
        assert (rec.task.task_id, rec.task.attempt) in keys  # its final result is in the log
    assert await backend.store.unsent(final.mission_id) == []


def _mid_mission(state: MissionState | None) -> None:
    assert state is not None
    assert state.status is MissionStatus.RUNNING and state.open_task_ids, "crash came too late"


@pytest.mark.parametrize("latency", [0.0, 0.02])
async def test_cancelled_engine_resumes_on_the_same_sqlite_file(
    harness: HarnessFactory, tmp_path: Path, latency: float
):
    db = tmp_path / "reaper.db"
    first = open_sqlite(db)
    recorder = Recorder()
    overseer = Overseer(first, listener=recorder)
    workers = LocalWorkers(first)
    workers.start()
    await overseer.create_mission(_lab(latency=latency))
    run = overseer.start("m1")
    recorder.crash_when(lambda: recorder.results() >= 3, run)
    await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), WAIT_S)
    assert run.cancelled()
    await workers.stop()
    _mid_mission(await first.store.load("m1"))
    await first.close()

    h = await harness(backend=open_sqlite(db))  # a new process, in effect
    final = await asyncio.wait_for(h.overseer.run_mission("m1"), WAIT_S)
    await _assert_finished_once(h.backend, final)


class _NoAckBus:
    """A bus whose engine dies after committing and before acking: acks never happen."""

    def __init__(self, inner: EventBus) -> None:
        self.inner = inner

    async def publish(self, message: Any) -> None:
        await self.inner.publish(message)

    async def receive(
        self, mission_id: str, *, max_items: int = 10_000, timeout: float | None = None
    ) -> list[InboundDelivery]:
        return await self.inner.receive(mission_id, max_items=max_items, timeout=timeout)

    async def ack(self, mission_id: str, deliveries: Sequence[InboundDelivery]) -> None:
        return None

    async def recover(self, mission_id: str) -> None:
        await self.inner.recover(mission_id)

    async def close(self) -> None:
        await self.inner.close()


class _CountingBus(_NoAckBus):
    def __init__(self, inner: EventBus) -> None:
        super().__init__(inner)
        self.received: list[tuple[str, int]] = []

    async def receive(
        self, mission_id: str, *, max_items: int = 10_000, timeout: float | None = None
    ) -> list[InboundDelivery]:
        got = await super().receive(mission_id, max_items=max_items, timeout=timeout)
        self.received += [
            (d.message.task_id, d.message.attempt) for d in got if hasattr(d.message, "attempt")
        ]
        return got

    async def ack(self, mission_id: str, deliveries: Sequence[InboundDelivery]) -> None:
        await self.inner.ack(mission_id, deliveries)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_results_redelivered_after_commit_without_ack_are_ignored(tmp_path: Path, kind: str):
    db = tmp_path / "reaper.db"
    backend = open_memory() if kind == "memory" else open_sqlite(db)
    recorder = Recorder()
    engine1 = MissionEngine(
        "m1",
        store=backend.store,
        queue=backend.queue,
        bus=_NoAckBus(backend.bus),
        planner=RuleBasedPlanner(),
        policy=PRESETS["standard"],
        listener=recorder,
    )
    state = _lab().to_state()
    await engine1.start(state)
    workers = LocalWorkers(backend)
    workers.start()
    run = asyncio.create_task(engine1.run())
    recorder.crash_when(lambda: recorder.results() >= 5, run)
    await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), WAIT_S)
    assert run.cancelled()
    await workers.stop()
    applied = set(result_keys(recorder.events))
    _mid_mission(await backend.store.load("m1"))

    if kind == "sqlite":
        await backend.close()
        backend = open_sqlite(db)
    counting = _CountingBus(backend.bus)
    again = Backend(store=backend.store, queue=backend.queue, bus=counting)
    workers = LocalWorkers(again)
    workers.start()
    try:
        final = await asyncio.wait_for(Overseer(again).run_mission("m1"), WAIT_S)
    finally:
        await workers.stop()
    assert applied <= set(counting.received), "the unacked results were not delivered again"
    await _assert_finished_once(again, final)
    await again.close()


class _PublishFailsOnce:
    """A queue that fails the first publish: the engine dies after its commit and before the
    tasks reach the queue (so they are never marked sent)."""

    def __init__(self, inner: TaskQueue) -> None:
        self.inner = inner
        self.failed = False

    async def publish(self, items: Sequence[OutboxItem]) -> None:
        if not self.failed:
            self.failed = True
            raise BackendError("queue unreachable (test)")
        await self.inner.publish(items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_tasks_committed_but_not_published_are_published_on_resume(
    harness: HarnessFactory, tmp_path: Path
):
    db = tmp_path / "reaper.db"
    backend = open_sqlite(db)
    engine1 = MissionEngine(
        "m1",
        store=backend.store,
        queue=_PublishFailsOnce(backend.queue),  # type: ignore[arg-type]
        bus=backend.bus,
        planner=RuleBasedPlanner(),
        policy=PRESETS["standard"],
    )
    await engine1.start(_lab(n=3).to_state())
    with pytest.raises(BackendError):
        await asyncio.wait_for(engine1.run(), WAIT_S)
    unsent = await backend.store.unsent("m1")
    assert len(unsent) == 3
    await backend.close()

    h = await harness(backend=open_sqlite(db))
    final = await asyncio.wait_for(h.overseer.run_mission("m1"), WAIT_S)
    await _assert_finished_once(h.backend, final)


async def test_a_second_engine_cannot_take_a_running_mission(harness: HarnessFactory):
    h = await harness(agent_types=None)  # no workers: the mission stays open
    await h.create(_lab(n=2))
    run = h.start("m1")
    await h.recorder.wait_for(lambda: bool(h.recorder.kinds(EventKind.TASK_PLANNED)))
    # The second engine waits out at most one (here short) lease period, then gives up.
    second = Overseer(h.backend, engine_overrides={"lease_ttl_s": 0.3})
    with pytest.raises(LeaseLostError, match="owned by another engine"):
        await asyncio.wait_for(second.run_mission("m1"), WAIT_S)
    assert not run.done()  # the owner carries on
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    # A cleanly stopped engine releases its lease: the mission can be taken over at once.
    h2 = await harness(backend=h.backend)
    final = await asyncio.wait_for(h2.overseer.run_mission("m1"), WAIT_S)
    await _assert_finished_once(h.backend, final)


def _results_in(db: Path) -> int:
    try:
        return count_rows(db, "SELECT count(*) FROM events WHERE kind = 'task.result'")
    except Exception:  # the file or its tables are not there yet
        return 0


def test_sigkilled_run_resumes_from_another_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "reaper.db"
    lab_file = tmp_path / "lab.yaml"
    lab = _lab(n=6, latency=0.4)
    lab_file.write_text(yaml.safe_dump(lab.model_dump(mode="json", exclude_none=True)))
    env = cli_env(tmp_path, REAPER_LEASE_TTL_S="1")
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "reaper.cli",
            "run",
            str(lab_file),
            "--db",
            str(db),
            "--no-live",
            "--no-input",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Another process: poll its file, briefly, under a deadline.
        deadline = time.monotonic() + 30
        while _results_in(db) < 2:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the run produced no results"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    status = count_rows(db, "SELECT count(*) FROM missions WHERE status = 'completed'")
    assert status == 0, "the run finished before it was killed"

    monkeypatch.chdir(tmp_path)
    keep_root_logging(monkeypatch)
    monkeypatch.setenv("REAPER_LEASE_TTL_S", "1")
    started = time.monotonic()
    rc = main(["resume", "m1", "--db", str(db), "--no-live", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert time.monotonic() - started < 15
    report = json.loads(out)
    assert report["status"] == "completed" and report["goal_reached"]

    async def check() -> None:
        backend = open_sqlite(db)
        final = await backend.store.load("m1")
        assert final is not None
        await _assert_finished_once(backend, final)
        await backend.close()

    asyncio.run(check())


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_interrupted_run_stops_cleanly_and_resumes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    as_json: bool,
):
    db = tmp_path / "reaper.db"
    lab_file = tmp_path / "lab.yaml"
    lab = _lab(n=6, latency=0.3)
    lab_file.write_text(yaml.safe_dump(lab.model_dump(mode="json", exclude_none=True)))
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "reaper.cli",
            "run",
            str(lab_file),
            "--db",
            str(db),
            "--no-live",
            "--no-input",
            *(["--json"] if as_json else []),
        ],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while _results_in(db) < 2:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the run produced no results"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "reaper resume m1" in " ".join(err.split())
    if as_json:  # the one error line is JSON
        assert json.loads(err.strip().splitlines()[-1])["code"] == 130
    assert "Traceback" not in err
    assert count_rows(db, "SELECT count(*) FROM missions WHERE status = 'completed'") == 0
    # Not `running`: nothing runs it any more, and status says so.
    assert count_rows(db, "SELECT count(*) FROM missions WHERE status = 'interrupted'") == 1

    # A clean stop leaves no lease behind: resuming at once works.
    monkeypatch.chdir(tmp_path)
    keep_root_logging(monkeypatch)
    assert main(["status", "m1", "--db", str(db), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "interrupted" and report["engine"]["owner"] is None
    assert main(["status", "m1", "--db", str(db)]) == 0
    assert "no engine runs it" in " ".join(capsys.readouterr().out.split())
    started = time.monotonic()
    rc = main(["resume", "m1", "--db", str(db), "--no-live", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert time.monotonic() - started < 10
    assert json.loads(out)["goal_reached"]

    async def check() -> None:
        backend = open_sqlite(db)
        final = await backend.store.load("m1")
        assert final is not None
        await _assert_finished_once(backend, final)
        await backend.close()

    asyncio.run(check())


def test_after_kill_9_status_says_the_engine_is_gone_and_resume_says_what_it_waits_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "reaper.db"
    lab_file = tmp_path / "lab.yaml"
    lab = _lab(n=3, latency=0.4)
    lab_file.write_text(yaml.safe_dump(lab.model_dump(mode="json", exclude_none=True)))
    proc = subprocess.Popen(
        [PYTHON, "-m", "reaper.cli", "run", str(lab_file), "--db", str(db), "--no-live"],
        cwd=tmp_path,
        env=cli_env(tmp_path, REAPER_LEASE_TTL_S="3"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while _results_in(db) < 1:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the run produced no results"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    monkeypatch.chdir(tmp_path)
    keep_root_logging(monkeypatch)
    monkeypatch.setenv("REAPER_LEASE_TTL_S", "3")
    assert main(["status", "m1", "--db", str(db), "--json"]) == 0
    engine = json.loads(capsys.readouterr().out)["engine"]
    assert engine["owner"] and engine["owner"].startswith("engine-")
    assert engine["alive"] is False and 0 < engine["expires_in_s"] <= 3
    assert main(["status", "m1", "--db", str(db)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"process {proc.pid} is not running" in out and "lease expires in" in out

    rc = main(["resume", "m1", "--db", str(db), "--no-live", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "waiting up to" in err and "is gone" in " ".join(err.split())
    assert json.loads(out)["goal_reached"]
