"""`reaper engine` and `reaper worker` as real processes: a mission completes, heartbeats show
in `reaper status`, SIGTERM stops them cleanly, `reaper run --no-workers` uses them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reaper.models import utcnow
from reaper.services.registry import ProcessInfo, open_registry
from tests.services.harness import (
    BACKENDS,
    ROOT,
    Cluster,
    backend_spec,
    check_invariants,
    lab,
    mission_id,
    submit,
    wait_done,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)


def _status(spec_flags: list[str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "reaper.cli", "status", *spec_flags],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("kind", BACKENDS)
async def test_engine_and_worker_processes_run_a_mission_and_stop_on_sigterm(
    kind: str, tmp_path: Path
) -> None:
    spec = backend_spec(kind, tmp_path)
    cluster = Cluster(spec, tmp_path / "logs")
    mid = mission_id("proc")
    wid = mission_id("wk")
    await submit(spec, lab(30, latency=(0.01, 0.03)), mid)
    backend = spec.open()
    registry = open_registry(None, store=spec.store)
    try:
        with cluster:
            engine = cluster.engine("--mission", mid)
            worker = cluster.worker("linux", "--worker-id", wid)
            final = await wait_done(backend, mid, timeout=40)
            stages = await check_invariants(backend, final)
            assert set(stages.values()) == {"baselined"}

            async def both_registered() -> list[ProcessInfo] | None:
                procs = await registry.list(utcnow())
                mine = [p for p in procs if p.process_id == wid or p.pid == engine.pid]
                done = any(p.counters.get("succeeded", 0) >= 60 for p in mine)
                return mine if len(mine) == 2 and done else None

            mine = await wait_for(both_registered, timeout=10, what="heartbeats")
            by_role = {p.role: p for p in mine}
            assert by_role["worker"].agent_type == "reaper-linux"
            assert by_role["worker"].alive(utcnow())
            text = _status(spec.flags)
            assert wid in text and "alive" in text and "engine" in text

            for proc in (engine, worker):
                proc.send_signal(signal.SIGTERM)
            assert engine.wait(15) == 0 and worker.wait(15) == 0
            left = [
                p
                for p in await registry.list(utcnow())
                if p.process_id == wid or p.pid == engine.pid
            ]
            assert left == []  # a graceful exit deregisters: gone, not "silent"
    finally:
        await registry.close()
        await backend.close()


async def test_sigterm_hands_in_flight_tasks_back_at_once(tmp_path: Path) -> None:
    # Leases of 30 s: the mission can only finish quickly if the stopping worker released
    # its tasks instead of letting the leases run out.
    spec = backend_spec("sqlite", tmp_path)
    cluster = Cluster(spec, tmp_path / "logs", lease_ttl_s=30.0)
    cluster.extra_env.update(REAPER_WORKER_GRACE_S="0.2", REAPER_HEARTBEAT_S="0.1")
    mid = mission_id("grace")
    await submit(spec, lab(4, latency=2.0), mid)
    backend = spec.open()
    registry = open_registry(None, store=spec.store)
    try:
        with cluster:
            cluster.engine("--mission", mid)
            first = cluster.worker("linux", "--worker-id", "first")

            async def busy() -> bool:
                procs = await registry.list(utcnow())
                return any(p.process_id == "first" and p.counters.get("in_flight") for p in procs)

            await wait_for(busy, timeout=20, what="the first worker to hold tasks")
            first.send_signal(signal.SIGTERM)
            assert first.wait(10) == 0
            log = next((tmp_path / "logs").glob("worker-1.log")).read_text()
            assert "released=4" in log  # all four held, none finished in the grace period
            cluster.worker("linux", "--worker-id", "second")
            final = await wait_done(backend, mid, timeout=20)  # well under the 30 s lease
            await check_invariants(backend, final)
    finally:
        await registry.close()
        await backend.close()


_LAB_YAML = """\
schema_version: 1
lab_type: cli-run
goal: baselined
policy: standard
planner: rule
defaults:
  transport: sim
hosts:
{hosts}
"""


async def test_run_no_workers_uses_a_separate_worker_process(tmp_path: Path) -> None:
    spec = backend_spec("sqlite", tmp_path)
    cluster = Cluster(spec, tmp_path / "logs")
    hosts = "\n".join(
        f"  - {{host_id: h{i}, os: linux, sim: {{latency_s: 0.01}}}}" for i in range(5)
    )
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text(_LAB_YAML.format(hosts=hosts))
    with cluster:
        cluster.worker("linux")
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "reaper.cli",
                "run",
                str(lab_file),
                "--mission-id",
                "clirun",
                "--no-workers",
                "--no-live",
                "--json",
                *spec.flags,
            ],
            cwd=ROOT,
            env={**os.environ, "REAPER_LEASE_TTL_S": "1"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        assert report["status"] == "completed" and report["goal_hosts"] == 5


async def test_follow_mission_prints_events_until_the_engine_process_finishes(
    tmp_path: Path,
) -> None:
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from reaper.cli.follow import follow_mission

    spec = backend_spec("sqlite", tmp_path)
    cluster = Cluster(spec, tmp_path / "logs")
    mid = mission_id("follow")
    await submit(spec, lab(5, latency=0.01), mid)
    backend = spec.open()
    err = io.StringIO()
    cli = SimpleNamespace(args=SimpleNamespace(json=False), err=Console(file=err, width=200))
    try:
        with cluster:
            cluster.engine("--mission", mid)
            cluster.worker("linux")
            final = await asyncio.wait_for(follow_mission(cli, backend, mid), 40)  # type: ignore[arg-type]
            await check_invariants(backend, final)
            assert "completed" in err.getvalue() and "h0004" in err.getvalue()
    finally:
        await backend.close()
