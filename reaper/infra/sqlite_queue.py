"""`TaskQueue` and `EventBus` on SQLite: one row per queued task and per inbound message.

Queue rows: visible from `visible_at`; a lease moves `visible_at` to the lease's expiry, so an
unacked lease makes the task visible again with no sweeper. Acked rows stay (without their
body) so a re-publish of the same (task_id, attempt) is ignored, until `prune` deletes those of
finished missions. Receipts carry the delivery count, so an ack from a lease that expired and
was handed out again does nothing.
Inbox rows: `delivered` while in flight, deleted on ack, un-delivered by `recover`, all of a
finished mission's deleted by `retire`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from reaper.infra.base import InboundDelivery, OutboxItem, TaskDelivery
from reaper.infra.sqlite_db import SqliteDatabase
from reaper.models import (
    INBOUND,
    InboundMessage,
    Task,
)

__all__ = ["SqliteEventBus", "SqliteTaskQueue"]

_PUBLISH = """
INSERT OR IGNORE INTO queue (task_id, attempt, agent_type, mission_id, state, visible_at, body)
VALUES (?, ?, ?, ?, 0, ?, ?)
"""
# One statement: the write lock is taken before the read, so two takers never get one task.
# FIFO by publish order among the visible rows of the agent type.
_TAKE = """
UPDATE queue SET state = 1, visible_at = ?, lease_owner = ?, delivery_count = delivery_count + 1
WHERE seq IN (
    SELECT seq FROM queue WHERE agent_type = ? AND state < 2 AND visible_at <= ?
    ORDER BY seq LIMIT ?
)
RETURNING seq, body, delivery_count
"""
_NEXT_VISIBLE = "SELECT min(visible_at) FROM queue WHERE agent_type = ? AND state < 2"
_ACK = """
UPDATE queue SET state = 2, lease_owner = NULL, body = ''
WHERE seq = ? AND delivery_count = ? AND state = 1
"""
_RELEASE = """
UPDATE queue SET state = 0, visible_at = ?, lease_owner = NULL
WHERE seq = ? AND delivery_count = ? AND state = 1
"""
_EXTEND = "UPDATE queue SET visible_at = ? WHERE seq = ? AND delivery_count = ? AND state = 1"
_DEPTH = "SELECT count(*) FROM queue WHERE agent_type = ? AND state < 2 AND visible_at <= ?"

# Missions per statement: well under SQLite's bound on parameters (999 before 3.32).
_CHUNK = 500


def _chunks(ids: Collection[str]) -> list[list[str]]:
    unique = sorted(set(ids))
    return [unique[i : i + _CHUNK] for i in range(0, len(unique), _CHUNK)]


def _delete_by_mission(db: SqliteDatabase, what: str, sql: str, ids: Collection[str]) -> int:
    """`sql` with `{ids}` standing for the placeholders, run per chunk; rows deleted."""
    removed = 0
    for chunk in _chunks(ids):
        removed += db.write_many(what, sql.format(ids=", ".join("?" * len(chunk))), [chunk])
    return removed


_BUS_PUBLISH = "INSERT INTO inbox (mission_id, body) VALUES (?, ?)"
_RECEIVE = """
UPDATE inbox SET delivered = 1, delivery_count = delivery_count + 1
WHERE id IN (
    SELECT id FROM inbox WHERE mission_id = ? AND delivered = 0 ORDER BY id LIMIT ?
)
RETURNING id, body, delivery_count
"""


def _receipt(seq: int, count: int) -> str:
    return f"{seq}:{count}"


def _parse_receipt(receipt: str) -> tuple[int, int]:
    seq, _, count = receipt.partition(":")
    return int(seq), int(count)


class SqliteTaskQueue:
    """Per-agent-type FIFO with delayed visibility and leases, in the shared file."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def publish(self, items: Sequence[OutboxItem]) -> None:
        if not items:
            return
        now = self._db.now()
        rows = []
        for item in items:
            task = item.task
            visible = now if item.not_before is None else max(now, item.not_before.timestamp())
            rows.append(
                (
                    task.task_id,
                    task.attempt,
                    task.agent_type,
                    task.mission_id,
                    visible,
                    task.model_dump_json(),
                )
            )
        if self._db.write_many("publish tasks", _PUBLISH, rows):
            for agent_type in {item.task.agent_type for item in items}:
                self._db.notify(("queue", agent_type))

    async def take(
        self,
        agent_type: str,
        *,
        max_items: int = 1,
        timeout: float | None = None,
        lease_s: float = 30.0,
        worker_id: str = "",
    ) -> list[TaskDelivery]:
        db = self._db

        def attempt() -> list[TaskDelivery]:
            now = db.now()
            rows = db.execute("take", _TAKE, (now + lease_s, worker_id, agent_type, now, max_items))
            rows.sort()  # RETURNING order is unspecified; seq is the FIFO order
            return [
                TaskDelivery(
                    task=Task.model_validate_json(body),
                    receipt=_receipt(seq, count),
                    delivery_count=count,
                )
                for seq, body, count in rows
            ]

        def next_due() -> float | None:
            # Earliest delayed task or expiring lease: the waiter must wake then.
            rows = db.execute("next visible", _NEXT_VISIBLE, (agent_type,))
            due = rows[0][0] if rows else None
            return None if due is None else float(due) - db.now()

        return await db.wait(("queue", agent_type), attempt, timeout=timeout, next_due=next_due)

    def _by_receipt(
        self, deliveries: Sequence[TaskDelivery], first: tuple[float, ...] = ()
    ) -> list[tuple[float | int, ...]]:
        return [(*first, *_parse_receipt(d.receipt)) for d in deliveries]

    async def ack(self, deliveries: Sequence[TaskDelivery]) -> None:
        if deliveries:
            self._db.write_many("ack tasks", _ACK, self._by_receipt(deliveries))

    async def release(self, deliveries: Sequence[TaskDelivery]) -> None:
        if not deliveries:
            return
        rows = self._by_receipt(deliveries, (self._db.now(),))
        if self._db.write_many("release tasks", _RELEASE, rows):
            for agent_type in {d.task.agent_type for d in deliveries}:
                self._db.notify(("queue", agent_type))

    async def extend(self, deliveries: Sequence[TaskDelivery], lease_s: float) -> None:
        if deliveries:
            rows = self._by_receipt(deliveries, (self._db.now() + lease_s,))
            self._db.write_many("extend leases", _EXTEND, rows)

    async def depth(self, agent_type: str) -> int:
        rows = self._db.execute("depth", _DEPTH, (agent_type, self._db.now()))
        return int(rows[0][0])

    async def prune(self, finished: Collection[str]) -> int:
        """Delete the finished missions' acked rows (state 2 only: waiting and leased rows
        stay, whoever they belong to)."""
        return _delete_by_mission(
            self._db,
            "prune tasks",
            "DELETE FROM queue WHERE state = 2 AND mission_id IN ({ids})",
            finished,
        )

    async def close(self) -> None:
        self._db.close()


class SqliteEventBus:
    """Per-mission inbox in the shared file; delivered messages stay until acked."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def publish(self, message: InboundMessage) -> None:
        self._db.execute(
            "publish message", _BUS_PUBLISH, (message.mission_id, message.model_dump_json())
        )
        self._db.notify(("bus", message.mission_id))

    async def publish_many(self, messages: Sequence[InboundMessage]) -> None:
        rows = [(m.mission_id, m.model_dump_json()) for m in messages]
        self._db.write_many("publish messages", _BUS_PUBLISH, rows)
        for mission_id in {m.mission_id for m in messages}:
            self._db.notify(("bus", mission_id))

    async def receive(
        self, mission_id: str, *, max_items: int = 10_000, timeout: float | None = None
    ) -> list[InboundDelivery]:
        db = self._db

        def attempt() -> list[InboundDelivery]:
            rows = db.execute("receive", _RECEIVE, (mission_id, max_items))
            rows.sort()
            return [
                InboundDelivery(
                    message=INBOUND.validate_json(body), receipt=str(msg_id), delivery_count=n
                )
                for msg_id, body, n in rows
            ]

        return await db.wait(("bus", mission_id), attempt, timeout=timeout)

    async def ack(self, mission_id: str, deliveries: Sequence[InboundDelivery]) -> None:
        if deliveries:
            self._db.write_many(
                "ack messages",
                "DELETE FROM inbox WHERE id = ? AND mission_id = ?",
                [(int(d.receipt), mission_id) for d in deliveries],
            )

    async def recover(self, mission_id: str) -> None:
        rows = self._db.execute(
            "recover",
            "UPDATE inbox SET delivered = 0 WHERE mission_id = ? AND delivered = 1 RETURNING id",
            (mission_id,),
        )
        if rows:
            self._db.notify(("bus", mission_id))

    async def retire(self, mission_ids: Collection[str]) -> int:
        """Delete the missions' inbox rows, delivered or not."""
        delete = "DELETE FROM inbox WHERE mission_id IN ({ids})"
        return _delete_by_mission(self._db, "retire missions", delete, mission_ids)

    async def close(self) -> None:
        self._db.close()
