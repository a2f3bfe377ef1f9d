"""The engine end to end on simulated hosts: retries, failure counting and locks, and every
mission status (completed with and without the goal, failed, stalled, awaiting approval is in
test_policy, stopped)."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from reaper.agents.base import ActionOutcome
from reaper.agents.transports.sim import SimRunner
from reaper.engine.core import MissionEngine
from reaper.infra.sqlite import SqliteBackend
from reaper.models import (
    EventKind,
    HostConnection,
    MissionState,
    MissionStatus,
    PlannedTask,
    ResultEvent,
    ResultStatus,
    Stage,
    Task,
    TaskStatus,
)
from reaper.overseer import Overseer
from reaper.planners.base import Plan
from reaper.policy import PRESETS
from reaper.runtime import LocalWorkers
from tests.missions import (
    WAIT_S,
    HarnessFactory,
    Recorder,
    RepeatPlanner,
    ScriptedPlanner,
    make_lab,
    of_kind,
    open_memory,
    result_keys,
    sim_host,
)

OSES = ("linux", "windows", "macos")


def _discover_only(state: MissionState) -> list[PlannedTask]:
    return [PlannedTask(host_id=h, action=f"{s.os}.discover") for h, s in state.hosts.items()]


async def test_mission_completes_with_goal_reached(harness: HarnessFactory):
    h = await harness()
    lab = make_lab(sim_host("lin", "linux"), sim_host("win", "windows"), sim_host("mac", "macos"))
    final = await h.run(lab)
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    assert "reached on all 3 hosts" in final.status_reason
    for host in final.hosts.values():
        assert host.stage is Stage.BASELINED and host.failure_count == 0 and host.facts
        assert host.current_action is None
    assert not final.open_task_ids
    events = await h.events()
    assert set(result_keys(events).values()) == {1}
    assert h.recorder.statuses() == ["completed"]
    # The ledger names why each task was planned.
    assert all(e.payload["reason"] for e in of_kind(events, EventKind.TASK_PLANNED))


async def test_flaky_host_is_retried_and_succeeds_on_attempt_three(harness: HarnessFactory):
    h = await harness()
    flaky = [{"kind": "flaky", "action": "discover", "times": 2}]
    final = await h.run(make_lab(sim_host("lin", "linux", faults=flaky)))
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    discover = next(r for r in final.tasks.values() if r.task.action == "linux.discover")
    assert discover.status is TaskStatus.SUCCEEDED and discover.task.attempt == 3
    host = final.hosts["lin"]
    assert host.failure_count == 0 and not host.locked
    events = await h.events()
    retries = of_kind(events, EventKind.TASK_RETRY)
    assert [e.payload["attempt"] for e in retries] == [2, 3]
    assert all(e.payload["error_code"] == "CONNECTION_RESET" for e in retries)
    assert result_keys(events)[(discover.task.task_id, 3)] == 1


async def test_retriable_failure_counts_once_when_retries_run_out(harness: HarnessFactory):
    planner = ScriptedPlanner(
        [PlannedTask(host_id="lin", action="linux.discover", reason="only this")]
    )
    h = await harness(planner=planner)
    flaky = [{"kind": "flaky", "action": "discover", "times": 10}]
    final = await h.run(make_lab(sim_host("lin", "linux", faults=flaky)))
    (rec,) = final.tasks.values()
    assert rec.status is TaskStatus.FAILED and rec.task.attempt == 3  # retry_attempts default
    assert final.hosts["lin"].failure_count == 1 and not final.hosts["lin"].locked
    assert len(result_keys(await h.events())) == 3
    # The planner is shown the failure once, when its retries have run out.
    assert [[r.attempt for r in batch] for batch in planner.batches] == [[3]]


async def test_host_locks_after_max_failures_and_mission_fails(harness: HarnessFactory):
    h = await harness(planner=RepeatPlanner(limit=10))
    lab = make_lab(sim_host("mac", "macos", faults=[{"kind": "auth_failure"}]))
    final = await h.run(lab)
    host = final.hosts["mac"]
    assert host.locked and host.failure_count == 3 and host.lock_reason
    assert "AUTH_FAILED" in (host.lock_reason or "")
    assert final.status is MissionStatus.FAILED
    assert final.status_reason == "all 1 hosts locked"
    events = await h.events()
    (locked,) = of_kind(events, EventKind.HOST_LOCKED)
    assert locked.payload["host_id"] == "mac"
    assert len(result_keys(events)) == 3
    # What the planner asked for after the lock was refused, not run.
    assert {e.payload["code"] for e in of_kind(events, EventKind.TASK_REFUSED)} == {"locked_host"}


async def test_mission_fails_when_every_host_is_locked(harness: HarnessFactory):
    h = await harness(planner=RepeatPlanner(limit=20))
    lab = make_lab(
        sim_host("a", "linux", faults=[{"kind": "command_failed"}]),
        sim_host("b", "windows", faults=[{"kind": "auth_failure"}]),
        settings={"max_failures": 2},
    )
    final = await h.run(lab)
    assert final.status is MissionStatus.FAILED
    assert all(host.locked for host in final.hosts.values())
    assert final.status_reason == "all 2 hosts locked"
    assert h.recorder.statuses() == ["failed"]


async def test_lock_of_one_host_leaves_the_others_running(harness: HarnessFactory):
    h = await harness(planner=RepeatPlanner(limit=10))
    lab = make_lab(
        sim_host("bad", "linux", faults=[{"kind": "command_failed"}]),
        sim_host("good", "linux"),
        settings={"max_failures": 2},
    )
    final = await h.run(lab)
    assert final.hosts["bad"].locked and not final.hosts["good"].locked
    assert final.hosts["good"].stage is Stage.DISCOVERED  # the repeat planner only discovers
    assert final.status is MissionStatus.COMPLETED and not final.goal_reached


class _Broken:
    """A runner with a bug: every action raises."""

    async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
        raise RuntimeError("agent bug")

    async def close(self) -> None:
        return None


async def test_agent_errors_do_not_count_toward_the_lock(harness: HarnessFactory):
    h = await harness(planner=RepeatPlanner(limit=6), runners={"sim": _Broken()})
    final = await h.run(make_lab(sim_host("lin", "linux"), settings={"max_failures": 2}))
    host = final.hosts["lin"]
    assert host.failure_count == 0 and not host.locked
    results = [r for e in await h.events() if (r := e.result()) is not None]
    assert len(results) == 6 and {r.error_code for r in results} == {"AGENT_ERROR"}
    assert final.status is MissionStatus.COMPLETED and not final.goal_reached


async def test_completed_without_goal_when_one_host_fails_auth(harness: HarnessFactory):
    h = await harness()
    lab = make_lab(
        sim_host("lin", "linux"), sim_host("mac", "macos", faults=[{"kind": "auth_failure"}])
    )
    final = await h.run(lab)
    assert final.status is MissionStatus.COMPLETED and not final.goal_reached
    assert "1/2" in final.status_reason
    mac = final.hosts["mac"]
    # The rule planner gives up on an auth failure instead of locking the host.
    assert mac.stage is Stage.NEW and mac.failure_count == 1 and not mac.locked
    assert mac.last_error is not None and "AUTH_FAILED" in mac.last_error
    assert final.hosts["lin"].stage is Stage.BASELINED


async def test_prerequisite_is_prepared_then_baseline_succeeds(harness: HarnessFactory):
    h = await harness()
    lab = make_lab(sim_host("lin", "linux", faults=[{"kind": "needs_prepare"}]))
    final = await h.run(lab)
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    actions = [r.task.action for r in sorted(final.tasks.values(), key=lambda r: r.step)]
    assert actions == ["linux.discover", "linux.baseline", "linux.prepare", "linux.baseline"]


async def test_stalled_without_a_worker_then_running_when_results_flow(harness: HarnessFactory):
    h = await harness(agent_types=["reaper-linux"])
    lab = make_lab(
        sim_host("lin", "linux"), sim_host("win", "windows"), settings={"stall_after_s": 0.2}
    )
    await h.create(lab)
    run = h.start("m1")
    stalled = await h.recorder.wait_status(MissionStatus.STALLED)
    assert "no result" in stalled.status_reason
    assert "m1:1:1" in stalled.status_reason  # names the task it waits for
    assert stalled.hosts["lin"].stage is Stage.BASELINED
    h.add_workers(["reaper-windows"])
    final = await asyncio.wait_for(run, WAIT_S)
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    assert h.recorder.statuses() == ["stalled", "running", "completed"]


class _Gate:
    """A runner that holds one host's tasks until released; others run as simulated."""

    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self.release = asyncio.Event()
        self.sim = SimRunner()

    def completes_inline(self, task: Task, conn: HostConnection) -> bool:
        return False

    async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
        if host_id == self.host_id:
            await self.release.wait()
        return await self.sim.run(task, host_id, conn)

    async def close(self) -> None:
        return None


async def test_stalled_on_a_task_that_does_not_answer(harness: HarnessFactory):
    gate = _Gate("stuck")
    h = await harness(runners={"sim": gate})
    lab = make_lab(
        sim_host("ok", "linux"), sim_host("stuck", "linux"), settings={"stall_after_s": 0.2}
    )
    await h.create(lab)
    run = h.start("m1")
    stalled = await h.recorder.wait_status(MissionStatus.STALLED)
    assert "task(s) pending" in stalled.status_reason and "m1:1:1" in stalled.status_reason
    assert stalled.hosts["stuck"].current_action == "linux.discover"
    gate.release.set()
    final = await asyncio.wait_for(run, WAIT_S)
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    stored = await h.overseer.load("m1")
    assert stored.status is MissionStatus.COMPLETED


async def test_stopped_when_the_planner_halts_and_resume_plans_again(harness: HarnessFactory):
    h = await harness(planner=ScriptedPlanner(Plan(halt=True, note="budget exhausted")))
    await h.create(make_lab(sim_host("lin", "linux")))
    stopped = await asyncio.wait_for(h.start("m1"), WAIT_S)
    assert stopped.status is MissionStatus.STOPPED
    assert "budget exhausted" in stopped.status_reason
    assert (await h.overseer.load("m1")).status is MissionStatus.STOPPED
    assert h.recorder.statuses() == ["stopped"]
    # Resuming a stopped mission (e.g. with a new budget) plans again and finishes it.
    again = Overseer(h.backend)
    final = await asyncio.wait_for(again.run_mission("m1"), WAIT_S)
    assert final.status is MissionStatus.COMPLETED and final.goal_reached


async def test_halt_with_tasks_in_flight_stops_after_they_finish(harness: HarnessFactory):
    plan = Plan(
        tasks=[PlannedTask(host_id="lin", action="linux.discover")], halt=True, note="budget"
    )
    h = await harness(planner=ScriptedPlanner(plan))
    await h.create(make_lab(sim_host("lin", "linux")))
    state = await asyncio.wait_for(h.start("m1"), WAIT_S)
    assert state.status is MissionStatus.STOPPED, state.status_reason
    assert "budget" in state.status_reason
    assert state.hosts["lin"].stage is Stage.DISCOVERED  # the task in flight did finish
    assert not state.open_task_ids


async def test_results_waiting_are_one_batch_and_one_planner_call():
    backend = open_memory()
    planner = ScriptedPlanner(Plan())
    state = make_lab(
        sim_host("a", "linux"), sim_host("b", "linux"), sim_host("c", "linux")
    ).to_state()
    planner.initial = Plan(tasks=_discover_only(state))
    recorder = Recorder()

    def engine() -> MissionEngine:
        return MissionEngine(
            "m1",
            store=backend.store,
            queue=backend.queue,
            bus=backend.bus,
            planner=planner,
            policy=PRESETS["standard"],
            listener=recorder,
        )

    await engine().start(state)
    first = asyncio.create_task(engine().run())
    await recorder.wait_for(lambda: bool(recorder.kinds(EventKind.TASK_PLANNED)))
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    tasks = await backend.queue.take("reaper-linux", max_items=10, timeout=0)
    assert len(tasks) == 3
    for d in tasks:
        t = d.task
        await backend.bus.publish(
            ResultEvent(
                task_id=t.task_id,
                mission_id=t.mission_id,
                host_id=t.host_id,
                agent_type=t.agent_type,
                action=t.action,
                status=ResultStatus.SUCCESS,
            )
        )
    await backend.bus.publish(
        ResultEvent(  # and a duplicate of one of them
            task_id=tasks[0].task.task_id,
            mission_id="m1",
            host_id=tasks[0].task.host_id,
            agent_type="reaper-linux",
            action="linux.discover",
            status=ResultStatus.SUCCESS,
        )
    )
    second = asyncio.create_task(engine().run())
    await asyncio.wait_for(second, WAIT_S)
    assert [len(b) for b in planner.batches] == [3]
    assert sorted(result_keys(await backend.store.events("m1")).values()) == [1, 1, 1]


async def test_several_missions_at_once(harness: HarnessFactory):
    h = await harness()
    labs: list[Any] = [
        make_lab(sim_host("x", "linux"), sim_host("y", "windows"), mission_id=f"m{i}")
        for i in range(3)
    ]
    for lab in labs:
        await h.create(lab)
    finals: Sequence[MissionState] = await asyncio.wait_for(
        asyncio.gather(*(h.start(f"m{i}") for i in range(3))), WAIT_S
    )
    assert [f.status for f in finals] == [MissionStatus.COMPLETED] * 3
    missions = await h.overseer.list_missions()
    assert sorted(m.mission_id for m in missions) == ["m0", "m1", "m2"]
    report = await h.overseer.get_mission_status("m2")
    assert report.goal_hosts == report.total_hosts == 2 and report.goal_reached


_STORE_WRITE = re.compile(
    r"^\s*(INSERT INTO|UPDATE|DELETE FROM)\s+(missions|hosts|tasks|events|outbox)\b", re.I
)


async def _store_writes_per_result(path: Path, hosts: int) -> tuple[float, float]:
    """(host-row writes, all store-row writes) per applied result, for a whole mission."""
    sqlite = SqliteBackend(path)
    conn = getattr(getattr(sqlite, "db", None), "conn", None)
    if not isinstance(conn, sqlite3.Connection):
        pytest.skip("the sqlite backend does not expose its connection")
    writes: Counter[str] = Counter()

    def trace(sql: str) -> None:
        if m := _STORE_WRITE.match(sql):
            writes[m.group(2).lower()] += 1

    backend = sqlite.as_backend()
    lab = make_lab(*(sim_host(f"h{i}", OSES[i % 3]) for i in range(hosts)))
    overseer = Overseer(backend)
    workers = LocalWorkers(backend)
    workers.start()
    try:
        await overseer.create_mission(lab)
        conn.set_trace_callback(trace)  # after creation: count only the mission's run
        final = await asyncio.wait_for(overseer.run_mission("m1"), WAIT_S)
    finally:
        conn.set_trace_callback(None)
        await workers.stop()
    assert final.goal_reached
    results = sum(result_keys(await backend.store.events("m1")).values())
    await backend.close()
    assert results == 2 * hosts
    return writes["hosts"] / results, sum(writes.values()) / results


async def test_sqlite_store_writes_per_result_do_not_grow_with_hosts(tmp_path: Path):
    small_hosts, small_all = await _store_writes_per_result(tmp_path / "small.db", 10)
    big_hosts, big_all = await _store_writes_per_result(tmp_path / "big.db", 300)
    assert small_hosts > 0, "the trace saw no host writes: is the callback per statement?"
    # Rows, not the whole mission: a handful of writes per result, whatever the lab's size.
    assert big_hosts <= small_hosts * 1.5 and big_hosts <= 3
    assert big_all <= small_all * 1.5 and big_all <= 12


async def test_a_long_planner_step_keeps_the_mission_lease() -> None:
    """The lease is renewed in the background: a planner step longer than the lease (a slow
    LLM call) does not let another engine take the mission."""

    from reaper.clock import ManualClock
    from reaper.engine.core import EngineSettings, MissionEngine
    from reaper.infra.memory import memory_backend
    from reaper.planners.base import Plan
    from reaper.policy import PRESETS

    clock = ManualClock()
    store, queue, bus = memory_backend(clock)
    entered, gate = asyncio.Event(), asyncio.Event()

    class SlowPlanner:
        name = "slow"

        async def initial_tasks(self, state: Any) -> Plan:
            entered.set()
            await gate.wait()
            return Plan()

        async def next_tasks(self, state: Any, results: Any) -> Plan:
            return Plan()

    lab = make_lab(sim_host("h1"))
    engine = MissionEngine(
        "m1",
        store=store,
        queue=queue,
        bus=bus,
        planner=SlowPlanner(),
        policy=PRESETS["standard"],
        clock=clock,
        settings=EngineSettings(lease_ttl_s=3.0),
    )
    await engine.start(lab.to_state())
    run = asyncio.create_task(engine.run())
    await asyncio.wait_for(entered.wait(), 5)
    for _ in range(6):  # 6 s of mission time: twice the lease
        clock.advance(1.0)
        for _ in range(5):
            await asyncio.sleep(0)  # let the keeper task run (a yield, not a wait)
    assert not await store.claim("m1", "another-engine", 3.0)
    gate.set()
    final = await asyncio.wait_for(run, 5)
    assert final.mission_id == "m1"
