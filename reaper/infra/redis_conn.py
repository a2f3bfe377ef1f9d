"""Shared plumbing of the Redis backend: the client with reconnect policy, error mapping.

Every redis-py error is mapped to `BackendError` here, at the boundary, so no redis exception
reaches the engine or the workers. Dropped connections are retried in place by redis-py's own
`Retry` (exponential backoff, bounded); only when that runs out does a `BackendError` surface.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reaper.errors import BackendError, BackendUnavailableError

__all__ = [
    "MAX_BLOCK_S",
    "connect",
    "default_consumer",
    "entries_of",
    "is_nogroup",
    "mapped",
]

# Longest single XREADGROUP BLOCK: a blocked read wakes at least this often, so orphaned
# deliveries are swept and a dead socket is noticed without relying on TCP keepalive alone.
MAX_BLOCK_S = 5.0


def connect(url: str, *, retries: int = 10, backoff_cap_s: float = 2.0) -> Redis:
    """A client whose connections reconnect with exponential backoff (~10 s in all)."""
    retry = Retry(
        ExponentialBackoff(cap=backoff_cap_s, base=0.05),
        retries,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )
    client = Redis.from_url(
        url,
        decode_responses=True,
        retry=retry,
        health_check_interval=30,
        socket_connect_timeout=5.0,
        # Must exceed the longest BLOCK, or a quiet blocking read looks like a dead socket.
        socket_timeout=MAX_BLOCK_S + 10.0,
        socket_keepalive=True,
    )
    pool = client.connection_pool
    pool.connection_class = _hiredis_packing(pool.connection_class)
    return client


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _hiredis_packing(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    """`cls` packing commands with hiredis (C) where it is installed. redis-py's asyncio
    connections pack in Python, at ~1 µs per argument: the queue's publish and ack scripts
    take five arguments per task, so that was a large share of a worker's CPU."""
    try:
        import hiredis
    except ImportError:
        return cls

    def pack_command(self: AbstractConnection, *args: Any) -> list[bytes]:
        # As redis-py's own hiredis serializer (used by its sync client): a command name
        # with a space ("XGROUP CREATE") is several arguments.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc

    if cls not in _PACKING:
        name = f"HiredisPacking{cls.__name__}"
        _PACKING[cls] = type(name, (cls,), {"pack_command": pack_command})
    return _PACKING[cls]


def default_consumer(role: str) -> str:
    """A consumer name unique to this process (host, pid, random suffix)."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def entries_of(reply: Any) -> list[tuple[str, dict[str, str] | None]]:
    """The entries of a one-stream XREAD/XREADGROUP reply (RESP2 shape, decoded)."""
    if not reply:
        return []
    return list(reply[0][1])


def is_nogroup(exc: BaseException) -> bool:
    """The stream or its group vanished (FLUSHDB, a restart without persistence, a retired
    mission): NOGROUP, or UNBLOCKED for an XREADGROUP blocked on a stream deleted meanwhile."""
    return isinstance(exc, ResponseError) and str(exc).startswith(("NOGROUP", "UNBLOCKED"))


@asynccontextmanager
async def mapped(what: str) -> AsyncIterator[None]:
    """Turn redis-py errors into `BackendError` (the boundary)."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise BackendUnavailableError(f"redis {what} failed: {exc}") from exc
    except RedisError as exc:
        raise BackendError(f"redis {what} failed: {exc}") from exc
    except OSError as exc:  # a socket error redis-py did not wrap
        raise BackendUnavailableError(f"redis {what} failed: {exc}") from exc
