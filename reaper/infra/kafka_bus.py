"""Event bus on Kafka (`--bus kafka://host:port[,host:port]`), with confluent-kafka.

A topic per mission (`{prefix}.m.{mission_id}`, one partition, created on first use), each
record keyed by the mission id. One topic per mission rather than one keyed topic because the
`EventBus` contract is per mission: an engine receives one mission's results, and `retire`
drops a finished mission's stream (a topic deletion). A shared keyed topic would make every
engine read and skip every other mission's records, and could not forget a mission. One
partition keeps a mission's results in publication order.

Publishing is an idempotent producer (`enable.idempotence`, `acks=all`): `publish` returns
once every record is acknowledged by all in-sync replicas, and a producer retry never
duplicates a record.

Receiving: the engine's consumer belongs to the group `{prefix}.engine` and commits, per
mission partition, the offset below which everything has been acked, only when the engine
acks a batch (after it has committed what it applied to the store). Acks above an unacked
record are remembered in memory, so `recover` (seek back to the committed offset) skips them
in this process; after a crash they are delivered again and the engine drops results it has
applied (once per (task_id, attempt)). Partitions are assigned by the engine holding the
mission's lease in the store (`assign`), not by group rebalancing: the lease is already the
exclusive owner, and a rebalance would wait out a dead engine's session timeout (6 s and more
on Apache Kafka) before the engine that took the mission over could read it. A dead engine's
uncommitted records are read again by its successor, from the group's committed offset.

confluent-kafka blocks: every call on the consumer (poll, assign, commit, close) runs on one
thread of its own, admin calls (create and delete topics) and the producer on two more, so
the event loop never blocks and the consumer is never used from two threads at once.

Known issue: on Tansu 0.6.0 (the tests' broker), a topic deletion (`retire`) later makes
librdkafka 2.16 crash (SIGSEGV in its metadata cache, `rd_kafka_metadata_cache_find`) in
clients of that broker (seen on a new client after the deletion). Whether Apache Kafka, the
production target, can trigger it is not tested here; against Tansu `retire` is not run.
Every Kafka error becomes `BackendError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from reaper.clock import Clock, RealClock
from reaper.errors import BackendError
from reaper.infra.base import InboundDelivery
from reaper.infra.kafka_conn import (
    FETCH_WAIT_MS,
    POLL_S,
    TIMEOUT_S,
    Mission,
    bootstrap,
    create_topics,
    delete_topics,
    on_commit,
    parse_fetch_wait,
)
from reaper.models import INBOUND, InboundMessage

__all__ = ["KafkaEventBus"]

log = logging.getLogger(__name__)
# librdkafka's own log lines (connection drops, retries) go through logging, not stderr.
_librdkafka_log = logging.getLogger(f"{__name__}.librdkafka")

T = TypeVar("T")


class KafkaEventBus:
    """`EventBus` on Kafka (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        prefix: str = "reaper",
        replication: int = 1,
        fetch_wait_ms: str | int = FETCH_WAIT_MS,
    ) -> None:
        self._clock = clock or RealClock()
        self._bootstrap = bootstrap(url)
        self._fetch_wait_ms = parse_fetch_wait(fetch_wait_ms)
        self._prefix = prefix
        self._replication = replication
        self._group = f"{prefix}.engine"
        self._poll_thread = ThreadPoolExecutor(1, thread_name_prefix="kafka-poll")
        self._command_thread = ThreadPoolExecutor(1, thread_name_prefix="kafka-cmd")
        self._produce_thread = ThreadPoolExecutor(1, thread_name_prefix="kafka-produce")
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None
        self._admin: AdminClient | None = None
        self._topics: set[str] = set()  # known to exist
        self._missions: dict[str, Mission] = {}
        self._by_topic: dict[str, Mission] = {}
        self._pump: asyncio.Task[None] | None = None
        self._commit_lock = threading.Lock()
        self._to_commit: dict[str, int] = {}  # topic -> offset, for the poll thread
        self._closed = False
        self._retired: set[str] = set()  # missions retired here: never assigned again
        self._warming = False
        # Not a connection the constructor waits for: librdkafka connects in the background,
        # and the producer id is there by the first publish (a down broker raises nothing).
        self._warm()

    def topic(self, mission_id: str) -> str:
        return f"{self._prefix}.m.{mission_id}"

    # threads --------------------------------------------------------------------------------
    async def _run(self, pool: ThreadPoolExecutor, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, call)
        except (KafkaException, BufferError) as exc:
            raise BackendError(f"kafka {what} failed: {exc}") from exc

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            config: dict[str, Any] = {"bootstrap.servers": self._bootstrap}
            config["logger"] = _librdkafka_log
            self._admin = AdminClient(config)
        return self._admin

    async def _ensure_topics(self, mission_ids: Collection[str]) -> None:
        missing = sorted({self.topic(m) for m in mission_ids} - self._topics)
        if missing:
            await self._run(
                self._command_thread,
                "create topic",
                lambda: create_topics(self._admin_client(), missing, self._replication),
            )
            self._topics.update(missing)

    # publish --------------------------------------------------------------------------------
    def _producer_client(self) -> Producer:
        """The idempotent producer (on the producer thread). It takes ~0.5 s to get its
        producer id from the broker, so the first use starts it in the background."""
        if self._producer is None:
            self._producer = Producer(
                {
                    "bootstrap.servers": self._bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 1,
                    "logger": _librdkafka_log,
                }
            )
        return self._producer

    def _warm(self) -> None:
        """Start the producer (and its producer-id handshake) without waiting for it."""
        if self._producer is None and not self._warming:
            self._warming = True
            self._produce_thread.submit(self._producer_client)

    def _produce(self, messages: Sequence[InboundMessage]) -> None:
        """Produce and wait for every acknowledgement (on the producer thread)."""
        producer = self._producer_client()
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        for message in messages:
            value = message.model_dump_json().encode()
            topic, key = self.topic(message.mission_id), message.mission_id.encode()
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain
                    producer.poll(0.1)
                except KafkaException as exc:
                    if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].fatal():
                        self._producer = None  # as below: a fatal error ends a producer
                    raise
        left = producer.flush(TIMEOUT_S)
        if errors or left:
            if left or any(e.fatal() for e in errors):
                # An idempotent producer that hit a fatal error (a sequence gap the broker
                # refused, say) fails every later send: the next publish starts a new one.
                log.warning("kafka: producer failed (%s); starting a new one", errors or left)
                self._producer = None
            raise KafkaException(errors[0] if errors else KafkaError(KafkaError._TIMED_OUT))

    async def publish(self, message: InboundMessage) -> None:
        await self.publish_many([message])

    async def publish_many(self, messages: Sequence[InboundMessage]) -> None:
        if not messages:
            return
        self._warm()
        await self._ensure_topics({m.mission_id for m in messages})
        batch = list(messages)
        await self._run(self._produce_thread, "publish", lambda: self._produce(batch))

    # receive --------------------------------------------------------------------------------
    def _consumer_client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self._bootstrap,
                    "group.id": self._group,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": self._fetch_wait_ms,
                    "on_commit": on_commit,
                    "logger": _librdkafka_log,
                }
            )
        return self._consumer

    def _assign(self, topic: str, offset: int | None, *, again: bool) -> int:
        """Assign the mission's partition from `offset` (None: the group's committed
        offset); return that offset. On the command thread."""
        consumer = self._consumer_client()
        if offset is None:
            got = consumer.committed([TopicPartition(topic, 0)], timeout=TIMEOUT_S)[0]
            offset = got.offset if got.offset >= 0 else 0
        if again:
            consumer.incremental_unassign([TopicPartition(topic, 0)])
        consumer.incremental_assign([TopicPartition(topic, 0, offset)])
        return offset

    async def _mission(self, mission_id: str) -> Mission:
        state = self._missions.get(mission_id)
        if state is not None:
            return state
        self._warm()  # engines publish too (approval decisions): be ready when they do
        await self._ensure_topics([mission_id])
        topic = self.topic(mission_id)
        offset = await self._run(
            self._poll_thread, "assign", lambda: self._assign(topic, None, again=False)
        )
        state = self._missions.setdefault(
            mission_id, Mission(topic, committed=offset, position=offset)
        )
        self._by_topic[topic] = state
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._pump_loop())
        return state

    def _poll(self) -> list[Message]:
        """One blocking poll, then whatever else is already fetched (on the poll thread)."""
        consumer = self._consumer
        if consumer is None or self._closed:
            return []
        self._commit_pending(consumer, asynchronous=True)
        first = consumer.poll(POLL_S)
        if first is None:
            return []
        return [first, *consumer.consume(10_000, 0)]

    def _commit_pending(self, consumer: Consumer, *, asynchronous: bool) -> None:
        with self._commit_lock:
            pending, self._to_commit = self._to_commit, {}
        if pending:
            offsets = [TopicPartition(t, 0, o) for t, o in pending.items()]
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)

    async def _pump_loop(self) -> None:
        """Polls the consumer and routes records to their missions' buffers."""
        failures = 0
        while not self._closed:
            try:
                records = await self._run(self._poll_thread, "poll", self._poll)
            except BackendError as exc:
                failures += 1
                log.warning("kafka: poll failed (%s); retrying", exc)
                await self._clock.sleep(min(0.1 * 2**failures, 5.0))
                continue
            failures = 0
            for record in records:
                self._route(record)

    def _route(self, record: Message) -> None:
        error = record.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka: consumer error: %s", error)
            return
        state = self._by_topic.get(record.topic() or "")
        offset = record.offset()
        if state is None or offset is None or offset < state.position:
            return  # retired meanwhile, or fetched before a `recover` moved back
        state.position = offset + 1
        if offset in state.acked:
            return
        try:
            message = INBOUND.validate_json(record.value() or b"")
        except ValueError:
            log.error("kafka: skipping a record that is not a message at offset %d", offset)
            state.acked.add(offset)
            return
        state.buffer.append((offset, message))
        state.arrived.set()

    async def receive(
        self, mission_id: str, *, max_items: int = 10_000, timeout: float | None = None
    ) -> list[InboundDelivery]:
        if mission_id in self._retired:
            return []  # no engine receives for a retired mission: never assign its topic again
        state = await self._mission(mission_id)
        if not state.buffer and (timeout is None or timeout > 0):
            state.arrived.clear()
            # asyncio.timeout, not wait_for: wait_for wraps the wait in a task, and one it
            # cancels before it ran warns "coroutine 'Event.wait' was never awaited".
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await state.arrived.wait()
        # Nothing suspends from here on: a cancelled receive loses nothing.
        taken, state.buffer = state.buffer[:max_items], state.buffer[max_items:]
        out = []
        for offset, message in taken:
            count = state.seen.get(offset, 0) + 1
            state.seen[offset] = count
            state.open[offset] = count
            out.append(InboundDelivery(message=message, receipt=str(offset), delivery_count=count))
        return out

    async def ack(self, mission_id: str, deliveries: Sequence[InboundDelivery]) -> None:
        state = self._missions.get(mission_id)
        if state is None or not deliveries:
            return
        for d in deliveries:
            offset = int(d.receipt)
            if state.open.pop(offset, None) is not None:
                state.acked.add(offset)
                state.seen.pop(offset, None)
        pending = [*state.open, *(o for o, _ in state.buffer)]
        floor = min(pending) if pending else state.position
        if floor <= state.committed:
            return
        state.acked = {o for o in state.acked if o >= floor}
        state.committed = floor
        # Committed by the poll thread before its next poll, asynchronously: a synchronous
        # OffsetCommit waits 1-5 s at times (coordinator round trips), and a call from another
        # thread waits for the poll in progress. Nothing needs the commit durable before the
        # next batch: one lost in a crash means applied records are read again (and dropped).
        with self._commit_lock:
            self._to_commit[state.topic] = floor

    async def recover(self, mission_id: str) -> None:
        """Seek back to the committed offset: every delivered-but-unacked record comes
        again (acked ones above it are skipped)."""
        if mission_id in self._retired:
            return  # see `receive`
        fresh = mission_id not in self._missions
        state = await self._mission(mission_id)
        if fresh:
            return  # just assigned from the committed offset
        state.buffer.clear()
        state.open.clear()
        state.position = state.committed
        await self._run(
            self._poll_thread,
            "recover",
            lambda: self._assign(state.topic, state.committed, again=True),
        )

    async def retire(self, mission_ids: Collection[str]) -> int:
        """Delete the missions' topics (committed offsets go with them); returns how many
        existed."""
        ids = sorted(set(mission_ids))
        if not ids:
            return 0
        self._retired.update(ids)
        assigned = []
        for mission_id in ids:
            state = self._missions.pop(mission_id, None)
            if state is not None:
                self._by_topic.pop(state.topic, None)
                assigned.append(TopicPartition(state.topic, 0))
        if assigned:
            consumer = self._consumer_client()
            await self._run(
                self._poll_thread, "unassign", lambda: consumer.incremental_unassign(assigned)
            )
        topics = [self.topic(m) for m in ids]
        self._topics.difference_update(topics)
        return await self._run(
            self._command_thread, "retire", lambda: delete_topics(self._admin_client(), topics)
        )

    async def drop_all(self) -> int:
        """Delete every topic of this bus's prefix (tests and benchmarks on a shared cluster)."""

        def mine() -> list[str]:
            listed = self._admin_client().list_topics(timeout=TIMEOUT_S).topics
            return [t for t in listed if t.startswith(f"{self._prefix}.m.")]

        topics = await self._run(self._command_thread, "list topics", mine)
        if not topics:
            return 0
        return await self._run(
            self._command_thread, "drop", lambda: delete_topics(self._admin_client(), topics)
        )

    async def close(self) -> None:
        self._closed = True
        if self._pump is not None:
            with contextlib.suppress(BackendError):
                await self._pump  # ends after at most one poll
        loop = asyncio.get_running_loop()
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None

            def finish() -> None:
                self._commit_pending(consumer, asynchronous=False)
                consumer.close()

            try:
                await loop.run_in_executor(self._poll_thread, finish)
            except (KafkaException, RuntimeError) as exc:
                log.warning("kafka: closing the consumer failed: %s", exc)

        def flush() -> None:  # on the producer thread: after a warm-up still under way
            producer, self._producer = self._producer, None
            if producer is not None:
                producer.flush(TIMEOUT_S)

        await loop.run_in_executor(self._produce_thread, flush)
        for pool in (self._poll_thread, self._command_thread, self._produce_thread):
            pool.shutdown(wait=False)
