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
    waits = open_backend("memory", bus="kafka://127.0.0.1:1?fetch_wait_ms=250&prefix=x")
    assert waits.bus._fetch_wait_ms == 250  # type: ignore[attr-defined]
    await waits.close()
    for bad in ("abc", "0", "60001"):
        with pytest.raises(ConfigError, match=f"fetch_wait_ms= takes milliseconds .* not '{bad}'"):
            open_backend("memory", bus=f"kafka://127.0.0.1:1?fetch_wait_ms={bad}")
    with pytest.raises(ConfigError, match="unknown backend spec"):
        open_backend("memory", queue="redis+nats")


@pytest.mark.skip(
    reason="Tansu 0.6.0: after a topic deletion librdkafka 2.16 crashes the test process "
    "(SIGSEGV in rd_kafka_metadata_cache_find); passes when run alone, see kafka_bus.py"
)
async def test_retire_deletes_the_topics_and_late_calls_break_nothing(kafka_broker: str) -> None:
    uid = uuid.uuid4().hex[:8]
    bus = KafkaEventBus(kafka_broker, prefix=f"ct_{uid}")
    a, c = f"a-{uid}", f"c-{uid}"
    try:
        await bus.publish_many([b.result(b.task(a, 0)), b.result(b.task(c, 0))])
        in_flight = await bus.receive(a, timeout=5)
        assert len(in_flight) == 1
        assert await bus.retire([a]) == 1
        got = await bus.receive(c, timeout=5)
        assert [d.message.task_id for d in got] == [f"{c}-s1-0"]
        await bus.ack(c, got)
        await bus.ack(a, in_flight)  # a late ack of a retired mission: no error
        await bus.recover(a)
        assert await bus.receive(a, timeout=0.05) == []
        assert await bus.retire([a]) == 0  # again: nothing left, no error
    finally:
        await bus.close()
