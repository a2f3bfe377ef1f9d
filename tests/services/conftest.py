"""Drops the namespaces the scale tests made on the shared servers (see `backend_spec`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from reaper.bench.space import drop_keys, drop_schema
from reaper.errors import BackendError

from .harness import AMQP_NAMESPACES, AMQP_URL, KAFKA, NAMESPACES, POSTGRES_URL, REDIS_URL


async def _drop_all() -> None:
    for name, redis_url in NAMESPACES:
        await drop_schema(POSTGRES_URL, name)
        if redis_url == REDIS_URL:  # a throwaway server's keys went with it
            with contextlib.suppress(BackendError):
                await drop_keys(redis_url, name)
    for name, amqp_url in AMQP_NAMESPACES:
        if amqp_url == AMQP_URL:  # a private broker's queues went with it
            from reaper.infra.amqp_queue import AmqpTaskQueue

            queue = AmqpTaskQueue(amqp_url, prefix=name)
            with contextlib.suppress(BackendError):
                await queue.delete_queues()
            await queue.close()


@pytest.fixture(autouse=True)
def _kafka_for_kafka_kinds(request: pytest.FixtureRequest) -> None:
    """Tests parametrised with a kind naming kafka get the session's Tansu broker."""
    callspec = getattr(request.node, "callspec", None)
    kind = callspec.params.get("kind", "") if callspec is not None else ""
    if isinstance(kind, str) and "kafka" in kind.split("+"):
        KAFKA["url"] = request.getfixturevalue("kafka_broker")


@pytest.fixture(autouse=True, scope="session")
def _drop_namespaces() -> Iterator[None]:
    yield
    if NAMESPACES:
        asyncio.run(_drop_all())
