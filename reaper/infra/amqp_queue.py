"""Task queue on RabbitMQ (`--queue amqp://user:pass@host/vhost`), with aio-pika.

One durable quorum queue per agent type (`{prefix}.q.{agent_type}`), fed through the default
exchange. Publishes are persistent and wait for the broker's confirm (`publish` returns when
RabbitMQ has the tasks on disk on a quorum majority). A worker process consumes each agent
type on a channel of its own, with `prefetch` = the worker's concurrency: the `max_items` of
the first `take` for that agent type (the worker's first take asks for all its slots), unless
`?prefetch=N` is given. Tasks are acked manually, after the worker has published the result.
A batch is published in one write (`amqp_publish`). RabbitMQ pushes deliveries one at a time,
so a take that waited for one gathers the rest of the burst while they keep coming (`_gather`:
within GATHER_S of each other, GATHER_MAX_S in all, never past the prefetch): one take, and so
one bus batch, for what a Redis or PostgreSQL take would have popped at once.

How the protocol's leases map onto AMQP (which has none): a delivery stays unacked on this
process's channel for as long as the lease holds; when a lease runs out without `extend`, the
queue hands the message back (basic.nack, requeue) and the broker delivers it again, counting
the delivery. When the worker process dies its connection closes and the broker requeues
everything it held, at once: that is the redelivery of a dead worker's tasks. A quorum queue
keeps the delivery count (`x-delivery-count`) and dead-letters a task handed back more than
`x-delivery-limit` (`max_deliveries` - 1) times, so after `max_deliveries` deliveries, to
`{prefix}.dlq.{agent_type}` (RabbitMQ >= 3.8; the broker here runs 3.10, so there is no
classic-queue fallback that counts client-side). Queue arguments are fixed when a queue is
first declared: a different `max_deliveries` later needs the queue deleted (or a policy).

`not_before` uses per-delay holding queues (`{prefix}.delay.{agent}.{ms}`, classic, a queue-wide
message TTL, dead-lettered into the agent type's queue when it expires, auto-deleted when
idle): one TTL per queue, so expiry order is arrival order. Delays are rounded up to two
significant digits (a task is never visible early), which bounds how many such queues exist.

De-duplication of (task_id, attempt): RabbitMQ has none built in (the deduplication plugin is
not part of the broker), so the queue remembers the keys it has published for `seen_ttl_s`
and drops a re-publish from the same process (an engine re-publishing its outbox). After an
engine crash a new process may publish a task again; the task then may run twice, and the
engine applies its result once per (task_id, attempt), as for any at-least-once redelivery.

Messages are the models' JSON, never pickle. Every aio-pika/aiormq error becomes `BackendError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import Collection, Sequence
from typing import Any

import aio_pika
import aiormq
import aiormq.abc
from aio_pika.abc import (
    AbstractChannel,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq import spec
from aiormq.abc import DeliveredMessage

from reaper.clock import Clock, RealClock
from reaper.errors import BackendError, ConfigError
from reaper.infra.amqp_acks import Settler
from reaper.infra.amqp_conn import (
    ERRORS,
    Consumer,
    Lease,
    delay_bucket_ms,
    delivery_count,
    mapped,
    stale,
)
from reaper.infra.amqp_publish import publish_batch
from reaper.infra.base import OutboxItem, TaskDelivery
from reaper.models import AGENT_TYPES, Task

__all__ = ["AmqpTaskQueue"]

log = logging.getLogger(__name__)

# A take that got a delivery waits while more keep arriving, each within GATHER_S of the
# last, for at most GATHER_MAX_S in all (see `_gather`).
GATHER_S = 0.001
GATHER_MAX_S = 0.005


class AmqpTaskQueue:
    """`TaskQueue` on RabbitMQ quorum queues (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        prefix: str = "reaper",
        prefetch: str | int | None = None,
        max_deliveries: int = 5,
        seen_ttl_s: float = 3600.0,
    ) -> None:
        self._url = url
        self._clock = clock or RealClock()
        self._prefix = prefix
        try:
            self._prefetch = None if prefetch is None else int(prefetch)
        except ValueError:
            raise ConfigError(f"prefetch= takes a number, not {prefetch!r}") from None
        self.max_deliveries = max_deliveries
        self._seen_ttl_s = seen_ttl_s
        self._conn: AbstractRobustConnection | None = None
        self._connecting = asyncio.Lock()
        self._consuming = asyncio.Lock()
        self._publisher: AbstractChannel | None = None
        self._declared: set[str] = set()
        self._consumers: dict[str, Consumer] = {}
        self._leases: dict[str, Lease] = {}
        self._deadlines: list[tuple[float, str]] = []  # heap of (deadline, receipt)
        self._expiry: asyncio.Task[None] | None = None
        self._expiry_wake = asyncio.Event()
        self._expiry_at = math.inf  # the deadline the expiry loop sleeps until
        self._seen: dict[tuple[str, int], float] = {}
        self._serial = itertools.count(1)
        self._settler = Settler()

    # names ----------------------------------------------------------------------------------
    def queue_name(self, agent_type: str) -> str:
        return f"{self._prefix}.q.{agent_type}"

    def dlq_name(self, agent_type: str) -> str:
        return f"{self._prefix}.dlq.{agent_type}"

    def _arguments(self, agent_type: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            # The limit counts hand-backs: a task is delivered at most `max_deliveries` times.
            "x-delivery-limit": max(0, self.max_deliveries - 1),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dlq_name(agent_type),
        }

    # connection -----------------------------------------------------------------------------
    async def _connection(self) -> AbstractRobustConnection:
        async with self._connecting:
            if self._conn is None:
                conn = await aio_pika.connect_robust(self._url, timeout=10)
                conn.reconnect_callbacks.add(self._on_reconnect)
                self._publisher = await conn.channel(publisher_confirms=True)
                self._conn = conn
            return self._conn

    def _on_reconnect(self, *_: Any) -> None:
        """The broker restarted or the socket dropped: it has handed back every delivery of
        the old channels. Leases on those are void (acks on them fail and are ignored), and
        buffered ones are skipped by `take`. Nothing is cleared here: the restored consumers
        may already have buffered new deliveries, which must not be dropped."""
        void = [r for r, lease in self._leases.items() if stale(lease.channel)]
        for receipt in void:
            del self._leases[receipt]
        self._settler.forget_closed()
        log.warning("amqp: reconnected; %d leases void (the broker redelivers them)", len(void))

    async def _declare(self, channel: AbstractChannel, agent_type: str) -> AbstractQueue:
        queue = await channel.declare_queue(
            self.queue_name(agent_type), durable=True, arguments=self._arguments(agent_type)
        )
        if agent_type not in self._declared:
            await channel.declare_queue(
                self.dlq_name(agent_type), durable=True, arguments={"x-queue-type": "quorum"}
            )
            self._declared.add(agent_type)
        return queue

    # publish --------------------------------------------------------------------------------
    def _fresh(self, items: Sequence[OutboxItem]) -> list[OutboxItem]:
        now = self._clock.monotonic()
        if len(self._seen) > 100_000:
            self._seen = {k: t for k, t in self._seen.items() if now - t < self._seen_ttl_s}
        fresh: list[OutboxItem] = []
        for item in items:
            key = item.task.key
            seen = self._seen.get(key)
            if seen is not None and now - seen < self._seen_ttl_s:
                continue
            self._seen[key] = now
            fresh.append(item)
        return fresh

    async def publish(self, items: Sequence[OutboxItem]) -> None:
        fresh = self._fresh(items)
        if not fresh:
            return
        try:
            async with mapped("publish"):
                await self._connection()
                assert self._publisher is not None
                routes = [
                    self.queue_name(item.task.agent_type)  # the common case: no await
                    if item.not_before is None and item.task.agent_type in self._declared
                    else await self._route(item)
                    for item in fresh
                ]
                channel = await self._publisher.get_underlay_channel()
                assert isinstance(channel, aiormq.Channel)  # the one that takes `wait`
                # One write for the batch, each message confirmed (amqp_publish).
                confirms = await publish_batch(
                    channel,
                    [
                        (
                            item.task.model_dump_json().encode(),
                            route,
                            spec.Basic.Properties(
                                delivery_mode=2,  # persistent
                                content_type="application/json",
                                message_id=f"{item.task.task_id}:{item.task.attempt}",
                            ),
                        )
                        for item, route in zip(fresh, routes, strict=True)
                    ],
                )
                returned = sum(isinstance(c, aiormq.abc.DeliveredMessage) for c in confirms)
                if returned:  # no queue took them (deleted meanwhile): not published
                    raise BackendError(f"amqp publish: {returned} task(s) returned unroutable")
        except BaseException:
            for item in fresh:  # not confirmed: a retry must not be taken for a duplicate
                self._seen.pop(item.task.key, None)
            raise

    async def _route(self, item: OutboxItem) -> str:
        """The queue to publish to: the agent type's, or a delay queue for a later task."""
        assert self._publisher is not None
        agent_type = item.task.agent_type
        if agent_type not in self._declared:
            await self._declare(self._publisher, agent_type)
        if item.not_before is None:
            return self.queue_name(agent_type)
        ms = int((item.not_before - self._clock.now()).total_seconds() * 1000)
        if ms <= 0:
            return self.queue_name(agent_type)
        ms = delay_bucket_ms(ms)
        name = f"{self._prefix}.delay.{agent_type}.{ms}"
        await self._publisher.declare_queue(
            name,
            durable=True,
            arguments={
                "x-message-ttl": ms,
                "x-expires": ms + 60_000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.queue_name(agent_type),
            },
        )
        return name

    # take -----------------------------------------------------------------------------------
    async def _consumer(self, agent_type: str, max_items: int) -> Consumer:
        consumer = self._consumers.get(agent_type)
        if consumer is not None:
            return consumer
        async with self._consuming:  # concurrent first takes start one consumer
            consumer = self._consumers.get(agent_type)
            if consumer is None:
                consumer = await self._start_consumer(agent_type, max_items)
            return consumer

    async def _start_consumer(self, agent_type: str, max_items: int) -> Consumer:
        conn = await self._connection()
        channel = await conn.channel()
        prefetch = self._prefetch or max(1, max_items)
        await channel.set_qos(prefetch_count=prefetch)
        queue = await self._declare(channel, agent_type)
        consumer = Consumer(channel, queue, prefetch)
        self._consumers[agent_type] = consumer

        async def on_message(message: DeliveredMessage) -> None:
            self._settler.delivered(message.channel, int(message.delivery_tag or 0))
            consumer.buffer.append((message, message.channel))
            consumer.arrived.set()

        async def consume(*_: object) -> None:
            underlay = await channel.get_underlay_channel()
            ok = await underlay.basic_consume(queue.name, on_message)
            consumer.tag = str(ok.consumer_tag or "")

        # On aiormq's channel, not through aio-pika's queue.consume: aio-pika wraps every
        # delivery in a message object and a second asyncio task (~30 µs of CPU a delivery).
        # So the robust channel's reopen (after a reconnect, once it has declared the queue
        # again) starts the consumer again here, not aio-pika.
        async def reconsume(*_: object) -> None:
            try:
                await consume()
            except (*ERRORS, RuntimeError) as exc:  # aio-pika would swallow it
                log.warning(
                    "amqp: consuming %s again after a reconnect failed: %s", agent_type, exc
                )

        channel.reopen_callbacks.add(reconsume)
        await consume()
        return consumer

    async def take(
        self,
        agent_type: str,
        *,
        max_items: int = 1,
        timeout: float | None = None,
        lease_s: float = 30.0,
        worker_id: str = "",
    ) -> list[TaskDelivery]:
        consumer = self._consumers.get(agent_type)
        if consumer is None:
            async with mapped("take"):
                consumer = await self._consumer(agent_type, max_items)
        self._expire()
        if timeout is not None and timeout <= 0:
            if not consumer.buffer:
                return []  # a look between batches: no waiting, no broker round trip
        else:
            if not consumer.buffer:
                consumer.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(consumer.arrived.wait(), timeout)
            if consumer.buffer and len(consumer.buffer) < max_items:
                await self._gather(consumer, max_items)
        # From here on nothing suspends: a cancelled take never loses a delivery.
        out: list[TaskDelivery] = []
        deadline = self._clock.monotonic() + lease_s
        while consumer.buffer and len(out) < max_items:
            message, channel = consumer.buffer.popleft()
            if stale(channel):
                continue  # from a channel lost in a reconnect: the broker redelivers it
            receipt = f"{agent_type}:{next(self._serial)}"
            try:
                task = Task.model_validate_json(message.body)
            except ValueError:
                log.error("amqp: dropping a message that is not a task: %r", message.body[:200])
                self._later(
                    self._settler.nack(channel, int(message.delivery_tag or 0), requeue=False)
                )
                continue
            self._leases[receipt] = Lease(message, channel, agent_type, deadline)
            heapq.heappush(self._deadlines, (deadline, receipt))
            count = delivery_count(message)
            out.append(TaskDelivery(task=task, receipt=receipt, delivery_count=count))
        if out:
            self._arm_expiry(deadline)
        return out

    async def _gather(self, consumer: Consumer, max_items: int) -> None:
        """After a wait that ended with a delivery: let the deliveries sent with it arrive, so
        the take (and the worker's bus batch) holds them too. RabbitMQ pushes a burst one
        delivery at a time; this waits while they keep coming, each within GATHER_S of the
        last, never for more than the prefetch lets the broker send (a quiet queue costs one
        GATHER_S)."""
        loop = asyncio.get_running_loop()  # real time: the broker's pace, not the clock's
        deadline = loop.time() + GATHER_MAX_S
        while len(consumer.buffer) < max_items:
            seen = len(consumer.buffer)
            if self._settler.open_on(consumer.buffer[-1][1]) >= consumer.prefetch:
                return  # the broker sends no more until something is settled
            consumer.arrived.clear()
            left = min(GATHER_S, deadline - loop.time())
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consumer.arrived.wait(), left)
            if len(consumer.buffer) == seen:
                return

    # leases ---------------------------------------------------------------------------------
    def _arm_expiry(self, deadline: float) -> None:
        if self._expiry is None or self._expiry.done():
            self._expiry = asyncio.create_task(self._expire_loop())
        elif deadline < self._expiry_at:
            self._expiry_wake.set()  # due before the loop's next look (else no wake-up per take)

    async def _expire_loop(self) -> None:
        """Hands back leases that ran out, at their deadlines."""
        while True:
            self._expire()
            self._expiry_wake.clear()
            wait = None
            self._expiry_at = math.inf
            if self._deadlines:
                self._expiry_at = self._deadlines[0][0]
                wait = max(0.0, self._expiry_at - self._clock.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._expiry_wake.wait(), wait)

    def _expire(self) -> None:
        now = self._clock.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, receipt = heapq.heappop(self._deadlines)
            lease = self._leases.get(receipt)
            if lease is None or lease.deadline != deadline:
                continue  # acked, released, or extended (a later heap entry stands)
            del self._leases[receipt]
            log.info("amqp: lease %s ran out; handing the task back", receipt)
            self._later(self._settler.nack(lease.channel, lease.tag, requeue=True))

    def _later(self, step: Any) -> None:
        """Run a broker call whose failure needs no handling (the broker requeues anyway)."""

        async def run() -> None:
            try:
                await step
            except (*ERRORS, RuntimeError) as exc:
                log.debug("amqp: hand-back failed (the broker requeues on close): %s", exc)

        asyncio.get_running_loop().create_task(run())

    def _held(self, deliveries: Sequence[TaskDelivery]) -> list[Lease]:
        held = []
        for d in deliveries:
            lease = self._leases.pop(d.receipt, None)
            if lease is None:
                log.debug("amqp: %s is no longer leased here (expired or reconnected)", d.receipt)
            else:
                held.append(lease)
        return held

    async def ack(self, deliveries: Sequence[TaskDelivery]) -> None:
        await self._settle(self._held(deliveries), requeue=None)

    async def release(self, deliveries: Sequence[TaskDelivery]) -> None:
        await self._settle(self._held(deliveries), requeue=True)

    async def _settle(self, leases: Sequence[Lease], *, requeue: bool | None) -> None:
        try:
            if requeue is None:
                by_channel: dict[aiormq.abc.AbstractChannel, list[int]] = {}
                for lease in leases:
                    by_channel.setdefault(lease.channel, []).append(lease.tag)
                for channel, tags in by_channel.items():
                    await self._settler.ack(channel, tags)
            else:
                for lease in leases:
                    await self._settler.nack(lease.channel, lease.tag, requeue=requeue)
        except (*ERRORS, RuntimeError) as exc:
            # The channel closed under the deliveries: the broker has requeued them already.
            log.warning("amqp: settling deliveries failed (they will come again): %s", exc)

    async def extend(self, deliveries: Sequence[TaskDelivery], lease_s: float) -> None:
        deadline = self._clock.monotonic() + lease_s
        for d in deliveries:
            lease = self._leases.get(d.receipt)
            if lease is not None:
                lease.deadline = deadline
                heapq.heappush(self._deadlines, (deadline, d.receipt))
        self._expiry_wake.set()

    # housekeeping ---------------------------------------------------------------------------
    async def depth(self, agent_type: str) -> int:
        """Ready messages on the broker plus deliveries this process has not handed out.
        Declared on the consumer's channel, then a second round trip on it: deliveries the
        broker sent before counting have arrived by then (frames on a channel are ordered)."""
        async with mapped("depth"):
            consumer = self._consumers.get(agent_type)
            if consumer is None:
                await self._connection()
                assert self._publisher is not None
                queue = await self._declare(self._publisher, agent_type)
                return int(queue.declaration_result.message_count or 0)
            queue = await self._declare(consumer.channel, agent_type)
            ready = int(queue.declaration_result.message_count or 0)
            await self._declare(consumer.channel, agent_type)
            return ready + len(consumer.buffer)

    async def prune(self, finished: Collection[str]) -> int:
        """Nothing to forget: the broker deletes acked messages, and the publish
        de-duplication keys live in memory for `seen_ttl_s`."""
        now = self._clock.monotonic()
        before = len(self._seen)
        self._seen = {k: t for k, t in self._seen.items() if now - t < self._seen_ttl_s}
        return before - len(self._seen)

    async def dead_letters(self, agent_type: str, limit: int = 100) -> list[Task]:
        """Tasks on the dead-letter queue (taken and requeued: for inspection only)."""
        out: list[Task] = []
        async with mapped("dead_letters"):
            conn = await self._connection()
            channel = await conn.channel()
            try:
                dlq = await channel.declare_queue(
                    self.dlq_name(agent_type), durable=True, arguments={"x-queue-type": "quorum"}
                )
                while len(out) < limit:
                    message = await dlq.get(fail=False, no_ack=False)
                    if message is None:
                        break
                    out.append(Task.model_validate_json(message.body))
            finally:
                await channel.close()  # unacked: all back on the dead-letter queue
        return out

    async def delete_queues(self, agent_types: Collection[str] = ()) -> int:
        """Delete the queues of these agent types (and of every one used here, and of
        AGENT_TYPES): for tests and benchmarks on a shared broker."""
        names = sorted({*agent_types, *self._declared, *self._consumers, *AGENT_TYPES})
        deleted = 0
        async with mapped("delete"):
            conn = await self._connection()
            channel = await conn.channel()
            try:
                for agent_type in names:
                    for name in (self.queue_name(agent_type), self.dlq_name(agent_type)):
                        with contextlib.suppress(*ERRORS):
                            await channel.queue_delete(name)
                            deleted += 1
                        if channel.is_closed:
                            channel = await conn.channel()
            finally:
                await channel.close()
        return deleted

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        conn, self._conn = self._conn, None
        self._consumers.clear()
        self._leases.clear()
        if conn is not None:
            async with mapped("close"):
                await conn.close()  # unacked deliveries go back to their queues
