"""`TaskQueue` and `EventBus` on PostgreSQL alone, for users without Redis
(`pip install 'reaper-lab[postgres]'`).

Queue rows (table `queue`, migration 2) work as SQLite's: visible from `visible_at`; a lease
moves `visible_at` to the lease's expiry, so an unacked lease makes the task visible again with
no sweeper; acked rows stay without their body so a re-publish of the same (task_id, attempt)
is ignored (until `prune` deletes those of finished missions); receipts carry the delivery
count, so an ack from an expired lease does nothing.
Taking is one UPDATE over a `SELECT ... FOR UPDATE SKIP LOCKED`: concurrent takers on any
number of connections never get the same row and never wait on each other's locks.
Inbox rows (table `inbox`): `delivered` while in flight, deleted on ack, reset by `recover`,
all of a finished mission's deleted by `retire`.

Wake-ups are LISTEN/NOTIFY: every write that makes something takeable calls pg_notify in the
same statement (so in the same transaction: waiters wake only on commit). A waiting `take`
also wakes at the earliest `visible_at` of its agent type (a delayed task, an expiring lease),
read from the table, and re-checks at least every `_SAFETY_S` in case a notification was lost.
Times come from the clock given, as in the other stores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import timedelta
from typing import Any, LiteralString, TypeVar

from psycopg import AsyncConnection, sql

from reaper.clock import Clock, RealClock
from reaper.errors import BackendError
from reaper.infra.base import InboundDelivery, OutboxItem, TaskDelivery
from reaper.infra.factory import DEFAULT_SCHEMA
from reaper.infra.postgres_conn import NotifyListener, PgConnection, channel_name
from reaper.infra.postgres_schema import schema_ident
from reaper.models import (
    INBOUND,
    InboundMessage,
    Task,
)

__all__ = ["PostgresEventBus", "PostgresTaskQueue"]

T = TypeVar("T")

_SAFETY_S = 5.0

_SQL: dict[str, LiteralString] = {
    # WITH ORDINALITY ... ORDER BY: rows get their seq in the order given (FIFO per batch).
    "publish": """WITH ins AS (
        INSERT INTO {s}.queue (task_id, attempt, agent_type, mission_id, visible_at, body)
        SELECT t, a, g, m, v, b FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[],
            %s::timestamptz[], %s::text[]) WITH ORDINALITY AS u(t, a, g, m, v, b, o)
        ORDER BY o
        ON CONFLICT (task_id, attempt) DO NOTHING RETURNING agent_type)
        SELECT pg_notify(%s, g) FROM (SELECT DISTINCT agent_type AS g FROM ins) d""",
    "take": """UPDATE {s}.queue q SET state = 1, visible_at = %s, lease_owner = %s,
        delivery_count = q.delivery_count + 1
        FROM (SELECT seq FROM {s}.queue WHERE agent_type = %s AND state < 2
              AND visible_at <= %s ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED) c
        WHERE q.seq = c.seq RETURNING q.seq, q.body, q.delivery_count""",
    "next_visible": "SELECT min(visible_at) FROM {s}.queue WHERE agent_type = %s AND state < 2",
    "ack": """UPDATE {s}.queue q SET state = 2, lease_owner = NULL, body = ''
        FROM unnest(%s::bigint[], %s::int[]) AS r(seq, n)
        WHERE q.seq = r.seq AND q.delivery_count = r.n AND q.state = 1""",
    "release": """WITH rel AS (
        UPDATE {s}.queue q SET state = 0, visible_at = %s, lease_owner = NULL
        FROM unnest(%s::bigint[], %s::int[]) AS r(seq, n)
        WHERE q.seq = r.seq AND q.delivery_count = r.n AND q.state = 1 RETURNING q.agent_type)
        SELECT pg_notify(%s, g) FROM (SELECT DISTINCT agent_type AS g FROM rel) d""",
    "extend": """UPDATE {s}.queue q SET visible_at = %s
        FROM unnest(%s::bigint[], %s::int[]) AS r(seq, n)
        WHERE q.seq = r.seq AND q.delivery_count = r.n AND q.state = 1""",
    "depth": """SELECT count(*) FROM {s}.queue
        WHERE agent_type = %s AND state < 2 AND visible_at <= %s""",
    "prune": """WITH d AS (DELETE FROM {s}.queue
        WHERE state = 2 AND mission_id = ANY(%s::text[]) RETURNING 1) SELECT count(*) FROM d""",
    # Arrays in binary (%b): the text format escapes every quote of every JSON body.
    "bus_publish": """WITH ins AS (
        INSERT INTO {s}.inbox (mission_id, body)
        SELECT m, b FROM unnest(%b::text[], %b::text[]) WITH ORDINALITY AS u(m, b, o)
        ORDER BY o RETURNING mission_id)
        SELECT pg_notify(%s, m) FROM (SELECT DISTINCT mission_id AS m FROM ins) d""",
    "receive": """UPDATE {s}.inbox i SET delivered = true, delivery_count = i.delivery_count + 1
        FROM (SELECT id FROM {s}.inbox WHERE mission_id = %s AND NOT delivered
              ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) c
        WHERE i.id = c.id RETURNING i.id, i.body, i.delivery_count""",
    "bus_ack": "DELETE FROM {s}.inbox WHERE mission_id = %s AND id = ANY(%s::bigint[])",
    "recover": """WITH r AS (UPDATE {s}.inbox SET delivered = false
        WHERE mission_id = %s AND delivered RETURNING 1)
        SELECT pg_notify(%s, %s) WHERE EXISTS (SELECT 1 FROM r)""",
    "retire": """WITH d AS (DELETE FROM {s}.inbox WHERE mission_id = ANY(%s::text[]) RETURNING 1)
        SELECT count(*) FROM d""",
}


def _receipt(seq: int, count: int) -> str:
    return f"{seq}:{count}"


def _receipts(deliveries: Sequence[TaskDelivery]) -> tuple[list[int], list[int]]:
    seqs, counts = [], []
    for d in deliveries:
        seq, _, count = d.receipt.partition(":")
        seqs.append(int(seq))
        counts.append(int(count))
    return seqs, counts


class _Base:
    def __init__(self, dsn: str, kind: str, clock: Clock | None, schema: str) -> None:
        s = schema_ident(schema)
        self._q = {name: sql.SQL(text).format(s=s) for name, text in _SQL.items()}
        self._clock = clock or RealClock()
        self._db = PgConnection(dsn, schema)
        self._channel = channel_name(kind, schema)
        self._listener = NotifyListener(dsn, self._channel)
        # Statements sent: lets tests and benchmarks see the cost per call.
        self.statements = 0

    async def _rows(self, name: str, params: Sequence[Any], *, retry: bool = True) -> list[Any]:
        async def run(conn: AsyncConnection[Any]) -> list[Any]:
            self.statements += 1
            cur = await conn.execute(self._q[name], params)
            return [] if cur.description is None else list(await cur.fetchall())

        return await self._db.run(run, retry=retry)

    async def _wait(
        self,
        key: str,
        attempt: Callable[[], Awaitable[list[T]]],
        timeout: float | None,
        next_due: Callable[[], Awaitable[float | None]] | None = None,
    ) -> list[T]:
        await self._listener.ready()  # listening before the first look: no lost wake-up
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            # Registered before the attempt, so a commit between the attempt and the wait
            # still wakes us.
            event = self._listener.register(key)
            try:
                got = await attempt()
                if got:
                    return got
                wait = _SAFETY_S
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        return got
                    wait = min(wait, left)
                if next_due is not None:
                    due = await next_due()
                    if due is not None:
                        wait = min(wait, max(due, 0.0) + 0.001)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # not wait_for: see MemoryEventBus
                        await event.wait()
            finally:
                self._listener.unregister(key, event)

    async def close(self) -> None:
        await self._listener.close()
        await self._db.close()


class PostgresTaskQueue(_Base):
    """Per-agent-type FIFO with delayed visibility and leases, in schema `schema`."""

    def __init__(
        self, dsn: str, *, clock: Clock | None = None, schema: str = DEFAULT_SCHEMA
    ) -> None:
        super().__init__(dsn, "q", clock, schema)

    async def publish(self, items: Sequence[OutboxItem]) -> None:
        if not items:
            return
        now = self._clock.now()
        cols: list[list[Any]] = [[], [], [], [], [], []]
        for item in items:
            task = item.task
            visible = now if item.not_before is None else max(now, item.not_before)
            row = (task.task_id, task.attempt, task.agent_type, task.mission_id, visible,
                   task.model_dump_json())  # fmt: skip
            for col, value in zip(cols, row, strict=True):
                col.append(value)
        # Idempotent (ON CONFLICT DO NOTHING), so safe to repeat after a lost connection.
        await self._rows("publish", (*cols, self._channel))

    async def take(
        self,
        agent_type: str,
        *,
        max_items: int = 1,
        timeout: float | None = None,
        lease_s: float = 30.0,
        worker_id: str = "",
    ) -> list[TaskDelivery]:
        async def attempt() -> list[TaskDelivery]:
            now = self._clock.now()
            until = now + timedelta(seconds=lease_s)
            # A repeat after a lost connection at worst leaves a lease to expire.
            rows = await self._rows("take", (until, worker_id, agent_type, now, max_items))
            rows.sort()  # RETURNING order is unspecified; seq is the FIFO order
            return [
                TaskDelivery(
                    task=Task.model_validate_json(body),
                    receipt=_receipt(seq, count),
                    delivery_count=count,
                )
                for seq, body, count in rows
            ]

        async def next_due() -> float | None:
            # Earliest delayed task or expiring lease: the waiter must look again then.
            rows = await self._rows("next_visible", (agent_type,))
            due = rows[0][0] if rows else None
            return None if due is None else (due - self._clock.now()).total_seconds()

        return await self._wait(agent_type, attempt, timeout, next_due)

    async def ack(self, deliveries: Sequence[TaskDelivery]) -> None:
        if deliveries:
            await self._rows("ack", _receipts(deliveries))

    async def release(self, deliveries: Sequence[TaskDelivery]) -> None:
        if deliveries:
            seqs, counts = _receipts(deliveries)
            await self._rows("release", (self._clock.now(), seqs, counts, self._channel))

    async def extend(self, deliveries: Sequence[TaskDelivery], lease_s: float) -> None:
        if deliveries:
            until = self._clock.now() + timedelta(seconds=lease_s)
            await self._rows("extend", (until, *_receipts(deliveries)))

    async def depth(self, agent_type: str) -> int:
        rows = await self._rows("depth", (agent_type, self._clock.now()))
        return int(rows[0][0])

    async def prune(self, finished: Collection[str]) -> int:
        """Delete the finished missions' acked rows (state 2 only: waiting and leased rows
        stay). Idempotent, so repeated after a lost connection."""
        if not finished:
            return 0
        rows = await self._rows("prune", (sorted(set(finished)),))
        return int(rows[0][0])


class PostgresEventBus(_Base):
    """Per-mission inbox in schema `schema`; delivered messages stay until acked."""

    def __init__(
        self, dsn: str, *, clock: Clock | None = None, schema: str = DEFAULT_SCHEMA
    ) -> None:
        super().__init__(dsn, "b", clock, schema)
        # A publish is on its way; publishes meanwhile wait in `_queued` for the next one.
        self._publishing = False
        self._queued: list[tuple[list[InboundMessage], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, message: InboundMessage) -> None:
        await self.publish_many([message])

    async def publish_many(self, messages: Sequence[InboundMessage]) -> None:
        """Publish in order, in one statement. While a publish of this bus is on its way,
        others (a worker process's other agent types) wait and go out together in the next
        statement: one transaction and one commit for all of them, not one each."""
        if not messages:
            return
        if self._publishing:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queued.append((list(messages), waiter))
            await waiter
            return
        self._publishing = True
        try:
            await self._insert(messages)
        finally:
            if self._queued:
                # Handed on, not run here: this caller does not wait for the others' statement.
                self._flusher = asyncio.create_task(self._flush_queued())
            else:
                self._publishing = False

    async def _flush_queued(self) -> None:
        try:
            while self._queued:
                group = [(m, w) for m, w in self._queued if not w.done()]  # done: cancelled
                self._queued = []
                if not group:
                    continue
                try:
                    await self._insert([m for messages, _ in group for m in messages])
                except BaseException as exc:  # cancelled too: no waiter is left hanging
                    error = (
                        exc if isinstance(exc, Exception) else BackendError("bus publish cut off")
                    )
                    for _, waiter in group:
                        if not waiter.done():
                            waiter.set_exception(error)
                    if error is not exc:
                        raise
                else:
                    for _, waiter in group:
                        if not waiter.done():
                            waiter.set_result(None)
        finally:
            self._publishing = False

    async def _insert(self, messages: Sequence[InboundMessage]) -> None:
        mids = [m.mission_id for m in messages]
        bodies = [m.model_dump_json() for m in messages]
        # Not repeated after a lost connection: the first try may have committed, and a
        # duplicate would be a second delivery (harmless, results are deduplicated, but noisy).
        await self._rows("bus_publish", (mids, bodies, self._channel), retry=False)

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])  # the publishes queued behind the last one
        await super().close()

    async def receive(
        self, mission_id: str, *, max_items: int = 10_000, timeout: float | None = None
    ) -> list[InboundDelivery]:
        async def attempt() -> list[InboundDelivery]:
            rows = await self._rows("receive", (mission_id, max_items))
            rows.sort()
            return [
                InboundDelivery(
                    message=INBOUND.validate_json(body), receipt=str(msg_id), delivery_count=n
                )
                for msg_id, body, n in rows
            ]

        return await self._wait(mission_id, attempt, timeout)

    async def ack(self, mission_id: str, deliveries: Sequence[InboundDelivery]) -> None:
        if deliveries:
            await self._rows("bus_ack", (mission_id, [int(d.receipt) for d in deliveries]))

    async def recover(self, mission_id: str) -> None:
        await self._rows("recover", (mission_id, self._channel, mission_id))

    async def retire(self, mission_ids: Collection[str]) -> int:
        if not mission_ids:
            return 0
        rows = await self._rows("retire", (sorted(set(mission_ids)),))
        return int(rows[0][0])
