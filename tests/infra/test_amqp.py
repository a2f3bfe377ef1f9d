"""RabbitMQ specifics beyond the contract suite: dead-lettering past the delivery limit,
redelivery when a consumer's connection closes, combined specs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from reaper.infra.factory import open_backend, parse_spec
from tests.infra import builders as b
from tests.infra.conftest import AMQP_URL
from tests.needs import port_open, require_service

pytest.importorskip("aio_pika")

from reaper.infra.amqp_conn import delay_bucket_ms
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
