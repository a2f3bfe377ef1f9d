"""Task queue on Redis Streams: one stream per agent type, consumer group `workers`.

`take` blocks in XREADGROUP (notification-driven: a publish wakes it), bounded by the next
lease deadline or delayed task due, so expired leases and due retries are picked up on time.
A lease is a deadline in a sorted set beside the stream (per delivery, so `extend` can set
any length). Each `take` starts with one Lua script that moves due delayed tasks into their
streams, re-claims deliveries whose lease ran out (XCLAIM, which counts the delivery),
dead-letters a task delivered more than `max_deliveries` times and reads what is waiting,
leasing it in the same atomic step: one round trip when there is work. Only when there is
none does `take` block in XREADGROUP (and then records the leases). `ack` is XACK + XDEL.
Deadlines are epoch milliseconds from the queue's clock: hosts sharing a queue need
synchronised clocks (as for any lease). Messages are the models' JSON, never pickle.

Nothing acked is kept (XDEL at ack, `trim` below the oldest needed entry) and the publish
de-duplication markers expire after `seen_ttl_s`, so `prune` has no per-mission rows to
forget; it removes the consumers that dead worker processes leave in the group.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from reaper.clock import Clock, RealClock
from reaper.infra import redis_scripts as lua
from reaper.infra.base import OutboxItem, TaskDelivery
from reaper.infra.redis_conn import (
    MAX_BLOCK_S,
    connect,
    default_consumer,
    entries_of,
    is_nogroup,
    mapped,
)
from reaper.models import AGENT_TYPES, Task

__all__ = ["RedisTaskQueue"]

log = logging.getLogger(__name__)

GROUP = "workers"


def _epoch_ms(clock: Clock) -> int:
    return int(clock.now().timestamp() * 1000)


class RedisTaskQueue:
    """`TaskQueue` on Redis Streams (see the module docstring and `redis_scripts`)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        prefix: str = "reaper",
        max_deliveries: int = 5,
        seen_ttl_s: int = 7 * 86_400,
        trim_interval_s: float = 30.0,
        consumer_idle_s: float = 3600.0,
        client: Redis | None = None,
    ) -> None:
        self._clock = clock or RealClock()
        self._redis = client if client is not None else connect(url)
        self._prefix = prefix
        self.max_deliveries = max_deliveries
        self._seen_ttl_s = seen_ttl_s
        self._trim_interval_s = trim_interval_s
        self._consumer_idle_s = consumer_idle_s
        self._groups: set[str] = set()
        # Agent types published to here, beside AGENT_TYPES: the streams `prune` looks at.
        self._agent_types: set[str] = set()
        self._last_trim: dict[str, float] = {}
        self._last_sweep: dict[str, float] = {}
        self._consumer: str | None = None
        self._publish = self._redis.register_script(lua.PUBLISH)
        self._reclaim = self._redis.register_script(lua.RECLAIM)
        self._lease_new = self._redis.register_script(lua.LEASE_NEW)
        self._ack = self._redis.register_script(lua.ACK)
        self._extend = self._redis.register_script(lua.EXTEND)
        self._release = self._redis.register_script(lua.RELEASE)
        self._trim = self._redis.register_script(lua.TRIM)
        self._prune_consumers = self._redis.register_script(lua.PRUNE_CONSUMERS)

    # keys -----------------------------------------------------------------------------------
    def stream_key(self, agent_type: str) -> str:
        return f"{self._prefix}:q:{agent_type}"

    def dlq_key(self, agent_type: str) -> str:
        return f"{self._prefix}:dlq:{agent_type}"

    def _keys(self, agent_type: str) -> list[str]:
        return [
            self.stream_key(agent_type),
            f"{self._prefix}:lease:{agent_type}",
            self.dlq_key(agent_type),
        ]

    async def _ensure_group(self, agent_type: str, *, force: bool = False) -> None:
        if agent_type in self._groups and not force:
            return
        try:
            # From id 0: entries added before the group existed are still delivered.
            await self._redis.xgroup_create(self.stream_key(agent_type), GROUP, "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(agent_type)

    # publish --------------------------------------------------------------------------------
    async def publish(self, items: Sequence[OutboxItem]) -> None:
        if not items:
            return
        args: list[Any] = [self._prefix, _epoch_ms(self._clock), self._seen_ttl_s]
        for item in items:
            due = 0 if item.not_before is None else int(item.not_before.timestamp() * 1000)
            task = item.task
            args += [task.agent_type, task.task_id, task.attempt, due, task.model_dump_json()]
            self._agent_types.add(task.agent_type)
        async with mapped("publish"):
            await self._publish(keys=[], args=args)

    # take -----------------------------------------------------------------------------------
    async def take(
        self,
        agent_type: str,
        *,
        max_items: int = 1,
        timeout: float | None = None,
        lease_s: float = 30.0,
        worker_id: str = "",
    ) -> list[TaskDelivery]:
        consumer = worker_id or self._default_consumer()
        start = self._clock.monotonic()
        async with mapped("take"):
            await self._ensure_group(agent_type)
            while True:
                try:
                    got = await self._take_once(
                        agent_type, consumer, max_items, lease_s, start, timeout
                    )
                except ResponseError as exc:
                    if not is_nogroup(exc):
                        raise
                    await self._ensure_group(agent_type, force=True)
                    continue
                if got is not None:
                    return got

    def _default_consumer(self) -> str:
        if self._consumer is None:
            self._consumer = default_consumer("worker")
        return self._consumer

    async def _take_once(
        self,
        agent_type: str,
        consumer: str,
        max_items: int,
        lease_s: float,
        start: float,
        timeout: float | None,
    ) -> list[TaskDelivery] | None:
        """One reclaim and one (blocking) read: the deliveries, [] on timeout, None when
        woken by a deadline (a lease ran out, a delayed task is due) to go round again."""
        keys = self._keys(agent_type)
        lease_ms = max(1, int(lease_s * 1000))
        mono = self._clock.monotonic()
        sweep = mono - self._last_sweep.get(agent_type, -1e9) >= min(lease_s, MAX_BLOCK_S)
        if sweep:
            self._last_sweep[agent_type] = mono
        now_ms = _epoch_ms(self._clock)
        claimed, dead, nxt = await self._reclaim(
            keys=keys,
            args=[self._prefix, now_ms, GROUP, consumer, lease_ms, max_items,
                  self.max_deliveries, 1 if sweep else 0],
        )  # fmt: skip
        for entry_id, body, count in dead:
            log.error(
                "task dead-lettered after %s deliveries: %s (%s)",
                count, Task.model_validate_json(body).task_id, entry_id,
            )  # fmt: skip
        if claimed:
            return [self._delivery(body, i, consumer, t, c) for i, body, c, t in claimed]
        if dead:  # the batch was all poison: look again before blocking
            return None
        await self._maybe_trim(agent_type)
        remaining = None if timeout is None else timeout - (self._clock.monotonic() - start)
        if remaining is not None and remaining <= 0:
            return []  # the script has just read the stream: a non-blocking read would repeat it
        wait = MAX_BLOCK_S if remaining is None else min(remaining, MAX_BLOCK_S)
        next_ms = int(nxt)
        if next_ms >= 0:
            wait = min(wait, max(0.0, (next_ms - now_ms) / 1000))
        block = int(wait * 1000)
        reply = await self._redis.xreadgroup(
            GROUP, consumer, {keys[0]: ">"}, count=max_items, block=block if block > 0 else None
        )
        entries = entries_of(reply)
        if entries:
            # All dead-lettered (a task released too often): go round again.
            return await self._lease_read(agent_type, consumer, entries, lease_ms) or None
        if remaining is not None and remaining - wait <= 0:
            return []
        return None

    async def _lease_read(
        self,
        agent_type: str,
        consumer: str,
        entries: list[tuple[str, dict[str, str] | None]],
        lease_ms: int,
    ) -> list[TaskDelivery]:
        args: list[Any] = [GROUP, _epoch_ms(self._clock) + lease_ms, self.max_deliveries]
        live = [(i, f) for i, f in entries if f]  # a deleted entry reads as (id, None)
        for entry_id, fields in live:
            args += [entry_id, int(fields.get("b", 0)) + 1]
        dead = set(await self._lease_new(keys=self._keys(agent_type), args=args))
        out: list[TaskDelivery] = []
        for entry_id, fields in live:
            count = int(fields.get("b", 0)) + 1
            if entry_id in dead:
                log.error("task dead-lettered after %s deliveries: %s", count - 1, entry_id)
                continue
            out.append(self._delivery(fields["t"], entry_id, consumer, 1, count))
        return out

    @staticmethod
    def _delivery(body: str, entry_id: str, consumer: str, times: int, count: int) -> TaskDelivery:
        return TaskDelivery(
            task=Task.model_validate_json(body),
            receipt=f"{entry_id}|{consumer}|{times}",
            delivery_count=int(count),
        )

    # ack / release / extend -----------------------------------------------------------------
    @staticmethod
    def _by_agent(deliveries: Sequence[TaskDelivery]) -> dict[str, list[TaskDelivery]]:
        groups: dict[str, list[TaskDelivery]] = {}
        for d in deliveries:
            groups.setdefault(d.task.agent_type, []).append(d)
        return groups

    async def ack(self, deliveries: Sequence[TaskDelivery]) -> None:
        async with mapped("ack"):
            for agent_type, ds in self._by_agent(deliveries).items():
                args: list[Any] = [GROUP]
                for d in ds:
                    args += d.receipt.split("|")
                await self._ack(keys=self._keys(agent_type)[:2], args=args)

    async def release(self, deliveries: Sequence[TaskDelivery]) -> None:
        async with mapped("release"):
            for agent_type, ds in self._by_agent(deliveries).items():
                args: list[Any] = [GROUP]
                for d in ds:
                    args += [*d.receipt.split("|"), d.delivery_count]
                await self._release(keys=self._keys(agent_type)[:2], args=args)

    async def extend(self, deliveries: Sequence[TaskDelivery], lease_s: float) -> None:
        deadline = _epoch_ms(self._clock) + int(lease_s * 1000)
        async with mapped("extend"):
            for agent_type, ds in self._by_agent(deliveries).items():
                args: list[Any] = [GROUP, deadline]
                for d in ds:
                    args += d.receipt.split("|")
                await self._extend(keys=self._keys(agent_type)[:2], args=args)

    # housekeeping ---------------------------------------------------------------------------
    async def depth(self, agent_type: str) -> int:
        """Entries not yet handed out: stream length minus pending (acked entries are
        deleted at ack, so the rest of the stream is exactly what waits)."""
        async with mapped("depth"):
            await self._ensure_group(agent_type)
            stream = self.stream_key(agent_type)
            try:
                length = await self._redis.xlen(stream)
                pending = await self._redis.xpending(stream, GROUP)
            except ResponseError as exc:
                if not is_nogroup(exc):
                    raise
                self._groups.discard(agent_type)
                return 0
            return max(0, int(length) - int(pending["pending"]))

    async def trim(self, agent_type: str) -> int:
        """Drop acknowledged entries below the oldest one still needed; returns how many."""
        async with mapped("trim"):
            await self._ensure_group(agent_type)
            return int(await self._trim(keys=[self.stream_key(agent_type)], args=[GROUP]))

    async def _maybe_trim(self, agent_type: str) -> None:
        now = self._clock.monotonic()
        if now - self._last_trim.get(agent_type, -1e9) >= self._trim_interval_s:
            self._last_trim[agent_type] = now
            removed = await self.trim(agent_type)
            if removed:
                log.debug("trimmed %d acknowledged entries from %s", removed, agent_type)

    async def prune(self, finished: Collection[str]) -> int:
        """Delete the `workers` consumers holding no pending entry and idle for at least
        `consumer_idle_s` (one per worker process that ever took, dead ones included); returns
        how many. A consumer with pending entries is kept: its entries are re-claimed when
        their leases run out, and deleting it would drop them. `finished` needs nothing here
        (see the module docstring). Looks at the streams of AGENT_TYPES and of the agent types
        this queue has published to or taken from."""
        idle_ms = int(self._consumer_idle_s * 1000)
        removed = 0
        async with mapped("prune"):
            for agent_type in sorted({*AGENT_TYPES, *self._agent_types, *self._groups}):
                keys = [self.stream_key(agent_type)]
                removed += int(await self._prune_consumers(keys=keys, args=[GROUP, idle_ms]))
        if removed:
            log.debug("deleted %d idle consumers without pending tasks", removed)
        return removed

    async def dead_letters(self, agent_type: str, limit: int = 100) -> list[Task]:
        """Tasks moved to the dead-letter stream, oldest first (for inspection)."""
        async with mapped("dead_letters"):
            entries: Any = await self._redis.xrange(self.dlq_key(agent_type), count=limit)
        return [Task.model_validate_json(fields["t"]) for _, fields in entries]

    async def close(self) -> None:
        async with mapped("close"):
            await self._redis.aclose()
