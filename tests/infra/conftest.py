"""The backend conformance fixtures: one suite, every implementation.

`backend` is parametrised over memory, sqlite, redis, postgres, pgqueue, amqp and kafka, but
a test only runs against the implementations that provide the parts it asks for (`store`,
`queue`, `bus` fixtures): Redis provides the queue and bus, PostgreSQL the store, "pgqueue"
the PostgreSQL-only queue and bus (SKIP LOCKED, LISTEN/NOTIFY), "amqp" the RabbitMQ queue
(the broker on 127.0.0.1:5672) and "kafka" the Kafka bus (the session's Tansu broker).
Memory and SQLite run on a `ManualClock`, so leases and delays are tested without waiting; the
server-backed kinds keep their own time, so there `advance` really waits (for time to pass,
not to synchronise).
"""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reaper.bench.space import drop_keys, drop_schema
from reaper.clock import Clock, ManualClock, RealClock
from reaper.infra.base import Backend, EventBus, MissionStore, TaskQueue
from reaper.infra.factory import open_backend
from tests.needs import port_open, require_service

REDIS_URL = "redis://127.0.0.1:6379/15"
PG_URL = "postgresql://127.0.0.1:5432/test"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"

# Which parts each implementation provides natively.
PARTS: dict[str, set[str]] = {
    "memory": {"store", "queue", "bus"},
    "sqlite": {"store", "queue", "bus"},
    "redis": {"queue", "bus"},
    "postgres": {"store"},
    "pgqueue": {"queue", "bus"},
    "amqp": {"queue"},
    "kafka": {"bus"},
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_kind" not in metafunc.fixturenames:
        return
    needed = {part for part in ("store", "queue", "bus") if part in metafunc.fixturenames}
    kinds = [kind for kind, parts in PARTS.items() if needed <= parts]
    metafunc.parametrize("backend_kind", kinds)


def _require(kind: str, module: str, port: int) -> None:
    if importlib.util.find_spec(module) is None:
        # Not a missing service but a missing implementation: skip even when services are
        # required, so the suite is green until the module lands.
        pytest.skip(
            f"{kind}: {module} is not written yet (skipped even under REAPER_REQUIRE_SERVICES)"
        )
    require_service(kind, port_open("127.0.0.1", port), f"nothing listening on 127.0.0.1:{port}")


@dataclass
class Kit:
    kind: str
    backend: Backend
    clock: Clock
    space: str = "reaper"  # the PostgreSQL schema or Redis key prefix of server-backed kinds

    @property
    def manual(self) -> bool:
        return isinstance(self.clock, ManualClock)

    async def advance(self, seconds: float) -> None:
        """Let lease/visibility time pass: move a ManualClock, or wait for real time."""
        if isinstance(self.clock, ManualClock):
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    def lease(self, manual_s: float = 10.0, real_s: float = 0.3) -> float:
        return manual_s if self.manual else real_s


@pytest.fixture
async def kit(
    backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Kit]:
    # Server-backed kinds get a namespace of their own, dropped afterwards: nothing stays in
    # the shared `test` database or Redis db.
    space = f"ct_{uuid.uuid4().hex[:10]}"
    clock: Clock
    if backend_kind == "memory":
        clock = ManualClock()
        backend = open_backend("memory", clock=clock)
    elif backend_kind == "sqlite":
        clock = ManualClock()
        backend = open_backend(f"sqlite:///{tmp_path / 'reaper.db'}", clock=clock)
    elif backend_kind == "redis":
        _require("redis", "reaper.infra.redis", 6379)
        clock = RealClock()
        backend = open_backend(f"{REDIS_URL}?prefix={space}", store="memory", clock=clock)
    elif backend_kind == "pgqueue":
        _require("pgqueue", "reaper.infra.postgres_queue", 5432)
        clock = RealClock()
        backend = open_backend(f"{PG_URL}?schema={space}", store="memory", clock=clock)
    elif backend_kind == "amqp":
        _require("amqp", "reaper.infra.amqp_queue", 5672)
        clock = RealClock()
        # prefetch: the suite's takes hold deliveries unacked while asking for more.
        url = f"{AMQP_URL}?prefix={space}&prefetch=32"
        backend = open_backend("memory", queue=url, clock=clock)
    elif backend_kind == "kafka":
        broker = request.getfixturevalue("kafka_broker")
        clock = RealClock()
        backend = open_backend("memory", bus=f"{broker}?prefix={space}", clock=clock)
    else:
        _require("postgres", "reaper.infra.postgres", 5432)
        clock = RealClock()
        backend = open_backend(f"{PG_URL}?schema={space}", queue="memory", clock=clock)
    server = backend_kind in ("redis", "pgqueue", "postgres", "amqp", "kafka")
    yield Kit(backend_kind, backend, clock, space if server else "reaper")
    if backend_kind == "amqp":  # the test's queues, off the shared broker
        await backend.queue.delete_queues()  # type: ignore[attr-defined]
    await backend.close()
    if backend_kind in ("pgqueue", "postgres"):
        await drop_schema(PG_URL, space)
    elif backend_kind == "redis":
        await drop_keys(REDIS_URL, space)


@pytest.fixture
def backend(kit: Kit) -> Backend:
    return kit.backend


@pytest.fixture
def store(kit: Kit) -> MissionStore:
    return kit.backend.store


@pytest.fixture
def queue(kit: Kit) -> TaskQueue:
    return kit.backend.queue


@pytest.fixture
def bus(kit: Kit) -> EventBus:
    return kit.backend.bus


@pytest.fixture
def uid() -> str:
    """A suffix unique to this test run, so shared servers never mix runs."""
    return uuid.uuid4().hex[:10]
