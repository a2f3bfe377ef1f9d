"""Real `reaper engine` / `reaper worker` processes against a shared backend, for the scale
tests: spawn, kill, wait for a mission, check the invariants of an at-least-once pipeline.

Waiting here is on another process's effect on the store, which nothing in the store
notifies across processes: `wait_for` re-checks with a short backoff up to a deadline (the
same documented exception as SQLite's `PRAGMA data_version` check).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from reaper.infra.base import Backend
from reaper.infra.factory import open_backend
from reaper.lab import LabFile, LabHost
from reaper.models import EventKind, MissionState, MissionStatus, SimSettings
from reaper.overseer import Overseer
from tests.needs import port_open, require_service

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
# A db of its own, never flushed: test runs (other sessions' too) may overlap, and sharing is
# safe because every worker may serve every mission (tasks and hosts share the one store).
REDIS_URL = "redis://127.0.0.1:6379/14"
POSTGRES_URL = "postgresql://127.0.0.1:5432/test"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
BACKENDS = ["sqlite", "redis+postgres", "amqp+postgres", "redis+kafka+postgres"]
NAMESPACES: list[tuple[str, str]] = []  # (schema and key prefix, Redis URL) made by backend_spec
AMQP_NAMESPACES: list[tuple[str, str]] = []  # (queue prefix, AMQP URL) made by backend_spec
# The session's Kafka-protocol broker (kafka://…), set by conftest for kinds naming kafka.
KAFKA: dict[str, str] = {}


@dataclass
class Spec:
    """Backend flags for the processes, and the same for `open_backend` in the test."""

    store: str
    queue: str
    bus: str | None = None  # None: the queue's own bus

    @property
    def flags(self) -> list[str]:
        bus = [] if self.bus is None else ["--bus", self.bus]
        return ["--store", self.store, "--queue", self.queue, *bus]

    def open(self) -> Backend:
        return open_backend(None, store=self.store, queue=self.queue, bus=self.bus)


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _require(module: str, port: int | None) -> None:
    require_service(module, _importable(module), "backend module not importable")
    if port is not None:
        require_service(f"127.0.0.1:{port}", port_open("127.0.0.1", port), "service not listening")


def backend_spec(
    kind: str, tmp_path: Path, *, redis_url: str = REDIS_URL, amqp_url: str = AMQP_URL
) -> Spec:
    if kind == "sqlite":
        db = f"sqlite:///{tmp_path / 'reaper.db'}"
        return Spec(db, db)
    if kind == "amqp+postgres":
        _require("reaper.infra.postgres", 5432)
        _require("reaper.infra.amqp_queue", 5672 if amqp_url == AMQP_URL else None)
        name = f"scale_{uuid.uuid4().hex[:10]}"
        NAMESPACES.append((name, ""))
        AMQP_NAMESPACES.append((name, amqp_url))
        pg = f"{POSTGRES_URL}?schema={name}"
        # amqp is a queue alone: the bus is PostgreSQL's (LISTEN/NOTIFY).
        return Spec(pg, f"{amqp_url}?prefix={name}", bus=pg)
    if kind == "redis+kafka+postgres":
        _require("reaper.infra.kafka_bus", None)
        require_service("kafka", "url" in KAFKA, "no Kafka broker fixture for this test")
        spec = backend_spec("redis+postgres", tmp_path, redis_url=redis_url)
        name = NAMESPACES[-1][0]
        return Spec(spec.store, spec.queue, bus=f"{KAFKA['url']}?prefix={name}")
    for module, port in (("reaper.infra.redis", 6379), ("reaper.infra.postgres", 5432)):
        require_service(module, _importable(module), "backend module not importable")
        if redis_url == REDIS_URL or port == 5432:
            require_service(
                f"127.0.0.1:{port}", port_open("127.0.0.1", port), "service not listening"
            )
    # A namespace per spec (a PostgreSQL schema, a Redis key prefix), dropped when the test
    # session ends (see conftest.py): nothing stays in the shared `test` database.
    name = f"scale_{uuid.uuid4().hex[:10]}"
    NAMESPACES.append((name, redis_url))
    return Spec(f"{POSTGRES_URL}?schema={name}", f"{redis_url}?prefix={name}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lab(
    hosts: int,
    *,
    latency: float | tuple[float, float] = 0.0,
    os_name: str = "linux",
    mission_id: str | None = None,
    **settings: Any,
) -> LabFile:
    return LabFile(
        mission_id=mission_id,
        lab_type="scale-test",
        policy="standard",
        settings={"stall_after_s": 120, "retry_backoff_s": 0.05, **settings},
        hosts=[
            LabHost(
                host_id=f"h{i:04d}",
                os=os_name,
                transport="sim",
                sim=SimSettings(latency_s=latency),
            )
            for i in range(hosts)
        ],
    )


def mission_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Cluster:
    """Processes of one test; every one still running is killed at `close`."""

    spec: Spec
    logs: Path
    lease_ttl_s: float = 1.0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "REAPER_LEASE_TTL_S": str(self.lease_ttl_s),
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "200",  # rich wraps log lines at the console width
            **self.extra_env,
        }
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "reaper.cli", *args, *self.spec.flags, "--log-level", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def engine(self, *extra: str) -> subprocess.Popen[bytes]:
        return self._spawn("engine", ["engine", *extra])

    def worker(
        self, os_name: str = "linux", *extra: str, concurrency: int = 8
    ) -> subprocess.Popen[bytes]:
        return self._spawn(
            "worker", ["worker", "--os", os_name, "--concurrency", str(concurrency), *extra]
        )

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(10)

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def close(self) -> None:
        for p in self.alive():
            p.kill()
        for p in self.procs:
            p.wait(10)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        """Kill what is still running; on a failure, print the processes' logs first."""
        if exc_type is not None:
            print(self.output())
        self.close()

    def output(self) -> str:
        return "\n".join(
            f"== {f.name}\n{f.read_text(errors='replace')[-3000:]}"
            for f in sorted(self.logs.glob("*.log"))
        )


async def wait_for(check: Callable[[], Awaitable[T | None]], *, timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        got = await check()
        if got is not None and got is not False:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.25)


async def submit(spec: Spec, the_lab: LabFile, mid: str) -> None:
    backend = spec.open()
    try:
        await Overseer(backend).create_mission(the_lab, mid)
    finally:
        await backend.close()


async def load(backend: Backend, mid: str) -> MissionState:
    state = await backend.store.load(mid)
    assert state is not None, mid
    return state


async def wait_done(backend: Backend, mid: str, *, timeout: float) -> MissionState:
    async def done() -> MissionState | None:
        state = await backend.store.load(mid)
        return state if state is not None and state.status.terminal else None

    try:
        return await wait_for(done, timeout=timeout, what=f"mission {mid} to end")
    except TimeoutError as exc:
        # What it was waiting on: the tasks by status, and the open ones.
        state = await backend.store.load(mid)
        if state is None:
            raise
        by = Counter(r.status.value for r in state.tasks.values())
        open_ = [f"{t}:{r.task.action}@{r.task.attempt}:{r.status.value}"
                 for t, r in state.tasks.items() if not r.status.done][:10]  # fmt: skip
        raise TimeoutError(
            f"{exc}; status {state.status.value}, tasks {dict(by)}, "
            f"results applied {await results_applied(backend, mid)}, open {open_}"
        ) from None


async def results_applied(backend: Backend, mid: str) -> int:
    events = await backend.store.events(mid)
    return sum(1 for e in events if e.kind is EventKind.TASK_RESULT)


async def check_invariants(backend: Backend, state: MissionState) -> dict[str, Any]:
    """Completed, every host at the goal, nothing lost, nothing applied twice, no locks."""
    mid = state.mission_id
    assert state.status is MissionStatus.COMPLETED, (state.status, state.status_reason)
    assert state.goal_reached
    events = await backend.store.events(mid)
    keys = Counter()  # type: Counter[tuple[str, int]]
    for e in events:
        if e.kind is EventKind.TASK_RESULT:
            r = e.result()
            assert r is not None
            keys[r.key] += 1
    twice = {k: n for k, n in keys.items() if n != 1}
    assert not twice, f"results applied more than once: {twice}"
    for rec in state.tasks.values():  # no task lost: every one finished, with its result
        assert rec.status.done, (rec.task.task_id, rec.status)
        assert keys[rec.task.key] == 1, rec.task.key
    locked = [h.host_id for h in state.hosts.values() if h.locked or h.failure_count]
    assert not locked, f"hosts locked or failing: {locked}"
    assert all(h.stage.rank >= state.goal.rank for h in state.hosts.values())
    return {h.host_id: h.stage.value for h in state.hosts.values()}
