"""Event bus on Redis Streams: one stream per mission, consumer group `engine`.

An engine's `receive` blocks in XREADGROUP and returns everything waiting as one batch; a
message stays pending in the group until the engine acks it (XACK + XDEL) after committing
what it applied. An engine that takes a mission over calls `recover`: the group's pending
entries of that mission are claimed to it (XAUTOCLAIM, idle 0) and its next receives re-read
them from the pending list before new messages. Messages are the models' JSON, never pickle.
`retire` deletes a finished mission's stream, and its group with it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from reaper.clock import Clock, RealClock
from reaper.infra.base import InboundDelivery
from reaper.infra.redis_conn import (
    MAX_BLOCK_S,
    connect,
    default_consumer,
    entries_of,
    is_nogroup,
    mapped,
)
from reaper.models import INBOUND, InboundMessage

__all__ = ["RedisEventBus"]

GROUP = "engine"
_RETIRE_CHUNK = 500  # keys per DEL: bounds one command's size and the time it blocks Redis


class RedisEventBus:
    """`EventBus` on Redis Streams (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        prefix: str = "reaper",
        consumer: str | None = None,
        client: Redis | None = None,
    ) -> None:
        self._clock = clock or RealClock()
        self._redis = client if client is not None else connect(url)
        self._prefix = prefix
        self._consumer = consumer or default_consumer("engine")
        self._groups: set[str] = set()
        # mission -> id after which this consumer's pending entries are still to re-deliver
        self._recovering: dict[str, str] = {}

    def stream_key(self, mission_id: str) -> str:
        return f"{self._prefix}:bus:{mission_id}"

    async def _ensure_group(self, mission_id: str, *, force: bool = False) -> None:
        if mission_id in self._groups and not force:
            return
        try:
            await self._redis.xgroup_create(self.stream_key(mission_id), GROUP, "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(mission_id)

    async def publish(self, message: InboundMessage) -> None:
        async with mapped("bus publish"):
            await self._redis.xadd(
                self.stream_key(message.mission_id), {"m": message.model_dump_json()}
            )

    async def publish_many(self, messages: Sequence[InboundMessage]) -> None:
        async with mapped("bus publish"):
            pipe = self._redis.pipeline(transaction=False)
            for message in messages:
                pipe.xadd(self.stream_key(message.mission_id), {"m": message.model_dump_json()})
            await pipe.execute()

    async def receive(
        self, mission_id: str, *, max_items: int = 10_000, timeout: float | None = None
    ) -> list[InboundDelivery]:
        start = self._clock.monotonic()
        async with mapped("bus receive"):
            await self._ensure_group(mission_id)
            while True:
                try:
                    if mission_id in self._recovering:
                        again = await self._read_pending(mission_id, max_items)
                        if again:
                            return again
                    remaining = None
                    if timeout is not None:
                        remaining = timeout - (self._clock.monotonic() - start)
                    wait = MAX_BLOCK_S if remaining is None else min(remaining, MAX_BLOCK_S)
                    block = int(wait * 1000)
                    reply = await self._redis.xreadgroup(
                        GROUP,
                        self._consumer,
                        {self.stream_key(mission_id): ">"},
                        count=max_items,
                        block=block if block > 0 else None,
                    )
                except ResponseError as exc:
                    if not is_nogroup(exc):
                        raise
                    await self._ensure_group(mission_id, force=True)
                    continue
                entries = entries_of(reply)
                if entries:
                    return [self._delivery(i, f, 1) for i, f in entries if f]
                if remaining is not None and remaining - wait <= 0:
                    return []

    async def _read_pending(self, mission_id: str, max_items: int) -> list[InboundDelivery]:
        key = self.stream_key(mission_id)
        cursor = self._recovering[mission_id]
        reply = await self._redis.xreadgroup(GROUP, self._consumer, {key: cursor}, count=max_items)
        entries = entries_of(reply)
        if not entries:
            del self._recovering[mission_id]
            return []
        self._recovering[mission_id] = entries[-1][0]
        gone = [i for i, f in entries if not f]  # deleted while pending: nothing to deliver
        if gone:
            await self._redis.xack(key, GROUP, *gone)
        live = [(i, f) for i, f in entries if f]
        if not live:
            return []
        pending = await self._redis.xpending_range(
            key, GROUP, min=live[0][0], max=live[-1][0], count=len(entries),
            consumername=self._consumer,
        )  # fmt: skip
        counts = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        return [self._delivery(i, f, counts.get(i, 2)) for i, f in live]

    @staticmethod
    def _delivery(entry_id: str, fields: dict[str, str], count: int) -> InboundDelivery:
        return InboundDelivery(
            message=INBOUND.validate_json(fields["m"]), receipt=entry_id, delivery_count=count
        )

    async def ack(self, mission_id: str, deliveries: Sequence[InboundDelivery]) -> None:
        if not deliveries:
            return
        ids = [d.receipt for d in deliveries]
        key = self.stream_key(mission_id)
        async with mapped("bus ack"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.xack(key, GROUP, *ids)
            pipe.xdel(key, *ids)
            await pipe.execute()

    async def recover(self, mission_id: str) -> None:
        key = self.stream_key(mission_id)
        async with mapped("bus recover"):
            await self._ensure_group(mission_id)
            cursor = "0-0"
            while True:
                # Not JUSTID: redis-py then drops the cursor from the reply.
                reply: Any = await self._redis.xautoclaim(
                    key, GROUP, self._consumer, min_idle_time=0, start_id=cursor, count=1000
                )
                cursor = reply[0]
                if cursor in ("0-0", b"0-0"):
                    break
        self._recovering[mission_id] = "0"

    async def depth(self, mission_id: str) -> int:
        """Messages not yet received by the mission's engine (the group's lag)."""
        key = self.stream_key(mission_id)
        async with mapped("bus depth"):
            await self._ensure_group(mission_id)
            length = await self._redis.xlen(key)
            pending = await self._redis.xpending(key, GROUP)
        return max(0, int(length) - int(pending["pending"]))

    async def retire(self, mission_ids: Collection[str]) -> int:
        """DEL the missions' streams (their groups and pending lists go with them); returns
        how many existed. A message published later recreates a stream, without a group: a
        later `retire` deletes it again, and a `receive` would recreate the group."""
        ids = sorted(set(mission_ids))
        removed = 0
        async with mapped("bus retire"):
            for i in range(0, len(ids), _RETIRE_CHUNK):
                keys = [self.stream_key(m) for m in ids[i : i + _RETIRE_CHUNK]]
                removed += int(await self._redis.delete(*keys))
        for mission_id in ids:
            self._groups.discard(mission_id)
            self._recovering.pop(mission_id, None)
        return removed

    async def close(self) -> None:
        async with mapped("bus close"):
            await self._redis.aclose()
