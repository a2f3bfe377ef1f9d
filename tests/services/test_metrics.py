"""Prometheus metrics and alerts: counters fed from committed events, scraped over HTTP from
real engine and worker processes; alert log records and `reaper status` banners."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from reaper.cli.processes import render_processes
from reaper.models import (
    EventKind,
    EventRecord,
    HostState,
    MissionState,
    ResultEvent,
    ResultStatus,
    SimFault,
    SimSettings,
    utcnow,
)
from reaper.services.alerts import alerts_from_events, alerts_from_processes
from reaper.services.metrics import Metrics
from reaper.services.registry import ProcessInfo, SqliteRegistry, open_registry
from tests.services.harness import (
    ROOT,
    Cluster,
    backend_spec,
    free_port,
    lab,
    mission_id,
    submit,
    wait_done,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, lab_), v in samples.items() if n == name and want <= set(lab_))


def _process(process_id: str, now: datetime, **fields: Any) -> ProcessInfo:
    """A heartbeat record: a worker on host x, started and seen `now`, unless `fields` say."""
    base = {"role": "worker", "host": "x", "pid": 1, "started": now, "last_seen": now}
    return ProcessInfo(process_id=process_id, interval_s=1.0, **{**base, **fields})


def test_engine_metrics_count_queued_results_latency_and_llm_usage() -> None:
    metrics = Metrics()
    state = MissionState(
        mission_id="m1", lab_type="t", hosts={"h1": HostState(host_id="h1", os="linux")}
    )
    ok = ResultEvent(
        task_id="t1",
        mission_id="m1",
        host_id="h1",
        agent_type="reaper-linux",
        action="linux.discover",
        status=ResultStatus.SUCCESS,
        ts=utcnow() - timedelta(milliseconds=20),
    )
    bad = ok.model_copy(update={"task_id": "t2", "status": ResultStatus.ERROR})
    decision = {
        "planner": "llm",
        "model": "claude-x",
        "calls": 2,
        "cost_usd": 0.0125,
        "usage": {"input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 0},
    }
    events = [
        EventRecord(mission_id="m1", kind=EventKind.TASK_RESULT, payload={"result": ok}),
        EventRecord(mission_id="m1", kind=EventKind.TASK_RESULT, payload={"result": bad}),
        EventRecord(mission_id="m1", kind=EventKind.PLANNER_DECISION, payload=decision),
        EventRecord(mission_id="m1", kind=EventKind.PLANNER_DECISION, payload={"planner": "rule"}),
    ]
    metrics.observe_events(state, events)
    s = _samples(metrics.render().decode())
    task = {"agent_type": "reaper-linux", "action": "linux.discover"}
    assert _total(s, "reaper_tasks_done_total", **task) == 1
    assert _total(s, "reaper_tasks_failed_total", **task) == 1
    assert _total(s, "reaper_result_latency_seconds_count") == 2
    assert 0.015 < _total(s, "reaper_result_latency_seconds_sum") < 5
    assert _total(s, "reaper_llm_calls_total", model="claude-x") == 2
    assert _total(s, "reaper_llm_tokens_total", model="claude-x", kind="input_tokens") == 1000
    assert _total(s, "reaper_llm_tokens_total", model="claude-x", kind="output_tokens") == 200
    assert _total(s, "reaper_llm_cost_usd_total", model="claude-x") == pytest.approx(0.0125)
    assert _total(s, "reaper_hosts_locked", mission_id="m1") == 0


def test_dispatch_window_gauge_per_mission_run_here() -> None:
    m = Metrics()
    m.set_window("m1", 64)
    m.set_window("m1", 48)
    m.set_window("m2", 256)
    s = _samples(m.render().decode())
    assert _total(s, "reaper_dispatch_window", mission_id="m1") == 48
    assert _total(s, "reaper_dispatch_window", mission_id="m2") == 256
    m.set_window("m1", None)  # the mission ended here: no stale series
    m.set_window("m1", None)
    s = _samples(m.render().decode())
    assert ("reaper_dispatch_window", (("mission_id", "m1"),)) not in s
    assert _total(s, "reaper_dispatch_window", mission_id="m2") == 256


def test_alerts_for_locked_hosts_stalls_and_silent_workers() -> None:
    events = [
        EventRecord(
            mission_id="m",
            kind=EventKind.HOST_LOCKED,
            payload={"host_id": "h1", "reason": "3 failures"},
        ),
        EventRecord(
            mission_id="m",
            kind=EventKind.STATUS_CHANGED,
            payload={"from": "running", "to": "stalled", "reason": "no result"},
        ),
        EventRecord(
            mission_id="m",
            kind=EventKind.STATUS_CHANGED,
            payload={"from": "stalled", "to": "running", "reason": "progress"},
        ),
    ]
    assert [a.kind for a in alerts_from_events("m", events)] == ["host_locked", "mission_stalled"]
    now = utcnow()
    fresh = _process("a", now, last_seen=now - timedelta(seconds=2.9))
    stale = _process("b", now, last_seen=now - timedelta(seconds=3.1))
    assert [a.subject for a in alerts_from_processes([fresh, stale], now)] == ["b"]


async def test_sqlite_registry_round_trip_and_prunes(tmp_path: Path) -> None:
    reg = SqliteRegistry(tmp_path / "r.db")
    now = utcnow()
    old = _process("old", now, role="engine", last_seen=now - timedelta(hours=2))
    new = old.model_copy(update={"process_id": "new", "last_seen": now, "counters": {"n": 3}})
    await reg.beat(old)
    await reg.beat(new)
    assert [p.process_id for p in await reg.list(now)] == ["new"]
    assert (await reg.list(now))[0].counters == {"n": 3}
    await reg.remove("new")
    assert await reg.list(now) == []
    await reg.close()


async def test_postgres_registry_keeps_to_its_schema(tmp_path: Path) -> None:
    """Deployments sharing a server (`?schema=`) see only their own processes."""
    one, two = backend_spec("postgres", tmp_path), backend_spec("postgres", tmp_path)
    regs = [open_registry(None, store=one.store), open_registry(None, store=two.store)]
    now = utcnow()
    try:
        await regs[0].beat(_process("in-one", now))
        await regs[1].beat(_process("in-two", now))
        assert [p.process_id for p in await regs[0].list(now)] == ["in-one"]
        assert [p.process_id for p in await regs[1].list(now)] == ["in-two"]
    finally:
        for reg in regs:
            await reg.close()


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


async def test_processes_serve_metrics_and_raise_alerts(tmp_path: Path) -> None:
    spec = backend_spec("sqlite", tmp_path)
    cluster = Cluster(spec, tmp_path / "logs", lease_ttl_s=1.0)
    cluster.extra_env["REAPER_HEARTBEAT_S"] = "0.1"
    the_lab = lab(10, latency=0.01, max_failures=1)
    the_lab.hosts[0].sim = SimSettings(faults=[SimFault(kind="auth_failure")])
    mid = mission_id("metrics")
    await submit(spec, the_lab, mid)
    backend = spec.open()
    e_port, w_port = free_port(), free_port()
    try:
        with cluster:
            engine = cluster.engine("--mission", mid, "--metrics-port", str(e_port))
            worker = cluster.worker("linux", "--metrics-port", str(w_port))
            final = await wait_done(backend, mid, timeout=40)
            applied = sum(
                1 for e in await backend.store.events(mid) if e.kind is EventKind.TASK_RESULT
            )
            locked = [h for h in final.hosts.values() if h.locked]
            assert [h.host_id for h in locked] == ["h0000"]

            async def engine_caught_up() -> (
                dict[tuple[str, tuple[tuple[str, str], ...]], float] | None
            ):
                text = _scrape(e_port)
                if text is None:
                    return None
                s = _samples(text)
                return s if _total(s, "reaper_missions", status="completed") >= 1 else None

            s = await wait_for(engine_caught_up, timeout=15, what="engine metrics")
            linux = {"agent_type": "reaper-linux"}
            done = _total(s, "reaper_tasks_done_total", **linux)
            failed = _total(s, "reaper_tasks_failed_total", **linux)
            assert done + failed == applied
            assert _total(s, "reaper_tasks_done_total", action="linux.discover") == 9
            assert _total(s, "reaper_tasks_queued_total", **linux) == len(final.tasks)
            assert _total(s, "reaper_result_latency_seconds_count") == applied
            assert _total(s, "reaper_hosts_locked", mission_id=mid) == 1
            assert _total(s, "reaper_alerts_total", kind="host_locked") == 1

            async def worker_scraped() -> str | None:
                return _scrape(w_port)

            ws = _samples(await wait_for(worker_scraped, timeout=10, what="worker metrics"))
            assert _total(ws, "reaper_worker_results_total", **linux) >= applied
            assert ("reaper_queue_depth", (("agent_type", "reaper-linux"),)) in ws
            assert ("reaper_tasks_running", (("agent_type", "reaper-linux"),)) in ws

            # A worker that dies stops heart-beating: the engine logs it, `status` shows it.
            cluster.kill(worker)

            async def engine_alerted() -> bool:
                return "ALERT worker_silent" in (tmp_path / "logs" / "engine-0.log").read_text()

            await wait_for(engine_alerted, timeout=10, what="the silent alert")
            status = subprocess.run(
                [sys.executable, "-m", "reaper.cli", "status", *spec.flags],
                cwd=ROOT,
                env={**os.environ, "COLUMNS": "250"},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert status.returncode == 0, status.stderr
            assert "worker silent" in status.stdout and "silent" in status.stdout
            assert "engine" in status.stdout and "alive" in status.stdout
            engine.send_signal(signal.SIGTERM)
            assert engine.wait(10) == 0
            log = (tmp_path / "logs" / "engine-0.log").read_text()
            assert "ALERT host_locked" in log
    finally:
        await backend.close()


def test_the_process_table_shows_ids_and_counts_whole_narrow_or_wide() -> None:
    now = utcnow()
    worker = _process(
        "vm-24751-8eba9fd0",
        now,
        agent_type="reaper-linux",
        host="lab-runner-07.example.internal",
        pid=24751,
        started=now - timedelta(hours=3, minutes=5),
        last_seen=now - timedelta(seconds=1.5),
        counters={"taken": 40_000, "succeeded": 39_990, "failed": 10, "errors.TIMEOUT": 10},
    )
    engine = worker.model_copy(
        update={
            "process_id": "engine-vm-24746-da33fe",
            "role": "engine",
            "agent_type": None,
            "missions": ["lab-baseline-01"],
            "last_seen": now - timedelta(minutes=8),
            "counters": {"running": 1},
        }
    )
    for width in (80, 160):
        console = Console(file=StringIO(), width=width, color_system=None)
        console.print(render_processes([engine, worker], now, width=width))
        out = console.file.getvalue()  # type: ignore[attr-defined]
        assert "…" not in out and max(len(line) for line in out.splitlines()) <= width
        for whole in ("engine-vm-24746-da33fe", "vm-24751-8eba9fd0", "lab-baseline-01"):
            assert whole in out
        assert "reaper-linux" in out and "taken=40000" in out and "succeeded=39990" in out
        assert "3h05m" in out and "alive" in out and "silent" in out
        assert "1.5s ago" in out and "8m ago" in out
