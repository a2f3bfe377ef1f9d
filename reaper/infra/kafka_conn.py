"""Shared plumbing of the Kafka bus: what the bus knows of a mission's partition, topic
administration, the URL, and the wire format of messages (the models' JSON)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from reaper.errors import ConfigError
from reaper.models import InboundMessage

__all__ = [
    "FETCH_WAIT_MS",
    "POLL_S",
    "TIMEOUT_S",
    "Mission",
    "bootstrap",
    "create_topics",
    "delete_topics",
    "on_commit",
    "parse_fetch_wait",
]

log = logging.getLogger(__name__)

# One blocking poll on the consumer thread: bounds how long `close` waits, and how soon a
# partition assigned meanwhile is read (librdkafka does not wake a poll in progress for it).
POLL_S = 0.1
TIMEOUT_S = 30.0
# How long the broker may hold a fetch that finds nothing new (`?fetch_wait_ms=`). Apache
# Kafka answers as soon as a record arrives, so this only bounds idle fetches there; Tansu
# answers only when it runs out, so a short wait keeps the engine's latency low on it, and on
# its S3 storage a wait shorter than its object reads (~100 ms) answers every fetch empty.
FETCH_WAIT_MS = 10


def parse_fetch_wait(value: str | int) -> int:
    """The `fetch_wait_ms=` option, checked (ConfigError: one line naming the valid range)."""
    try:
        ms = int(value)
    except ValueError:
        ms = -1
    if not 1 <= ms <= 60_000:
        raise ConfigError(f"fetch_wait_ms= takes milliseconds from 1 to 60000, not {value!r}")
    return ms


@dataclass
class Mission:
    """What this process knows of one mission's partition."""

    topic: str
    committed: int = 0  # the group's offset: everything below is acked
    position: int = 0  # the next offset to deliver
    buffer: list[tuple[int, InboundMessage]] = field(default_factory=list)
    open: dict[int, int] = field(default_factory=dict)  # delivered, unacked: offset -> count
    acked: set[int] = field(default_factory=set)  # acked above `committed`
    seen: dict[int, int] = field(default_factory=dict)  # deliveries so far per offset
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


def on_commit(err: KafkaError | None, partitions: list[TopicPartition]) -> None:
    if err is not None:
        log.warning("kafka: offset commit failed (records will be read again): %s", err)


def bootstrap(url: str) -> str:
    netloc = urlsplit(url).netloc
    if not netloc:
        raise ConfigError(f"kafka URL {url!r} names no broker: kafka://HOST:PORT[,HOST:PORT]")
    return netloc.rsplit("@", 1)[-1]


def create_topics(admin: AdminClient, topics: Sequence[str], replication: int) -> None:
    """Create the topics (on the command thread); an existing one is no error."""
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=1, replication_factor=replication) for t in topics],
        operation_timeout=TIMEOUT_S,
    )
    for future in futures.values():
        try:
            future.result(TIMEOUT_S)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def delete_topics(admin: AdminClient, topics: Sequence[str]) -> int:
    """Delete the topics; returns how many existed."""
    removed = 0
    futures = admin.delete_topics(list(topics), operation_timeout=TIMEOUT_S)
    for future in futures.values():
        try:
            future.result(TIMEOUT_S)
            removed += 1
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
    return removed
