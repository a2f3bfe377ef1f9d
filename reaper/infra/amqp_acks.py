"""Settling RabbitMQ deliveries: acks folded into one `multiple=True` frame where the broker's
semantics allow it, and frames queued without waiting for each one to reach the socket.

A `basic.ack` with `multiple=True` settles every outstanding delivery of the channel up to
its tag, so it may only cover tags this process has settled or is settling now: the
`Settler` keeps the tags delivered on each channel and not settled yet (a min-heap with lazy
deletion), and an ack covers, in one frame, those of its tags below the oldest one still open
(a delivery still buffered, leased to another task, or about to be handed back). The rest go
one frame each. Every frame of a settlement is queued under one lock, so a `multiple=True` ack
never overtakes (and never acks a second time) a single ack or a nack computed before it;
all but the last are queued without waiting for the socket, and the last one's drain means
they are all written (a channel's frames go out in order).

A tag leaves the open set only when its frame is queued: a hand-back (nack) queued later
keeps its delivery out of every `multiple=True` ack until then.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiormq.abc import AbstractChannel

__all__ = ["Settler"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Open:
    """The channel's delivered, unsettled tags."""

    tags: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)

    def floor(self) -> int | None:
        """The oldest open tag (None: none open)."""
        while self.heap and self.heap[0] not in self.tags:
            heapq.heappop(self.heap)
        return self.heap[0] if self.heap else None


class Settler:
    """Open delivery tags per channel, and their settlement (see the module docstring)."""

    def __init__(self) -> None:
        self._open: dict[AbstractChannel, _Open] = {}
        self._lock = asyncio.Lock()

    def delivered(self, channel: AbstractChannel, tag: int) -> None:
        state = self._open.get(channel)
        if state is None:
            state = self._open[channel] = _Open()
        state.tags.add(tag)
        heapq.heappush(state.heap, tag)

    def forget_closed(self) -> None:
        """Drop closed channels (a reconnect): the broker requeued what they held."""
        for channel in [c for c in self._open if c.is_closed]:
            del self._open[channel]

    def open_on(self, channel: AbstractChannel) -> int:
        """Deliveries of `channel` not settled yet (what its prefetch counts)."""
        state = self._open.get(channel)
        return 0 if state is None else len(state.tags)

    def open_count(self) -> int:
        return sum(len(s.tags) for s in self._open.values())

    async def ack(self, channel: AbstractChannel, tags: Iterable[int]) -> None:
        """Ack these tags of `channel`, in as few frames as the open tags allow."""
        async with self._lock:
            state = self._open.get(channel)
            mine = sorted(set(tags) & state.tags) if state is not None else []
            if state is None or not mine:
                return
            state.tags.difference_update(mine)
            floor = state.floor()
            # The tags below the oldest open one are a prefix of `mine`: one frame for them.
            covered = sum(1 for t in mine if floor is None or t < floor)
            frames = [(t, False) for t in mine]
            if covered > 1:
                frames[:covered] = [(mine[covered - 1], True)]
            for i, (tag, multiple) in enumerate(frames):
                await channel.basic_ack(tag, multiple=multiple, wait=i == len(frames) - 1)

    async def nack(self, channel: AbstractChannel, tag: int, *, requeue: bool) -> None:
        """Hand one delivery back (requeue) or drop it to the dead-letter queue."""
        async with self._lock:
            state = self._open.get(channel)
            if state is None or tag not in state.tags:
                return
            try:
                await channel.basic_nack(tag, requeue=requeue, wait=False)
            finally:
                # Queued (or the channel is gone, and the broker requeued it anyway).
                state.tags.discard(tag)
