"""Operator requests reaching the engine (`MissionControl`): a raised budget lets an LLM planner
that stopped for its budget plan again, counting what it spent before; a cancel folds into
abandoned tasks; Ctrl-C leaves `interrupted`, not `running`."""

from __future__ import annotations

from datetime import UTC, datetime

from llm.testing import ScriptedClient
from llm.types import LLMRequest
from reaper.engine.state import RetrySettings, Transition, apply, control_status, fold
from reaper.models import EventKind, MissionControl, MissionState, MissionStatus
from reaper.overseer import Overseer
from reaper.planners.base import MissionPlanner
from reaper.planners.budget import Budget
from reaper.planners.llm import LLMPlanner
from reaper.runtime import LocalWorkers
from tests.missions import WAIT_S, Recorder, make_lab, open_memory, sim_host
from tests.planners.support import plan_answer

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _answer(request: LLMRequest) -> dict[str, object]:
    # First call: discover the host; every later one: nothing more to do.
    if "step 1" in request.messages[-1].text:
        return plan_answer(("a", "linux.discover"))
    return plan_answer(done=True)


async def test_a_raised_budget_lets_a_stopped_llm_mission_plan_again():
    backend = open_memory()
    client = ScriptedClient(_answer)

    def planner(state: MissionState) -> MissionPlanner:
        limits = state.settings.get("budget") or {}
        return LLMPlanner(client, budget=Budget(max_calls=limits.get("calls")))

    recorder = Recorder()
    overseer = Overseer(backend, planner_factory=planner, listener=recorder)
    workers = LocalWorkers(backend)
    workers.start()
    try:
        lab = make_lab(sim_host("a", "linux"), planner="llm", budget={"calls": 1})
        await overseer.create_mission(lab)
        first = await overseer.run_mission("m1")
        assert first.status is MissionStatus.STOPPED
        assert "budget exhausted" in first.status_reason and len(client.requests) == 1

        outcome = await overseer.control(
            MissionControl(mission_id="m1", command="budget", budget={"calls": 5}, by="ops")
        )
        assert outcome == "applied"  # no engine runs it: folded and committed here
        state = await overseer.load("m1")
        assert state.settings["budget"] == {"calls": 5}
        raised = [e for e in await backend.store.events("m1") if e.kind is EventKind.BUDGET_RAISED]
        assert raised[-1].payload["before"] == {"calls": 1}
        assert raised[-1].payload["after"] == {"calls": 5} and raised[-1].payload["by"] == "ops"

        final = await overseer.run_mission("m1")
        assert final.status is MissionStatus.COMPLETED
        assert len(client.requests) == 2  # planned again, within the new limit
    finally:
        await workers.stop()
        await backend.close()


def _state() -> MissionState:
    return make_lab(sim_host("a", "linux"), sim_host("b", "linux")).to_state()


def test_fold_cancel_abandons_open_tasks_with_a_reason():
    from reaper.engine.admission import plan
    from reaper.models import PlannedTask
    from reaper.policy import PRESETS

    state = _state()
    planned = plan(
        state,
        [PlannedTask(host_id="a", action="linux.discover")],
        step=1,
        policy=PRESETS["standard"],
        now=NOW,
        planner="rule",
    )
    apply(state, planned)
    cancel = MissionControl(mission_id="m1", command="cancel", by="ops", note="wrong lab")
    tr = fold(state, [cancel], now=NOW, retry=RetrySettings())
    (abandoned,) = [e for e in tr.events if e.kind is EventKind.TASK_ABANDONED]
    assert abandoned.payload["reason"] == "CANCELLED: mission cancelled by ops (wrong lab)"
    status = control_status(tr)
    assert status is not None and status[0] is MissionStatus.CANCELLED
    assert status[1] == "cancelled by ops: wrong lab; 1 open task(s) abandoned"
    apply(state, tr)
    assert not state.open_task_ids

    # On a finished mission a request changes nothing (but an unlock, still useful).
    state.status = MissionStatus.CANCELLED
    again = fold(state, [cancel], now=NOW, retry=RetrySettings())
    assert again.ignored == 1 and not again.changed
    assert control_status(Transition()) is None


def test_fold_budget_clears_a_budget_halt_only():
    state = _state()
    state.settings = {"budget": {"calls": 1}, "planning_halted": "LLM budget exhausted: calls 1/1"}
    raise_ = MissionControl(mission_id="m1", command="budget", budget={"usd": 2.5})
    tr = fold(state, [raise_], now=NOW, retry=RetrySettings())
    apply(state, tr)
    assert state.settings == {"budget": {"calls": 1, "usd": 2.5}}
    state.settings["planning_halted"] = "the planner said so"
    apply(state, fold(state, [raise_], now=NOW, retry=RetrySettings()))
    assert state.settings["planning_halted"] == "the planner said so"


async def test_stop_all_interrupted_marks_the_mission_interrupted():
    backend = open_memory()
    recorder = Recorder()
    overseer = Overseer(backend, listener=recorder)
    await overseer.create_mission(make_lab(sim_host("a", "linux")))
    overseer.start("m1")  # no workers: it waits on its first tasks
    await recorder.wait_for(lambda: recorder.state is not None and recorder.state.step >= 1, WAIT_S)
    await overseer.stop_all(interrupted=True)
    state = await overseer.load("m1")
    assert state.status is MissionStatus.INTERRUPTED
    assert "reaper resume m1" in state.status_reason
    assert await backend.store.lease("m1") is None
    # Resuming runs it again: running, then on to the end with workers.
    workers = LocalWorkers(backend)
    workers.start()
    try:
        final = await overseer.run_mission("m1")
    finally:
        await workers.stop()
    assert final.status is MissionStatus.COMPLETED
    statuses = [
        e.payload["to"]
        for e in await backend.store.events("m1")
        if e.kind is EventKind.STATUS_CHANGED
    ]
    assert statuses[:2] == ["interrupted", "running"]
    await backend.close()
