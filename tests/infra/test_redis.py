"""Redis-specific behaviour of the Streams queue and bus (the shared semantics are in
test_contract.py). Runs on the local Redis, db 15, each test under its own key prefix; the
reconnect test runs a throwaway redis-server it can kill."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from reaper.infra.base import OutboxItem
from reaper.infra.redis import RedisEventBus, RedisTaskQueue
from reaper.models import ResultEvent, ResultStatus, Task, utcnow
from tests.needs import port_open, require_service

pytestmark = pytest.mark.services

URL = os.environ.get("REAPER_TEST_REDIS", "redis://127.0.0.1:6379/15")
AGENT = "reaper-linux"


def _task(n: int = 1, attempt: int = 1, mission: str = "m1") -> Task:
    return Task(
        task_id=f"t{n}",
        mission_id=mission,
        host_id=f"h{n}",
        agent_type=AGENT,
        action="linux.discover",
        attempt=attempt,
    )


def _item(n: int = 1, attempt: int = 1, delay_s: float | None = None) -> OutboxItem:
    nb = None if delay_s is None else utcnow() + timedelta(seconds=delay_s)
    return OutboxItem(_task(n, attempt), not_before=nb)


def _result(n: int, mission: str) -> ResultEvent:
    return ResultEvent(
        task_id=f"t{n}",
        mission_id=mission,
        host_id=f"h{n}",
        agent_type=AGENT,
        action="linux.discover",
        status=ResultStatus.SUCCESS,
    )


@pytest.fixture
def _redis_up() -> None:
    require_service("redis", port_open("127.0.0.1", 6379), "no Redis on 127.0.0.1:6379")


@pytest.fixture
async def raw(_redis_up: None) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(raw: aioredis.Redis) -> AsyncIterator[str]:
    p = f"rt-{uuid.uuid4().hex[:10]}"
    yield p
    keys = [k async for k in raw.scan_iter(match=f"{p}:*")]
    if keys:
        await raw.delete(*keys)


@pytest.fixture
async def queue(prefix: str) -> AsyncIterator[RedisTaskQueue]:
    q = RedisTaskQueue(URL, prefix=prefix, max_deliveries=3)
    yield q
    await q.close()


async def test_publish_take_ack_round_trip(queue: RedisTaskQueue, raw: aioredis.Redis) -> None:
    await queue.publish([_item(1), _item(2)])
    assert await queue.depth(AGENT) == 2
    got = await queue.take(AGENT, max_items=5, timeout=1, worker_id="w1")
    assert [d.task.task_id for d in got] == ["t1", "t2"]
    assert all(d.delivery_count == 1 for d in got)
    assert await queue.depth(AGENT) == 0
    await queue.ack(got)
    assert await raw.xlen(queue.stream_key(AGENT)) == 0  # acked entries are deleted
    assert await queue.take(AGENT, timeout=0, worker_id="w1") == []


async def test_blocked_take_is_woken_by_publish(queue: RedisTaskQueue, prefix: str) -> None:
    other = RedisTaskQueue(URL, prefix=prefix)
    try:
        waiter = asyncio.create_task(other.take(AGENT, timeout=4, worker_id="w1"))
        await asyncio.sleep(0.05)  # let it reach XREADGROUP BLOCK (not needed for correctness)
        started = time.monotonic()
        await queue.publish([_item(1)])
        got = await asyncio.wait_for(waiter, 3)
        assert [d.task.task_id for d in got] == ["t1"]
        assert time.monotonic() - started < 1.0
    finally:
        await other.close()


async def test_dead_consumer_task_redelivered_after_lease(queue: RedisTaskQueue) -> None:
    await queue.publish([_item(1)])
    first = await queue.take(AGENT, timeout=1, lease_s=0.2, worker_id="dies")
    assert len(first) == 1
    started = time.monotonic()
    again = await queue.take(AGENT, timeout=3, lease_s=0.2, worker_id="survivor")
    assert time.monotonic() - started >= 0.15
    assert [d.task.task_id for d in again] == ["t1"]
    assert again[0].delivery_count == 2
    # The dead worker's late ack must not ack the survivor's delivery.
    await queue.ack(first)
    await queue.extend(first, 30)
    third = await queue.take(AGENT, timeout=3, lease_s=0.2, worker_id="third")
    assert third and third[0].delivery_count == 3
    await queue.ack(third)
    assert await queue.take(AGENT, timeout=0.4, lease_s=0.2, worker_id="x") == []


async def test_extend_keeps_the_lease(queue: RedisTaskQueue) -> None:
    await queue.publish([_item(1)])
    got = await queue.take(AGENT, timeout=1, lease_s=0.2, worker_id="w1")
    await queue.extend(got, 10)
    assert await queue.take(AGENT, timeout=0.5, lease_s=0.2, worker_id="w2") == []
    await queue.ack(got)


async def test_release_makes_task_visible_at_once(queue: RedisTaskQueue) -> None:
    await queue.publish([_item(1)])
    got = await queue.take(AGENT, timeout=1, lease_s=30, worker_id="w1")
    waiter = asyncio.create_task(queue.take(AGENT, timeout=3, lease_s=30, worker_id="w2"))
    await asyncio.sleep(0.05)
    await queue.release(got)
    again = await asyncio.wait_for(waiter, 2)
    assert [d.task.task_id for d in again] == ["t1"]
    assert again[0].delivery_count == 2


async def test_poison_message_is_dead_lettered(
    queue: RedisTaskQueue, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await queue.publish([_item(1)])
    counts = []
    for _ in range(3):  # max_deliveries=3: delivered three times, never acked
        got = await queue.take(AGENT, timeout=2, lease_s=0.05, worker_id="crashy")
        counts.append(got[0].delivery_count)
    assert counts == [1, 2, 3]
    with caplog.at_level(logging.ERROR, logger="reaper.infra.redis_queue"):
        assert await queue.take(AGENT, timeout=0.5, lease_s=0.05, worker_id="crashy") == []
    assert "dead-lettered" in caplog.text
    assert [t.task_id for t in await queue.dead_letters(AGENT)] == ["t1"]
    assert await raw.xlen(queue.stream_key(AGENT)) == 0
    assert (await raw.xpending(queue.stream_key(AGENT), "workers"))["pending"] == 0


async def test_trim_never_drops_unacknowledged_entries(
    queue: RedisTaskQueue, raw: aioredis.Redis
) -> None:
    await queue.publish([_item(n) for n in range(1, 6)])
    got = await queue.take(AGENT, max_items=3, timeout=1, lease_s=0.3, worker_id="w1")
    stream = queue.stream_key(AGENT)
    # Ack t1 and t3 the way another client might (XACK without XDEL): only they may go.
    await raw.xack(stream, "workers", got[0].receipt.split("|")[0], got[2].receipt.split("|")[0])
    removed = await queue.trim(AGENT)
    assert removed == 1  # t1: below the oldest pending (t2); t3 sits above it, kept for now
    ids = [fields for _, fields in await raw.xrange(stream)]
    assert len(ids) == 4
    # t2 (pending) comes back after its lease; t4, t5 (never delivered) are still there.
    rest = []
    while len(rest) < 3:
        batch = await queue.take(AGENT, max_items=5, timeout=2, lease_s=30, worker_id="w2")
        assert batch, "an unacknowledged entry was lost"
        rest += batch
    assert sorted(d.task.task_id for d in rest) == ["t2", "t4", "t5"]
    await queue.ack(rest)
    assert await queue.trim(AGENT) == 1  # t3: acked by XACK only, now below everything


async def test_delayed_publish_becomes_visible_when_due(queue: RedisTaskQueue) -> None:
    await queue.publish([_item(1, delay_s=0.4)])
    assert await queue.depth(AGENT) == 0
    assert await queue.take(AGENT, timeout=0, worker_id="w1") == []
    started = time.monotonic()
    got = await queue.take(AGENT, timeout=4, worker_id="w1")
    elapsed = time.monotonic() - started
    assert [d.task.task_id for d in got] == ["t1"]
    # Woken by the due time, not by the end of a long BLOCK.
    assert 0.2 <= elapsed < 1.5


async def test_publish_is_idempotent_per_task_and_attempt(queue: RedisTaskQueue) -> None:
    await queue.publish([_item(1), _item(1)])
    await queue.publish([_item(1)])
    await queue.publish([_item(1, attempt=2)])
    got = await queue.take(AGENT, max_items=10, timeout=1, worker_id="w1")
    assert sorted(d.task.key for d in got) == [("t1", 1), ("t1", 2)]
    await queue.ack(got)
    await queue.publish([_item(1)])  # after the ack too: the same attempt is not run again
    assert await queue.take(AGENT, timeout=0.2, worker_id="w1") == []


async def test_bus_batches_and_redelivers_to_the_engine_taking_over(prefix: str) -> None:
    mission = "m-bus"
    old = RedisEventBus(URL, prefix=prefix)
    new = RedisEventBus(URL, prefix=prefix)
    try:
        for n in range(1, 4):
            await old.publish(_result(n, mission))
        batch = await old.receive(mission, timeout=1)
        assert [d.message.task_id for d in batch] == ["t1", "t2", "t3"]
        await old.ack(mission, batch[:1])
        assert await old.receive(mission, timeout=0.1) == []
        # `old` dies here with t2, t3 unacked; `new` takes the mission over.
        await new.recover(mission)
        await new.publish(_result(4, mission))
        again = await new.receive(mission, timeout=1)
        assert [d.message.task_id for d in again] == ["t2", "t3"]
        assert all(d.delivery_count >= 2 for d in again)
        fresh = await new.receive(mission, timeout=1)
        assert [d.message.task_id for d in fresh] == ["t4"]
        await new.ack(mission, [*again, *fresh])
        await new.recover(mission)
        assert await new.receive(mission, timeout=0.1) == []
        assert await new.depth(mission) == 0
    finally:
        await old.close()
        await new.close()


# -- reconnect: a throwaway server we can kill ----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    def __init__(self, port: int, data: Path) -> None:
        self.port, self.data = port, data
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--dir", str(self.data),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port, 0.1):  # readiness, not synchronisation
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    binary = shutil.which("redis-server")
    require_service("redis-server binary", binary is not None, "redis-server not on PATH")
    srv = _Server(_free_port(), tmp_path)
    srv.start()
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.kill()


async def test_queue_survives_server_kill_and_restart(server: _Server) -> None:
    url = f"redis://127.0.0.1:{server.port}/0"
    queue = RedisTaskQueue(url)
    try:
        await queue.publish([_item(1)])
        server.kill()
        server.start()  # same port, same dir: the append-only file brings t1 back
        got = await queue.take(AGENT, timeout=2, worker_id="w1")
        assert [d.task.task_id for d in got] == ["t1"]
        await queue.ack(got)
        # Down for a moment while a call is in flight: redis-py's backoff retries carry it.
        server.kill()
        restart = asyncio.get_running_loop().run_in_executor(None, _restart_later, server)
        await queue.publish([_item(2)])
        await restart
        got = await queue.take(AGENT, timeout=2, worker_id="w1")
        assert [d.task.task_id for d in got] == ["t2"]
    finally:
        await queue.close()


def _restart_later(server: _Server) -> Any:
    time.sleep(0.3)  # the outage being simulated
    server.start()


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "unix:///tmp/none.sock", "rediss://h:1"]
)
def test_commands_are_packed_by_hiredis_exactly_as_redis_py_packs_them(url: str) -> None:
    from redis.asyncio.connection import Connection

    from reaper.infra.redis_conn import connect

    client = connect(url)
    cls = client.connection_pool.connection_class
    assert cls.__name__.startswith("HiredisPacking")
    ours = cls(decode_responses=True) if cls.__mro__[1] is Connection else None
    python = Connection(decode_responses=True)
    for args in [
        ("XGROUP CREATE", "s", "g", "0", "MKSTREAM"),
        ("EVALSHA", "ab" * 20, 0, "ünï©ødé ✓", 42, -7, b"raw\x00bytes", ""),
        (b"XADD", "k", "*", "b", '{"json": "with \\"quotes\\""}'),
    ]:
        if ours is not None:
            assert b"".join(ours.pack_command(*args)) == b"".join(python.pack_command(*args))
