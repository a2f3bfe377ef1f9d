"""Drops the namespaces the scale tests made on the shared servers (see `backend_spec`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from reaper.bench.space import drop_keys, drop_schema
from reaper.errors import BackendError

from .harness import NAMESPACES, POSTGRES_URL, REDIS_URL


async def _drop_all() -> None:
    for name, redis_url in NAMESPACES:
        await drop_schema(POSTGRES_URL, name)
        if redis_url == REDIS_URL:  # a throwaway server's keys went with it
            with contextlib.suppress(BackendError):
                await drop_keys(redis_url, name)


@pytest.fixture(autouse=True, scope="session")
def _drop_namespaces() -> Iterator[None]:
    yield
    if NAMESPACES:
        asyncio.run(_drop_all())
