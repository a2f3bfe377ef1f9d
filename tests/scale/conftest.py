"""Drops the namespaces the scale tests made on the shared servers (see `backend_spec`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import NAMESPACES, POSTGRES_URL


@pytest.fixture(autouse=True, scope="session")
def _drop_namespaces() -> Iterator[None]:
    yield
    if not NAMESPACES:
        return
    import psycopg
    import redis
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for name, _ in NAMESPACES:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    for name, url in NAMESPACES:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            keys = list(client.scan_iter(match=f"{name}:*", count=1000))
            if keys:
                client.unlink(*keys)
        except redis.ConnectionError:
            pass  # a throwaway server a test killed: its keys went with it
        finally:
            client.close()
