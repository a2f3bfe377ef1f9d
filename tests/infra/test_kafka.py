"""Kafka specifics beyond the contract suite: offsets survive the engine (a new consumer
resumes from the committed offset), combined specs and `bus=`."""

from __future__ import annotations

import uuid

import pytest

from reaper.errors import ConfigError
from reaper.infra.factory import open_backend
from tests.infra import builders as b

pytest.importorskip("confluent_kafka")

from reaper.infra.kafka_bus import KafkaEventBus


async def test_a_new_engine_resumes_from_the_committed_offset(kafka_broker: str) -> None:
    prefix, mid = f"ct_{uuid.uuid4().hex[:10]}", f"m-{uuid.uuid4().hex[:6]}"
    first = KafkaEventBus(kafka_broker, prefix=prefix)
    messages = [b.result(b.task(mid, i)) for i in range(4)]
    try:
        await first.publish_many(messages)
        got = await first.receive(mid, timeout=5)
        while len(got) < 4:
            got += await first.receive(mid, timeout=5)
        await first.ack(mid, got[:2])  # applied and acked; the rest in flight when it "dies"
    finally:
        await first.close()  # commits what was acked, nothing more
    second = KafkaEventBus(kafka_broker, prefix=prefix)
    try:
        again = await second.receive(mid, timeout=5)
        assert [d.message for d in again] == messages[2:]
        await second.ack(mid, again)
        assert await second.retire([mid]) == 1
    finally:
        await second.close()


async def test_bus_specs() -> None:
    backend = open_backend("memory", bus="kafka://127.0.0.1:1?prefix=x")
    assert isinstance(backend.bus, KafkaEventBus)
    assert "bus=kafka://127.0.0.1:1" in backend.description
    await backend.close()  # nothing connected: closes at once
    pytest.importorskip("redis")
    parts = open_backend(None, store="memory", queue="redis+kafka+postgres")
    assert isinstance(parts.bus, KafkaEventBus)
    assert type(parts.queue).__name__ == "RedisTaskQueue"
    await parts.close()
    with pytest.raises(ConfigError, match="names no broker"):
        open_backend("memory", bus="kafka://")
    with pytest.raises(ConfigError, match="unknown backend spec"):
        open_backend("memory", queue="redis+nats")
