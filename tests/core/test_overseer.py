"""The Overseer runs several missions at once on one backend and one set of workers."""

from __future__ import annotations

import asyncio
import json

from llm.testing import ScriptedClient
from reaper.infra.base import Backend
from reaper.infra.memory import memory_backend
from reaper.models import MissionStatus
from reaper.overseer import Overseer
from reaper.planners.llm import LLMPlanner
from reaper.runtime import LocalWorkers
from tests.missions import make_lab, sim_host
from tests.planners.support import plan_answer

WAIT_S = 20.0


async def test_several_missions_at_once_each_with_its_status() -> None:
    store, queue, bus = memory_backend()
    backend = Backend(store, queue, bus)
    overseer = Overseer(backend)
    workers = LocalWorkers(backend, concurrency=8)
    workers.start()
    try:
        good = make_lab(sim_host("a1", "linux"), sim_host("a2", "windows"), mission_id="alpha")
        bad = make_lab(
            sim_host("b1", "macos", faults=[{"kind": "auth_failure"}]),
            sim_host("b2", "linux"),
            mission_id="beta",
        )
        for lab in (good, bad):
            await overseer.create_mission(lab)
        runs = [overseer.start("alpha"), overseer.start("beta")]
        finals = await asyncio.wait_for(asyncio.gather(*runs), WAIT_S)
    finally:
        await workers.stop()
    by_id = {s.mission_id: s for s in finals}
    assert by_id["alpha"].status is MissionStatus.COMPLETED and by_id["alpha"].goal_reached
    assert by_id["beta"].status is MissionStatus.COMPLETED and not by_id["beta"].goal_reached
    alpha = await overseer.get_mission_status("alpha")
    beta = await overseer.get_mission_status("beta")
    assert (alpha.goal_hosts, alpha.total_hosts) == (2, 2)
    assert (beta.goal_hosts, beta.total_hosts) == (1, 2)
    assert "AUTH_FAILED" in (beta.hosts["b1"].last_error or "")
    # Each mission's tasks stayed its own.
    events = await store.events("alpha")
    assert all(e.mission_id == "alpha" for e in events)
    assert {m.mission_id for m in await overseer.list_missions()} == {"alpha", "beta"}


async def test_a_mission_closes_its_planners_llm_client() -> None:
    # `reaper run --planner llm`: the client's HTTP pool (a local llama-server) ends with it.
    clients: list[ScriptedClient] = []

    def planner(_: object) -> LLMPlanner:
        clients.append(ScriptedClient(lambda _: json.dumps(plan_answer(done=True))))
        return LLMPlanner(clients[-1])

    backend = Backend(*memory_backend())
    overseer = Overseer(backend, planner_factory=planner)
    await overseer.create_mission(make_lab(sim_host("a1", "linux"), mission_id="alpha"))
    workers = LocalWorkers(backend, concurrency=2)
    workers.start()
    try:
        await asyncio.wait_for(overseer.start("alpha"), WAIT_S)
    finally:
        await workers.stop()
    assert clients and [c.closed for c in clients] == [1] * len(clients)
