"""A throwaway namespace for one `reaper bench` run on shared servers.

A benchmark must not leave thousands of simulated hosts in an operator's PostgreSQL store or
keys in their Redis: every PostgreSQL URL gets a schema of its own (`?schema=`) and every Redis
URL a key prefix (`?prefix=`), both dropped when the run ends. SQLite and memory need nothing:
the bench's SQLite file lives in a temporary directory.
"""

from __future__ import annotations

import logging
import secrets
from urllib.parse import urlsplit

from reaper.errors import BackendError
from reaper.infra.factory import parse_spec, url_option

__all__ = ["Namespace", "drop_keys", "drop_queues", "drop_schema", "drop_topics"]

log = logging.getLogger(__name__)


class Namespace:
    """Rewrites specs into the run's namespace (`isolate`) and drops it (`drop`)."""

    def __init__(self) -> None:
        token = secrets.token_hex(4)
        self.schema = f"reaper_bench_{token}"
        self.prefix = f"reaper-bench-{token}"
        self._postgres: set[str] = set()
        self._redis: set[str] = set()
        self._amqp: set[str] = set()
        self._kafka: set[str] = set()

    def isolate(self, spec: str) -> str:
        """`spec` with this namespace's schema or prefix; other specs as they are."""
        parts = parse_spec(spec)
        if len(parts) != 1:
            raise ValueError(f"one backend part expected, not {spec!r}")
        kind, url = parts[0].kind, parts[0].target
        if kind == "postgres":
            base = url_option(url, "schema")[0]
            self._postgres.add(base)
            return _with(base, "schema", self.schema)
        if kind in ("redis", "amqp", "kafka"):
            base = url_option(url, "prefix")[0]
            {"redis": self._redis, "amqp": self._amqp, "kafka": self._kafka}[kind].add(base)
            return _with(base, "prefix", self.prefix)
        return spec

    async def drop(self) -> None:
        """Remove everything the run created (best effort: a failure is logged)."""
        for dsn in self._postgres:
            try:
                await drop_schema(dsn, self.schema)
            except Exception as exc:  # cleanup must not hide the run's own outcome
                log.warning("bench: could not drop schema %s: %s", self.schema, exc)
        for url in self._redis:
            try:
                await drop_keys(url, self.prefix)
            except Exception as exc:
                log.warning("bench: could not delete keys %s:*: %s", self.prefix, exc)
        for url in self._amqp:
            try:
                await drop_queues(url, self.prefix)
            except Exception as exc:
                log.warning("bench: could not delete queues %s.*: %s", self.prefix, exc)
        for url in self._kafka:
            try:
                await drop_topics(url, self.prefix)
            except Exception as exc:
                log.warning("bench: could not delete topics %s.*: %s", self.prefix, exc)


def _with(url: str, name: str, value: str) -> str:
    sep = "&" if urlsplit(url).query else "?"
    return f"{url}{sep}{name}={value}"


async def drop_schema(dsn: str, schema: str) -> None:
    """DROP SCHEMA … CASCADE on the server of `dsn` (a URL without Reaper's options)."""
    import psycopg
    from psycopg import sql

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


async def drop_keys(url: str, prefix: str) -> None:
    """Delete every `prefix:*` key on the Redis server of `url`."""
    from reaper.infra.redis_conn import connect

    client = connect(url)
    try:
        batch: list[str] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    except Exception as exc:
        raise BackendError(str(exc)) from exc
    finally:
        await client.aclose()


async def drop_queues(url: str, prefix: str) -> None:
    """Delete the `prefix` queues of every agent type on the RabbitMQ broker of `url`."""
    from reaper.infra.amqp_queue import AmqpTaskQueue

    queue = AmqpTaskQueue(url, prefix=prefix)
    try:
        await queue.delete_queues()
    finally:
        await queue.close()


async def drop_topics(url: str, prefix: str) -> None:
    """Delete every `prefix.*` topic on the Kafka cluster of `url`."""
    from reaper.infra.kafka_bus import KafkaEventBus

    bus = KafkaEventBus(url, prefix=prefix)
    try:
        await bus.drop_all()
    finally:
        await bus.close()
