"""Shared plumbing of the RabbitMQ queue: error mapping at the boundary, what a delivery
carries (its channel, its delivery count), a consumer's buffer, a lease, delay buckets."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aio_pika
import aiormq
import aiormq.abc
from aio_pika.abc import AbstractQueue, AbstractRobustChannel
from aiormq.abc import DeliveredMessage

from reaper.errors import BackendError

__all__ = [
    "ERRORS",
    "Consumer",
    "Lease",
    "delay_bucket_ms",
    "delivery_count",
    "mapped",
    "stale",
]

ERRORS = (aio_pika.exceptions.AMQPException, aiormq.exceptions.AMQPError, OSError)


@contextlib.asynccontextmanager
async def mapped(what: str) -> AsyncIterator[None]:
    """aio-pika and aiormq errors (and dropped sockets) as `BackendError` (the boundary)."""
    try:
        yield
    except BackendError:
        raise
    except ERRORS as exc:
        raise BackendError(f"amqp {what} failed: {exc!r}") from exc
    except TimeoutError as exc:
        raise BackendError(f"amqp {what} timed out") from exc
    except RuntimeError as exc:  # aio-pika's "connection closed" during a reconnect
        raise BackendError(f"amqp {what} failed: {exc}") from exc


def delay_bucket_ms(ms: int) -> int:
    """`ms` rounded up to two significant digits (>= 1)."""
    if ms <= 100:
        return max(1, ms)
    step: int = 10 ** (int(math.log10(ms)) - 1)
    return -(-ms // step) * step


def stale(channel: aiormq.abc.AbstractChannel) -> bool:
    """A delivery's channel has closed since (a reconnect): it cannot be acked. Asked of the
    channel recorded at delivery: aio-pika's `message.channel` raises once it is closed."""
    return bool(channel.is_closed)


def delivery_count(message: DeliveredMessage) -> int:
    """This delivery's number: the quorum queue's count of earlier ones, plus one."""
    earlier = (message.header.properties.headers or {}).get("x-delivery-count")
    return (earlier if isinstance(earlier, int) else 0) + 1


@dataclass
class Lease:
    message: DeliveredMessage
    channel: aiormq.abc.AbstractChannel  # the one it was delivered on
    agent_type: str
    deadline: float

    @property
    def tag(self) -> int:
        return int(self.message.delivery_tag or 0)


@dataclass
class Consumer:
    """One agent type's consumer: its channel and the deliveries not yet taken (each with
    the underlying channel it came on)."""

    channel: AbstractRobustChannel
    queue: AbstractQueue
    prefetch: int = 1
    tag: str = ""
    buffer: deque[tuple[DeliveredMessage, aiormq.abc.AbstractChannel]] = field(
        default_factory=deque
    )
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
