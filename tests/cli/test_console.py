"""The dashboard and recap render what an operator needs: render to a string and read it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from rich.console import Console

from reaper.agents.transports.sim_facts import facts_for
from reaper.cli.console import render_hosts, render_mission, render_recap
from reaper.engine.admission import plan
from reaper.engine.state import RetrySettings, apply, fold
from reaper.models import (
    EventKind,
    EventRecord,
    HostState,
    MissionState,
    MissionStatus,
    PlannedTask,
    ResultEvent,
    ResultStatus,
    Stage,
    Task,
)
from reaper.policy import PRESETS

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WIN = facts_for("windows", "win-01", seed=1)
LNX = facts_for("linux", "lnx-02", seed=1)
MAC = facts_for("macos", "mac-01", seed=1)


def text(renderable: Any, width: int = 120) -> str:
    console = Console(file=StringIO(), width=width, color_system=None, legacy_windows=False)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def _result(task: Task, ok: bool, data: dict[str, Any] | None = None, **kw: Any) -> ResultEvent:
    return ResultEvent(
        task_id=task.task_id,
        mission_id=task.mission_id,
        host_id=task.host_id,
        agent_type=task.agent_type,
        action=task.action,
        attempt=task.attempt,
        status=ResultStatus.SUCCESS if ok else ResultStatus.ERROR,
        data=data or {},
        summary=kw.pop("summary", "done" if ok else "failed"),
        ts=NOW,
        **kw,
    )


@pytest.fixture
def mission() -> tuple[MissionState, list[EventRecord]]:
    """A mission mid-flight, built with the pure fold: one host baselined, one locked, one
    waiting for approval, one busy; with the event log that got it there."""
    hosts = {
        "win-01": HostState(host_id="win-01", os="windows"),
        "lnx-01": HostState(host_id="lnx-01", os="linux"),
        "lnx-02": HostState(host_id="lnx-02", os="linux"),
        "mac-01": HostState(host_id="mac-01", os="macos"),
    }
    state = MissionState(mission_id="m1", lab_type="console-lab", hosts=hosts, created_at=NOW)
    events: list[EventRecord] = []
    retry = RetrySettings(max_attempts=1)
    clock = iter(NOW + timedelta(seconds=i) for i in range(1000))

    def step(*proposals: PlannedTask) -> list[Task]:
        state.step += 1
        tr = plan(
            state,
            proposals,
            step=state.step,
            policy=PRESETS["standard"],
            now=next(clock),
            planner="rule",
        )
        apply(state, tr)
        events.extend(tr.events)
        return [r.task for r in tr.tasks.values()]

    def results(*rs: ResultEvent) -> None:
        tr = fold(state, rs, now=next(clock), retry=retry)
        apply(state, tr)
        events.extend(tr.events)

    w, l1, l2, m = step(
        PlannedTask(host_id="win-01", action="windows.discover", reason="start: collect facts"),
        PlannedTask(host_id="lnx-01", action="linux.discover", reason="start: collect facts"),
        PlannedTask(host_id="lnx-02", action="linux.discover", reason="start: collect facts"),
        PlannedTask(host_id="mac-01", action="macos.discover", reason="start: collect facts"),
    )
    results(
        _result(w, True, WIN),
        _result(l2, True, LNX),
        _result(m, True, MAC),
        _result(l1, False, error_code="AUTH_FAILED", summary="authentication failed"),
    )
    (wb,) = step(
        PlannedTask(host_id="win-01", action="windows.baseline", reason="discover succeeded"),
        PlannedTask(host_id="ghost", action="linux.discover", reason="a planner mistake"),
    )
    results(_result(wb, True, {"changed": 3, "unchanged": 4}))
    for _ in range(2):
        (t,) = step(PlannedTask(host_id="lnx-01", action="linux.discover", reason="try again"))
        results(_result(t, False, error_code="AUTH_FAILED", summary="authentication failed"))
    step(
        PlannedTask(host_id="mac-01", action="macos.reboot", reason="apply pending updates"),
        PlannedTask(host_id="lnx-02", action="linux.baseline", reason="discover succeeded"),
    )
    state.status = MissionStatus.AWAITING_APPROVAL
    state.status_reason = "1 task(s) await approval"
    return state, events


def test_host_table_shows_each_host(mission: tuple[MissionState, list[EventRecord]]):
    state, _ = mission
    out = text(render_hosts(state))
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    win = next(v for k, v in rows.items() if "win-01" in k or "win-01" in v)
    assert "windows" in win and "baselined" in win and "healthy" in win and "0/3" in win
    assert WIN["computer"]["os_name"] in win  # the key facts line
    lnx1 = next(line for line in out.splitlines() if "lnx-01" in line)
    assert "linux" in lnx1 and "new" in lnx1 and "locked" in lnx1 and "3/3" in lnx1
    lnx2 = next(line for line in out.splitlines() if "lnx-02" in line)
    assert "discovered" in lnx2 and "linux.baseline" in lnx2
    assert LNX["os"]["pretty_name"] in lnx2
    mac = next(line for line in out.splitlines() if "mac-01" in line)
    assert "macos" in mac and "macos.reboot" in mac and MAC["sw_vers"]["product_version"] in mac
    # Locked hosts come first: they are what an operator must look at.
    order = [h for h in ("lnx-01", "lnx-02", "mac-01", "win-01") if h in out]
    assert out.index("lnx-01") < out.index("win-01")
    assert len(order) == 4


def test_host_table_is_bounded(mission: tuple[MissionState, list[EventRecord]]):
    state, _ = mission
    out = text(render_hosts(state, limit=2))
    assert "2 more" in out
    assert sum(1 for h in state.hosts if h in out) == 2


def test_dashboard(mission: tuple[MissionState, list[EventRecord]]):
    state, events = mission
    out = text(render_mission(state, events, event_lines=30, now=NOW + timedelta(seconds=42)))
    assert "m1" in out and "console-lab" in out and "awaiting_approval" in out
    assert "42.0s" in out
    assert "1/4 hosts" in out  # progress toward the goal
    for host in state.hosts:
        assert host in out
    (waiting,) = state.awaiting_approval
    approval_line = next(line for line in out.splitlines() if "awaiting approval:" in line)
    assert waiting in approval_line and "macos.reboot on mac-01" in approval_line
    # The event tail: plans with reasons, results, the refusal and the lock, with why.
    assert "windows.baseline — discover succeeded" in out
    refused = next(line for line in out.splitlines() if "refused" in line)
    assert "ghost" in refused and "unknown host" in refused
    locked = next(line for line in out.splitlines() if "locked  lnx-01" in line)
    assert "AUTH_FAILED" in locked
    assert "AUTH_FAILED" in out and "authentication failed" in out
    assert "[needs approval]" in out


def test_dashboard_event_tail_is_the_latest(mission: tuple[MissionState, list[EventRecord]]):
    state, events = mission
    out = text(render_mission(state, events, event_lines=3))
    assert "linux.baseline — discover succeeded" in out  # the very last plan
    assert "start: collect facts" not in out  # long gone from a 3-line tail


def test_dashboard_of_a_new_mission_renders():
    state = MissionState(
        mission_id="fresh",
        lab_type="x",
        hosts={"a": HostState(host_id="a", os="linux")},
    )
    out = text(render_mission(state))
    assert "fresh" in out and "no events yet" in out and "0/1 hosts" in out


def test_recap(mission: tuple[MissionState, list[EventRecord]]):
    state, _ = mission
    state.status = MissionStatus.COMPLETED
    state.status_reason = "nothing left to do: goal baselined reached on 1/4 hosts"
    out = text(render_recap(state))
    assert "m1: completed" in out and "1/4 hosts" in out
    assert state.status_reason in out
    lines = {h: next(line for line in out.splitlines() if h in line) for h in state.hosts}
    cells = [c.strip() for c in lines["win-01"].replace("│", "|").split("|") if c.strip()]
    assert cells[:6] == ["win-01 (sim)", "windows", "baselined", "2", "0", "0"]
    cells = [c.strip() for c in lines["lnx-01"].replace("│", "|").split("|") if c.strip()]
    assert cells[:7] == ["lnx-01 (sim)", "linux", "new", "0", "3", "0", "yes"]
    assert "AUTH_FAILED" in lines["lnx-01"]


def test_usage_line_when_an_llm_planned(mission: tuple[MissionState, list[EventRecord]]):
    state, events = mission
    usage = {
        "provider": "anthropic",
        "model": "claude-x",
        "calls": 3,
        "input_tokens": 12000,
        "output_tokens": 900,
        "cost_usd": 0.0421,
    }
    out = text(render_mission(state, events, usage=usage))
    assert "claude-x" in out and "calls 3" in out and "12,000" in out and "$0.0421" in out
    recap = text(render_recap(state, usage=usage))
    assert "$0.0421" in recap


def test_kinds_without_a_formatter_still_render():
    event = EventRecord(
        mission_id="m1",
        kind=EventKind.MISSION_CREATED,
        ts=NOW,
        payload={"lab_type": "x", "hosts": 3},
    )
    state = MissionState(
        mission_id="m1", lab_type="x", hosts={"a": HostState(host_id="a", os="linux")}
    )
    out = text(render_mission(state, [event]))
    assert "mission.created" in out and "hosts=3" in out


def _big_lab(n: int) -> MissionState:
    """`n` hosts at the goal, but for a few that want an operator's eye."""
    hosts = {
        f"h{i:04d}": HostState(host_id=f"h{i:04d}", os="linux", stage=Stage.BASELINED)
        for i in range(n)
    }
    hosts["h0900"] = HostState(
        host_id="h0900", os="linux", locked=True, failure_count=3, last_error="AUTH_FAILED"
    )
    hosts["h0500"] = HostState(
        host_id="h0500", os="linux", stage=Stage.DISCOVERED, failure_count=1, last_error="reset"
    )
    hosts["h0700"] = HostState(
        host_id="h0700", os="linux", stage=Stage.DISCOVERED, current_action="linux.baseline"
    )
    return MissionState(mission_id="big", lab_type="x", hosts=hosts)


def test_a_big_lab_shows_the_hosts_that_need_an_eye_first_and_sums_up_the_rest():
    out = text(render_hosts(_big_lab(1000), limit=5))
    rows = [line.split()[0] for line in out.splitlines()[2:] if line.split()]
    # Locked, then failing, then busy, then the rest by id.
    assert rows[:5] == ["h0900", "h0500", "h0700", "h0000", "h0001"]
    tail = out.splitlines()[-1]
    assert "995 more" in tail and "baselined 995" in tail


def test_a_small_lab_keeps_its_rows_in_order_whatever_they_do():
    state = _big_lab(4)
    out = text(render_hosts(state))
    rows = [line.split()[0] for line in out.splitlines()[2:] if line.split()]
    assert rows == ["h0900", "h0000", "h0001", "h0002", "h0003", "h0500", "h0700"]


def test_a_big_recap_lists_the_hosts_of_note_and_sums_up_the_rest():
    state = _big_lab(1000)
    out = text(render_recap(state, limit=50))
    listed = [line for line in out.splitlines() if line.strip().startswith("│ h")]
    assert [line.split()[1] for line in listed] == ["h0900", "h0500", "h0700"]
    summary = next(line for line in out.splitlines() if "997 more" in line)
    assert "baselined 997" in summary and "reaper status big --json" in summary
    # At or under the limit, every host has its row.
    small = text(render_recap(_big_lab(20), limit=50))
    assert sum(1 for line in small.splitlines() if line.strip().startswith("│ h")) == 23


def test_a_big_recap_says_how_many_hosts_of_note_it_left_out():
    state = _big_lab(100)
    for i in range(60):
        state.hosts[f"h{i:04d}"].last_error = "flaky"
    out = text(render_recap(state, limit=50))
    assert sum(1 for line in out.splitlines() if line.strip().startswith("│ h")) == 50
    assert "53 more, 13 of note" in out


async def test_a_desired_host_row_names_its_resource_under_way_and_what_it_waits_for() -> None:
    # Found by use: the row said "now package" (the action's kind), not which package; and
    # "package/y: waiting for a-01:pack…" lost what it waits for to the narrow column.
    from reaper.lab import parse_lab
    from reaper.models import ResourceState
    from reaper.planners.converge import Converger

    lab = parse_lab(
        """
schema_version: 2
lab_type: t
defaults: {transport: sim}
roles:
  a: [{kind: package, name: x}]
  b: [{kind: package, name: y, after: ["a-01:package/x"]}]
hosts:
  - {host_id: a-01, os: linux, roles: [a]}
  - {host_id: b-01, os: linux, roles: [b]}
""",
        source="t.yaml",
    )
    state = lab.to_state("t")
    for h in state.hosts.values():  # read: none of them is there yet
        h.resources = {k: ResourceState(seen=True) for k in h.resources}
    proposal = await Converger().initial_tasks(state)
    apply(state, plan(state, proposal.tasks, step=1, policy=PRESETS["standard"], now=NOW,
                      planner="rule"))  # fmt: skip
    rows = {line.split()[0]: line for line in text(render_hosts(state), 160).splitlines()}
    assert rows["a-01"].rstrip().endswith("now package/x")
    assert rows["b-01"].rstrip().endswith("waiting for a-01:package/x (package/y)")


def test_the_approval_question_says_what_the_task_does_and_escapes_its_text():
    from reaper.cli.drive import approval_question

    ids = {"task_id": "m-3-0", "mission_id": "m", "host_id": "web-[01]", "agent_type": "linux"}
    task = Task(**ids, action="linux.ensure_package", reason="add package/curl [bold]")
    question = approval_question(task, "risk tier high asks [red]")
    out = text(question, width=200).strip()
    assert out == (
        "Approve linux.ensure_package on web-[01]: add package/curl [bold] "
        "(task m-3-0; policy: risk tier high asks [red])?"
    )


def test_a_desired_host_counts_what_it_changed_before_the_read_back() -> None:
    # Found by use: a host at work read 0/7 all along, until its last discover.
    from reaper.cli.console import converged_cell
    from reaper.desired.diff import desired_properties
    from reaper.desired.progress import progress
    from reaper.lab import parse_lab
    from reaper.models import ResourceState

    lab = parse_lab(
        """
schema_version: 2
lab_type: t
defaults: {transport: sim}
roles:
  a: [{kind: package, name: x}, {kind: package, name: y}]
hosts:
  - {host_id: a-01, os: linux, roles: [a]}
""",
        source="t.yaml",
    )
    state = lab.to_state("t")
    host = state.hosts["a-01"]
    p = progress(state)
    x = next(n for n in p.host_nodes("a-01") if n.name == "x")
    seen = desired_properties(p.lab.resources[x], facts=host.facts, addresses={})
    host.resources = {k: ResourceState(seen=True) for k in host.resources}
    changed = ResourceState(seen=True, observed=seen, outcome="changed", verified=False)
    host.resources["package/x"] = changed
    assert converged_cell(progress(state), "a-01").plain == "0/2 +1 done"
    host.resources["package/x"] = host.resources["package/x"].model_copy(update={"verified": True})
    assert converged_cell(progress(state), "a-01").plain == "1/2"
