"""Where host output enters: a worker's published result never holds a known secret (in any
encoding) nor the value of a `password=…` pair, whether it came as a summary, an output tail,
facts or an error."""

from __future__ import annotations

import asyncio
import base64
import secrets
from typing import Any
from urllib.parse import quote

from reaper.agents.base import ActionOutcome
from reaper.agents.hosts import StoreHostResolver
from reaper.agents.worker import Worker
from reaper.errors import TransportError
from reaper.infra.memory import MemoryEventBus, MemoryMissionStore, MemoryTaskQueue
from reaper.models import HostConnection, ResultStatus, Task
from reaper.secrets import remember_secret

from .helpers import host, mission, publish, results, task

LINUX = "reaper-linux"


class FnRunner:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
        return await self.fn(task)  # type: ignore[no-any-return]

    async def close(self) -> None:
        return None


async def test_results_are_masked_before_they_are_published() -> None:
    canary = "Wkr-" + secrets.token_hex(8)
    remember_secret(canary)  # as a resolved password_env value is
    b64 = base64.b64encode(canary.encode()).decode()
    store, queue, bus = MemoryMissionStore(), MemoryTaskQueue(), MemoryEventBus()
    await mission(store, host("h1"))

    async def leaky(t: Task) -> ActionOutcome:
        if t.task_id == "t-1":
            raise TransportError(
                f"auth failed with {canary}", error_code="AUTH_FAILED", retriable=False
            )
        if t.task_id == "t-2":
            raise RuntimeError(f"boom {quote(canary)}")
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary=f"logged in as admin/{canary}",
            stdout_tail=f"Authorization: Basic {b64}\nexport DB_PASSWORD=hunter2\n",
            stderr_tail=f"warning: {canary} is weak",
            data={"env": {"db_password": "hunter2", "motd": f"password={canary}"}, "n": 3},
        )

    await publish(queue, [task(i) for i in range(3)])
    worker = Worker(LINUX, queue, bus, StoreHostResolver(store), {"sim": FnRunner(leaky)})
    await asyncio.wait_for(worker.run(until_idle=True), 5)
    got = await results(bus, 3)
    dumped = "\n".join(r.model_dump_json() for r in got)
    for form in (canary, b64, quote(canary), "hunter2"):
        assert form not in dumped
    by_id = {r.task_id: r for r in got}
    assert by_id["t-1"].error_code == "AUTH_FAILED" and "[REDACTED]" in by_id["t-1"].summary
    assert by_id["t-0"].data["n"] == 3 and by_id["t-0"].data["env"]["db_password"] == "[REDACTED]"
