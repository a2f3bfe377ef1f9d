"""Builders for planner tests: demo-like missions, scripted model answers, a full-engine run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm.types import LLMRequest, LLMResponse, Usage
from reaper.agents.hosts import StoreHostResolver
from reaper.agents.transports.sim import SimRunner
from reaper.agents.worker import Worker
from reaper.engine.core import EngineSettings, MissionEngine
from reaper.engine.state import RetrySettings
from reaper.infra.memory import memory_backend
from reaper.models import (
    AGENT_TYPES,
    EventRecord,
    HostConnection,
    HostState,
    MissionState,
    MissionStatus,
    SimFault,
    SimSettings,
    Stage,
)
from reaper.planners.base import MissionPlanner
from reaper.policy import PRESETS, Policy

DEMO_HOSTS = (
    ("win-01", "windows"),
    ("win-02", "windows"),
    ("lnx-01", "linux"),
    ("mac-01", "macos"),
)


def sim_host(host_id: str, os: str, **sim: Any) -> HostState:
    return HostState(
        host_id=host_id,
        os=os,  # type: ignore[arg-type]
        connection=HostConnection(transport="sim", sim=SimSettings(**sim)),
    )


def demo_state(mission_id: str = "demo", *, goal: Stage = Stage.BASELINED) -> MissionState:
    """The demo lab in code: win-02 drops the connection on its first attempt at anything."""
    hosts = {}
    for host_id, os in DEMO_HOSTS:
        faults = [SimFault(kind="flaky", times=1)] if host_id == "win-02" else []
        hosts[host_id] = sim_host(host_id, os, faults=faults)
    return MissionState(
        mission_id=mission_id, lab_type="demo", goal=goal, hosts=hosts, planner="llm"
    )


def plan_answer(
    *tasks: tuple[str, str] | tuple[str, str, dict[str, Any]], done: bool = False, note: str = "ok"
) -> dict[str, Any]:
    """A valid plan body: (host_id, action[, params]) per task."""
    return {
        "tasks": [
            {
                "host_id": t[0],
                "action": t[1],
                "params_json": json.dumps(t[2] if len(t) > 2 else {}),  # type: ignore[misc]
                "reason": f"{t[1]} on {t[0]}",
            }
            for t in tasks
        ],
        "done": done,
        "note": note,
    }


def hosts_in_prompt(request: LLMRequest) -> list[dict[str, Any]]:
    """The trusted host lines of the last full planner prompt (JSON objects with host_id)."""
    text = request.messages[0].text
    section = text.split("## Hosts", 1)[1].split("## New results", 1)[0]
    return [json.loads(line) for line in section.splitlines() if line.startswith("{")]


def sensible_answer(request: LLMRequest) -> dict[str, Any]:
    """What a careful model answers: walk each idle host shown one stage further."""
    tasks = []
    for h in hosts_in_prompt(request):
        if h["locked"] or h["busy"]:
            continue
        os = h["os"]
        if h["stage"] == "new":
            tasks.append((h["host_id"], f"{os}.discover"))
        elif h["stage"] in ("discovered", "prepared"):
            tasks.append((h["host_id"], f"{os}.baseline"))
    return plan_answer(*tasks, done=not tasks, note="advance every idle host one stage")


def response(
    text: str,
    *,
    stop: str = "end",
    refusal: str | None = None,
    usage: Usage | None = None,
    model: str = "",
) -> LLMResponse:
    return LLMResponse(
        text=text,
        stop_reason=stop,
        refusal=refusal,
        usage=usage or Usage(),
        model=model,  # type: ignore[arg-type]
    )


@dataclass
class MissionRun:
    state: MissionState
    events: list[EventRecord]
    sim: SimRunner

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e.payload for e in self.events if e.kind.value == kind]


TEST_ENGINE = EngineSettings(retry=RetrySettings(backoff_s=0.0), stall_after_s=30.0)


async def run_mission(
    state: MissionState,
    planner: MissionPlanner,
    *,
    policy: Policy | None = None,
    timeout: float = 20.0,
) -> MissionRun:
    """Run a mission through the real engine, memory backend and sim workers until it
    completes, fails or stops (a halted planner leaves it STOPPED, which `run` waits past)."""
    store, queue, bus = memory_backend()
    sim = SimRunner(seed=0)
    settled = asyncio.Event()

    def listener(s: MissionState, _events: Sequence[EventRecord]) -> None:
        if (
            s.status in (MissionStatus.STOPPED, MissionStatus.AWAITING_APPROVAL)
            or s.status.terminal
        ):
            settled.set()

    engine = MissionEngine(
        state.mission_id,
        store=store,
        queue=queue,
        bus=bus,
        planner=planner,
        policy=policy or PRESETS["standard"],
        settings=TEST_ENGINE,
        listener=listener,
    )
    await engine.start(state)
    stop = asyncio.Event()
    resolver = StoreHostResolver(store)
    workers = [
        asyncio.create_task(
            Worker(agent, queue, bus, resolver, {"sim": sim}, worker_id=f"w-{agent}").run(stop=stop)
        )
        for agent in AGENT_TYPES
    ]
    runner = asyncio.create_task(engine.run())
    try:
        async with asyncio.timeout(timeout):
            waiter = asyncio.create_task(settled.wait())
            done, _ = await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if runner in done:
                runner.result()  # re-raise an engine/planner failure
    finally:
        if not runner.done():
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
    final = await store.load(state.mission_id)
    assert final is not None
    return MissionRun(state=final, events=await store.events(state.mission_id), sim=sim)
