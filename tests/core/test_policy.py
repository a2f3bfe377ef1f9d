"""Policy: every planned task is checked before it is queued; refusals are recorded events with
a code and never reach the queue; `ask` tasks wait for an operator's decision."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from reaper.engine.core import MissionEngine
from reaper.errors import ConfigError, ReaperError
from reaper.infra.base import Backend
from reaper.models import (
    AGENT_TYPES,
    EventKind,
    HostState,
    MissionState,
    MissionStatus,
    PlannedTask,
    ResourceState,
    Stage,
    TaskStatus,
)
from reaper.policy import PRESETS, Decision, Policy, PolicyRule, check, policy_from_spec
from tests.missions import (
    PYTHON,
    WAIT_S,
    HarnessFactory,
    Recorder,
    ScriptedPlanner,
    cli_env,
    make_lab,
    of_kind,
    open_memory,
    open_sqlite,
    sim_host,
)

ALLOW_ALL = Policy(name="allow-all", default=Decision.ALLOW)
NO_REBOOTS = Policy(
    name="no-reboots",
    rules=(PolicyRule(action="*.reboot", decision=Decision.DENY, reason="no reboots here"),),
    default=Decision.ALLOW,
)


def _state(*, locked: bool = False) -> MissionState:
    hosts = {
        "lin": HostState(host_id="lin", os="linux", locked=locked, lock_reason="3 failures"),
        "win": HostState(host_id="win", os="windows"),
    }
    return MissionState(mission_id="m1", lab_type="t", hosts=hosts)


async def _run_engine(
    backend: Backend, state: MissionState, proposals: list[PlannedTask], policy: Policy
) -> tuple[MissionState, Recorder]:
    """Run an engine whose planner proposes `proposals` once; no workers."""
    recorder = Recorder()
    engine = MissionEngine(
        "m1",
        store=backend.store,
        queue=backend.queue,
        bus=backend.bus,
        planner=ScriptedPlanner(proposals),
        policy=policy,
        listener=recorder,
    )
    await engine.start(state)
    run = asyncio.create_task(engine.run())
    await recorder.wait_for(lambda: bool(recorder.kinds(EventKind.PLANNER_DECISION)))
    if not run.done():
        run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    loaded = await backend.store.load("m1")
    assert loaded is not None
    return loaded, recorder


REFUSALS: dict[str, tuple[PlannedTask, Policy, bool]] = {
    "unknown_host": (PlannedTask(host_id="ghost", action="linux.discover"), ALLOW_ALL, False),
    "locked_host": (PlannedTask(host_id="lin", action="linux.discover"), ALLOW_ALL, True),
    "wrong_os": (PlannedTask(host_id="lin", action="windows.discover"), ALLOW_ALL, False),
    "unknown_action": (PlannedTask(host_id="lin", action="linux.frobnicate"), ALLOW_ALL, False),
    "invalid_params": (
        PlannedTask(host_id="lin", action="linux.reboot", params={"delay_s": -5}),
        ALLOW_ALL,
        False,
    ),
    "risk_denied": (PlannedTask(host_id="lin", action="linux.reboot"), NO_REBOOTS, False),
}


@pytest.mark.parametrize("code", sorted(REFUSALS))
async def test_refusal_is_recorded_and_never_queued(code: str):
    proposal, policy, locked = REFUSALS[code]
    backend = open_memory()
    state, recorder = await _run_engine(backend, _state(locked=locked), [proposal], policy)
    (refused,) = of_kind(await backend.store.events("m1"), EventKind.TASK_REFUSED)
    assert refused.payload["code"] == code
    assert refused.payload["reason"]
    assert refused.payload["proposal"]["action"] == proposal.action
    assert not of_kind(recorder.events, EventKind.TASK_PLANNED)
    assert state.tasks == {}
    for agent_type in AGENT_TYPES:
        assert await backend.queue.depth(agent_type) == 0
    # Nothing to do after the refusal: the mission ends without reaching its goal.
    assert state.status is MissionStatus.COMPLETED and not state.goal_reached


async def test_risk_denied_names_the_rule_reason():
    backend = open_memory()
    await _run_engine(backend, _state(), [REFUSALS["risk_denied"][0]], NO_REBOOTS)
    (refused,) = of_kind(await backend.store.events("m1"), EventKind.TASK_REFUSED)
    assert "no reboots here" in refused.payload["reason"]


async def test_second_task_for_a_busy_host_is_refused():
    backend = open_memory()
    proposals = [
        PlannedTask(host_id="win", action="windows.discover"),
        PlannedTask(host_id="win", action="windows.baseline"),
    ]
    state, _ = await _run_engine(backend, _state(), proposals, ALLOW_ALL)
    (refused,) = of_kind(await backend.store.events("m1"), EventKind.TASK_REFUSED)
    assert refused.payload["code"] == "host_busy"
    assert refused.payload["proposal"]["action"] == "windows.baseline"
    assert [r.task.action for r in state.tasks.values()] == ["windows.discover"]
    assert await backend.queue.depth("reaper-windows") == 1


async def test_tasks_over_the_per_step_cap_are_refused():
    backend = open_memory()
    policy = ALLOW_ALL.model_copy(update={"max_tasks_per_step": 1})
    proposals = [
        PlannedTask(host_id="lin", action="linux.discover"),
        PlannedTask(host_id="win", action="windows.discover"),
    ]
    state, _ = await _run_engine(backend, _state(), proposals, policy)
    (refused,) = of_kind(await backend.store.events("m1"), EventKind.TASK_REFUSED)
    assert refused.payload["code"] == "too_many_tasks"
    assert refused.payload["proposal"]["host_id"] == "win"
    assert len(state.tasks) == 1
    assert await backend.queue.depth("reaper-windows") == 0
    assert await backend.queue.depth("reaper-linux") == 1


def test_check_runs_structural_checks_before_the_rules():
    state = _state(locked=True)
    deny_all = Policy(default=Decision.DENY)
    # A locked host is refused as locked even when the policy would deny the action anyway.
    verdict = check(PlannedTask(host_id="lin", action="linux.discover"), state, deny_all)
    assert verdict.code == "locked_host"
    verdict = check(PlannedTask(host_id="win", action="windows.discover"), state, deny_all)
    assert verdict.decision is Decision.DENY and verdict.code == "risk_denied"
    verdict = check(PlannedTask(host_id="win", action="windows.reboot"), state, PRESETS["standard"])
    assert verdict.decision is Decision.ASK
    verdict = check(
        PlannedTask(host_id="win", action="windows.discover"), state, ALLOW_ALL, {"win"}
    )
    assert verdict.code == "host_busy"


def test_the_restart_an_applied_change_needs_is_not_asked_again():
    """A promotion or feature install that reported reboot_required completes with its
    restart: `ask` becomes allow for that host alone; a policy that denies reboots still does."""
    state = _state()
    win = state.hosts["win"]
    reboot = PlannedTask(host_id="win", action="windows.reboot")
    assert check(reboot, state, PRESETS["standard"]).decision is Decision.ASK
    win.resources["ad_domain/lab.local"] = ResourceState(seen=True, reboot_required=True)
    verdict = check(reboot, state, PRESETS["standard"])
    assert verdict.decision is Decision.ALLOW and "reported it needs" in verdict.reason
    assert check(reboot, state, NO_REBOOTS).decision is Decision.DENY
    state.hosts["lin"].resources["x"] = ResourceState(seen=True)
    lin_reboot = PlannedTask(host_id="lin", action="linux.reboot")
    assert check(lin_reboot, state, PRESETS["standard"]).decision is Decision.ASK


def test_policy_specs():
    assert policy_from_spec(None).name == "standard"
    assert policy_from_spec("cautious") is PRESETS["cautious"]
    custom = policy_from_spec({"base": "standard", "rules": [{"os": "macos", "decision": "deny"}]})
    assert custom.rules[0].os == "macos" and len(custom.rules) == 1 + len(PRESETS["standard"].rules)
    with pytest.raises(ConfigError, match="unknown policy"):
        policy_from_spec("yolo")
    with pytest.raises(ConfigError, match="invalid policy"):
        policy_from_spec({"rules": [{"decision": "maybe"}]})


# -- approvals --------------------------------------------------------------------------


def _cautious_lab(**fields: Any) -> Any:
    return make_lab(sim_host("lin-1", "linux"), policy="cautious", **fields)


async def _awaiting(h: Any) -> tuple[asyncio.Task[MissionState], str]:
    await h.create(_cautious_lab())
    run = h.start("m1")
    state = await h.recorder.wait_status(MissionStatus.AWAITING_APPROVAL)
    (task_id,) = state.awaiting_approval
    assert state.tasks[task_id].task.action == "linux.baseline"
    assert state.status_reason
    return run, task_id


async def test_ask_waits_for_approval_then_runs(harness: HarnessFactory):
    h = await harness()
    run, task_id = await _awaiting(h)
    (requested,) = h.recorder.kinds(EventKind.APPROVAL_REQUESTED)
    assert requested.payload["task_id"] == task_id
    for agent_type in AGENT_TYPES:  # nothing runs before the approval
        assert await h.backend.queue.depth(agent_type) == 0
    await h.overseer.decide("m1", task_id, approved=True, by="tester")
    final = await asyncio.wait_for(run, WAIT_S)
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
    assert final.tasks[task_id].status is TaskStatus.SUCCEEDED
    (granted,) = h.recorder.kinds(EventKind.APPROVAL_GRANTED)
    assert granted.payload["by"] == "tester"
    assert h.recorder.statuses() == ["awaiting_approval", "running", "completed"]


async def test_rejected_task_never_runs(harness: HarnessFactory):
    h = await harness()
    run, task_id = await _awaiting(h)
    await h.overseer.decide("m1", task_id, approved=False, note="not today")
    final = await asyncio.wait_for(run, WAIT_S)
    assert final.tasks[task_id].status is TaskStatus.REJECTED
    assert final.hosts["lin-1"].stage is Stage.DISCOVERED
    assert final.status is MissionStatus.COMPLETED and not final.goal_reached
    (rejected,) = h.recorder.kinds(EventKind.APPROVAL_REJECTED)
    assert rejected.payload["note"] == "not today"
    assert not [
        e
        for e in h.recorder.kinds(EventKind.TASK_RESULT)
        if (r := e.result()) is not None and r.task_id == task_id
    ]


async def test_decide_refuses_unknown_and_settled_tasks(harness: HarnessFactory):
    h = await harness()
    run, task_id = await _awaiting(h)
    with pytest.raises(ReaperError, match="no task"):
        await h.overseer.decide("m1", "m1:9:9", approved=True)
    discover = next(t for t, r in (await h.overseer.load("m1")).tasks.items() if t != task_id)
    with pytest.raises(ReaperError, match="not awaiting approval"):
        await h.overseer.decide("m1", discover, approved=True)
    run.cancel()


async def _cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "reaper.cli",
        *args,
        cwd=tmp_path,
        env=cli_env(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("verb", ["approve", "reject"])
async def test_cli_decision_from_another_shell(harness: HarnessFactory, tmp_path: Path, verb: str):
    db = tmp_path / "reaper.db"
    h = await harness(backend=open_sqlite(db))
    run, task_id = await _awaiting(h)
    rc, out, err = await _cli(tmp_path, verb, "m1", task_id, "--db", str(db), "--json")
    assert rc == 0, err
    assert json.loads(out) == {
        "mission_id": "m1",
        "task_id": task_id,
        "decision": f"{verb}d" if verb == "approve" else "rejected",
    }
    final = await asyncio.wait_for(run, WAIT_S)
    assert final.status is MissionStatus.COMPLETED
    if verb == "approve":
        assert final.goal_reached and final.tasks[task_id].status is TaskStatus.SUCCEEDED
    else:
        assert not final.goal_reached and final.tasks[task_id].status is TaskStatus.REJECTED


async def test_cli_approve_unknown_task_is_one_line_error(harness: HarnessFactory, tmp_path: Path):
    db = tmp_path / "reaper.db"
    h = await harness(backend=open_sqlite(db))
    run, _ = await _awaiting(h)
    rc, _out, err = await _cli(tmp_path, "approve", "m1", "m1:42:0", "--db", str(db))
    assert rc != 0
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    run.cancel()


def test_changes_to_the_local_machine_need_allow_changes() -> None:
    """`transport: local` is the machine Reaper runs on: read-only actions run, changes are
    refused unless the host says `allow_changes: true`, whatever the policy allows."""
    from reaper.models import HostConnection, HostState, MissionState, PlannedTask
    from reaper.policy import PRESETS, Decision, check

    def state(allow: bool) -> MissionState:
        conn = HostConnection(transport="local", allow_changes=allow)
        host = HostState(host_id="me", os="linux", connection=conn)
        return MissionState(mission_id="m", lab_type="t", hosts={"me": host})

    policy = PRESETS["standard"]
    discover = PlannedTask(host_id="me", action="linux.discover")
    baseline = PlannedTask(host_id="me", action="linux.baseline")
    assert check(discover, state(False), policy).decision is Decision.ALLOW
    refused = check(baseline, state(False), policy)
    assert refused.decision is Decision.DENY and refused.code == "local_change"
    assert "allow_changes" in refused.reason
    assert check(baseline, state(True), policy).decision is Decision.ALLOW
