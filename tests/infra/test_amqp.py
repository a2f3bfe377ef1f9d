"""RabbitMQ specifics beyond the contract suite: dead-lettering past the delivery limit,
redelivery when a consumer's connection closes, combined specs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from reaper.infra.factory import open_backend, parse_spec
from tests.infra import builders as b
from tests.infra.conftest import AMQP_URL
from tests.needs import port_open, require_service

pytest.importorskip("aio_pika")

from reaper.errors import BackendError
from reaper.infra import amqp_queue
from reaper.infra.amqp_conn import Consumer, delay_bucket_ms
from reaper.infra.amqp_queue import AmqpTaskQueue


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_service("rabbitmq", port_open("127.0.0.1", 5672), "nothing on 127.0.0.1:5672")
    name = f"ct_{uuid.uuid4().hex[:10]}"
    yield name
    cleanup = AmqpTaskQueue(AMQP_URL, prefix=name)
    await cleanup.delete_queues([f"t{name}"])
    await cleanup.close()


async def test_a_task_past_its_delivery_limit_is_dead_lettered(prefix: str) -> None:
    agent = f"t{prefix}"
    queue = AmqpTaskQueue(AMQP_URL, prefix=prefix, max_deliveries=3, prefetch=4)
    try:
        await queue.publish([b.item("m", 1, agent)])
        counts = []
        while got := await queue.take(agent, timeout=2):
            counts.append(got[0].delivery_count)
            await queue.release(got)
        assert counts == [1, 2, 3]  # delivered max_deliveries times, then dead-lettered
        assert [t.task_id for t in await queue.dead_letters(agent)] == ["m-s1-1"]
    finally:
        await queue.close()


async def test_a_closed_connection_hands_its_deliveries_back(prefix: str) -> None:
    agent = f"t{prefix}"
    dying = AmqpTaskQueue(AMQP_URL, prefix=prefix, prefetch=4)
    survivor = AmqpTaskQueue(AMQP_URL, prefix=prefix, prefetch=4)
    try:
        await dying.publish([b.item("m", i, agent) for i in range(3)])
        held = await dying.take(agent, max_items=3, timeout=2, lease_s=300)
        assert len(held) == 3
        assert await survivor.take(agent, timeout=0.2) == []
        await dying.close()  # as a killed worker's socket closing
        again = []
        while len(again) < 3 and (got := await survivor.take(agent, max_items=3, timeout=5)):
            again += got
        assert sorted(d.task.task_id for d in again) == [f"m-s1-{i}" for i in range(3)]
        assert {d.delivery_count for d in again} == {2}
        await survivor.ack(again)
    finally:
        await survivor.close()


async def test_a_batch_publish_to_a_deleted_queue_fails_as_returned(prefix: str) -> None:
    agent = f"t{prefix}"
    queue = AmqpTaskQueue(AMQP_URL, prefix=prefix)
    other = AmqpTaskQueue(AMQP_URL, prefix=prefix)
    try:
        await queue.publish([b.item("m", i, agent) for i in range(3)])  # one write, 3 confirms
        assert await queue.depth(agent) == 3
        await other.delete_queues([agent])
        with pytest.raises(BackendError, match="2 task"):
            await queue.publish([b.item("m", i, agent) for i in range(3, 5)])
        # Not published, so not remembered: a retry is not dropped as a duplicate.
        assert {("m-s1-3", 1), ("m-s1-4", 1)}.isdisjoint(queue._seen)
    finally:
        await queue.close()
        await other.close()


def test_delay_buckets_round_up_to_two_digits() -> None:
    assert [delay_bucket_ms(ms) for ms in (1, 99, 101, 1234, 98_765)] == [
        1, 99, 110, 1300, 99_000,
    ]  # fmt: skip


def test_combined_specs_pick_the_parts() -> None:
    assert [p.kind for p in parse_spec("amqp+postgres")] == ["amqp", "postgres"]
    assert [p.kind for p in parse_spec("redis+kafka+postgres")] == ["redis", "kafka", "postgres"]
    backend = open_backend("memory", queue=f"{AMQP_URL}?prefix=x&prefetch=7")
    assert isinstance(backend.queue, AmqpTaskQueue)
    assert "guest:***@" in backend.description


class _Delivery:
    """What the consumer buffers from aiormq: a body, a tag, headers."""

    def __init__(self, body: bytes, tag: int) -> None:
        self.body, self.delivery_tag = body, tag
        self.header = SimpleNamespace(properties=SimpleNamespace(headers={}))


class _Channel:
    is_closed = False


def _fed(prefetch: int) -> tuple[AmqpTaskQueue, Callable[[int], Awaitable[None]]]:
    """A queue whose consumer is fed by hand, one delivery per turn of the event loop (as
    the broker's burst arrives): the take's gathering without a broker's timing."""
    queue = AmqpTaskQueue(AMQP_URL, prefetch=prefetch)
    consumer = Consumer(cast(Any, None), cast(Any, None), prefetch)
    queue._consumers["t"] = consumer
    channel = cast(Any, _Channel())

    async def feed(n: int) -> None:
        for i in range(1, n + 1):
            await asyncio.sleep(0)
            body = b.task("m", i, "t").model_dump_json().encode()
            queue._settler.delivered(channel, i)
            consumer.buffer.append((cast(Any, _Delivery(body, i)), channel))
            consumer.arrived.set()

    return queue, feed


@pytest.mark.parametrize(("prefetch", "max_items", "sent", "taken"), [(3, 10, 5, 3), (8, 4, 6, 4)])
async def test_a_take_gathers_a_burst_up_to_the_prefetch_or_its_max(
    monkeypatch: pytest.MonkeyPatch, prefetch: int, max_items: int, sent: int, taken: int
) -> None:
    # A window far longer than the test may take: only the prefetch or max_items end it.
    monkeypatch.setattr(amqp_queue, "GATHER_S", 60.0)
    monkeypatch.setattr(amqp_queue, "GATHER_MAX_S", 60.0)
    queue, feed = _fed(prefetch)
    feeder = asyncio.create_task(feed(sent))
    got = await asyncio.wait_for(queue.take("t", max_items=max_items, timeout=5), timeout=10)
    assert [d.task.params["i"] for d in got] == list(range(1, taken + 1))
    await feeder


async def test_a_take_on_a_quiet_queue_waits_one_short_window() -> None:
    queue, feed = _fed(8)
    feeder = asyncio.create_task(feed(1))
    loop = asyncio.get_running_loop()
    start = loop.time()
    got = await queue.take("t", max_items=8, timeout=5)
    assert len(got) == 1
    assert loop.time() - start < 1.0  # GATHER_S after the last delivery, not the timeout
    assert await queue.take("t", max_items=8, timeout=0) == []  # no wait, no round trip
    await feeder
