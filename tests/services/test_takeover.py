"""Crashes across processes: a worker or an engine SIGKILLed mid-mission, an engine stopped
with SIGTERM, the Redis server killed and restarted. The mission completes every time, with
each result applied once."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reaper.infra.base import Backend
from reaper.models import utcnow
from reaper.services.registry import open_registry
from tests.needs import require_service
from tests.services.harness import (
    BACKENDS,
    Cluster,
    Spec,
    backend_spec,
    check_invariants,
    free_port,
    lab,
    mission_id,
    results_applied,
    submit,
    wait_done,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


async def _engine_applying_results(
    cluster: Cluster, backend: Backend, mid: str
) -> subprocess.Popen[bytes]:
    """An engine for the mission and a linux worker, once the engine has applied results."""
    first = cluster.engine("--mission", mid)
    cluster.worker("linux")

    async def started() -> bool:
        return await results_applied(backend, mid) >= 5

    await wait_for(started, timeout=20, what="the first engine to apply results")
    return first


@pytest.mark.parametrize("kind", BACKENDS)
async def test_worker_killed_mid_task_its_tasks_are_redelivered(kind: str, tmp_path: Path) -> None:
    spec = backend_spec(kind, tmp_path)
    cluster = Cluster(spec, tmp_path / "logs", lease_ttl_s=1.0)
    cluster.extra_env["REAPER_HEARTBEAT_S"] = "0.1"
    mid = mission_id("wkill")
    await submit(spec, lab(6, latency=1.5), mid)
    backend = spec.open()
    registry = open_registry(None, store=spec.store)
    try:
        with cluster:
            cluster.engine("--mission", mid)
            victim = cluster.worker("linux", "--worker-id", f"victim-{mid}")

            async def holding() -> int | None:
                for p in await registry.list(utcnow()):
                    if p.process_id == f"victim-{mid}" and p.counters.get("in_flight"):
                        return p.counters["in_flight"]
                return None

            held = await wait_for(holding, timeout=20, what="the victim to hold tasks")
            cluster.kill(victim)  # mid-task: its sim tasks take 1.5 s
            assert await results_applied(backend, mid) < 6  # its tasks had not finished
            cluster.worker("linux")
            final = await wait_done(backend, mid, timeout=40)
            await check_invariants(backend, final)
            assert held >= 1
    finally:
        await registry.close()
        await backend.close()


@pytest.mark.parametrize("kind", BACKENDS)
async def test_engine_killed_mid_mission_another_engine_takes_over(
    kind: str, tmp_path: Path
) -> None:
    spec = backend_spec(kind, tmp_path)
    cluster = Cluster(spec, tmp_path / "logs", lease_ttl_s=1.0)
    mid = mission_id("ekill")
    await submit(spec, lab(40, latency=(0.05, 0.15)), mid)
    backend = spec.open()
    try:
        with cluster:
            first = await _engine_applying_results(cluster, backend, mid)
            second = cluster.engine("--mission", mid)
            cluster.kill(first)
            assert (await backend.store.load(mid)).status.terminal is False  # type: ignore[union-attr]
            final = await wait_done(backend, mid, timeout=40)
            await check_invariants(backend, final)
            log = (tmp_path / "logs").joinpath("engine-2.log").read_text()
            assert f"running mission {mid}" in log and "completed" in log
            assert second.poll() is None
    finally:
        await backend.close()


async def test_sigterm_releases_the_mission_lease_at_once(tmp_path: Path) -> None:
    # A 30 s lease: the second engine can only take over quickly if the first released it.
    spec = backend_spec("sqlite", tmp_path)
    cluster = Cluster(spec, tmp_path / "logs", lease_ttl_s=30.0)
    mid = mission_id("eterm")
    await submit(spec, lab(40, latency=(0.05, 0.15)), mid)
    backend = spec.open()
    try:
        with cluster:
            first = await _engine_applying_results(cluster, backend, mid)
            cluster.engine("--mission", mid)
            first.send_signal(signal.SIGTERM)
            assert first.wait(10) == 0
            t0 = time.monotonic()
            final = await wait_done(backend, mid, timeout=25)
            assert time.monotonic() - t0 < 25
            await check_invariants(backend, final)
    finally:
        await backend.close()


def _redis_server(port: int, data: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc


async def _ping(port: int) -> bool:
    import redis.asyncio as aioredis

    client = aioredis.Redis(port=port)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", ["redis", "redis+kafka"])
async def test_redis_restarted_mid_mission_the_mission_recovers(kind: str, tmp_path: Path) -> None:
    """With `redis+kafka` the bus is Kafka's: the results already on it outlive the outage
    of the queue's server."""
    require_service("redis-server", shutil.which("redis-server") is not None, "not installed")
    backend_spec("redis+postgres", tmp_path)  # skips unless the redis backend is importable
    bus = None
    if kind == "redis+kafka":
        bus = f"{backend_spec('redis+kafka+postgres', tmp_path).bus}"
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    server = _redis_server(port, data)
    redis_url = f"redis://127.0.0.1:{port}/0"
    db = f"sqlite:///{tmp_path / 'store.db'}"
    spec = Spec(db, redis_url, bus=bus)
    cluster = Cluster(spec, tmp_path / "logs", lease_ttl_s=1.0)
    mid = mission_id("rkill")
    backend = None
    try:
        with cluster:
            await wait_for(lambda: _ping(port), timeout=10, what="redis-server")
            await submit(spec, lab(40, latency=(0.05, 0.15)), mid)
            backend = spec.open()
            cluster.engine("--mission", mid)
            cluster.worker("linux")

            async def started() -> bool:
                return await results_applied(backend, mid) >= 10

            await wait_for(started, timeout=20, what="results before the outage")
            server.kill()  # every connection drops mid-mission
            server.wait(10)
            server = _redis_server(port, data)  # same AOF: the streams come back
            final = await wait_done(backend, mid, timeout=60)
            await check_invariants(backend, final)
    finally:
        server.kill()
        server.wait(10)
        if backend is not None:
            await backend.close()
