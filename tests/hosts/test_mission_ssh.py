"""Whole missions over real SSH: the engine, the rule planner, local workers, the SSH transport
and the Linux action code, against OpenSSH servers in network namespaces."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from reaper.agents.oscode.baseline import SSHD_BEGIN
from reaper.agents.runners import default_runners
from reaper.engine.core import Listener
from reaper.infra.factory import open_backend
from reaper.lab import LabFile, LabHost, LabSettings
from reaper.models import (
    EventKind,
    EventRecord,
    MissionState,
    MissionStatus,
    PlannedTask,
    ResultEvent,
    Stage,
)
from reaper.overseer import Overseer
from reaper.planners.base import Plan
from reaper.runtime import LocalWorkers
from tests.hosts.conftest import lab_host
from tests.hosts.netns import NsLab

pytestmark = [pytest.mark.services, pytest.mark.slow]

RETRIABLE_CONNECT = {"CONNECTION_REFUSED", "CONNECTION_LOST", "TIMEOUT"}


async def run_mission(
    lab: LabFile,
    logs_dir: Path,
    *,
    listener: Listener | None = None,
    planner: Any = None,
    timeout_s: float = 60.0,
) -> tuple[MissionState, list[EventRecord]]:
    """Create and run a mission to its end with in-process workers; (final state, events)."""
    backend = open_backend("memory")
    factory: Callable[[MissionState], Any] | None = (lambda _: planner) if planner else None
    overseer = (
        Overseer(backend, listener=listener, planner_factory=factory)
        if factory
        else Overseer(backend, listener=listener)
    )
    runners = default_runners(transport_options={"ssh": {"logs_dir": logs_dir}}, include={"ssh"})
    workers = LocalWorkers(backend, runners=runners, lease_s=30.0)
    try:
        state = await overseer.create_mission(lab)
        workers.start(["reaper-linux"])
        async with asyncio.timeout(timeout_s):
            final = await overseer.run_mission(state.mission_id)
        return final, await backend.store.events(state.mission_id)
    finally:
        await workers.stop()
        await backend.close()


def results(events: Sequence[EventRecord], host_id: str | None = None) -> list[ResultEvent]:
    out = [r for e in events if e.kind is EventKind.TASK_RESULT and (r := e.result()) is not None]
    return [r for r in out if host_id is None or r.host_id == host_id]


def mission(hosts: list[LabHost], goal: Stage = Stage.BASELINED, **settings: Any) -> LabFile:
    return LabFile(
        lab_type="ssh-e2e",
        goal=goal,
        policy="standard",
        hosts=hosts,
        settings=LabSettings(**settings),
    )


async def test_baseline_mission_on_three_hosts_then_everything_unchanged(
    mission_lab: NsLab, logs_dir: Path
) -> None:
    hosts = [mission_lab.hosts[n] for n in ("m1", "m2", "m3")]
    lab = mission([lab_host(mission_lab, h) for h in hosts])

    state, events = await run_mission(lab, logs_dir)

    done = (state.status, state.goal_reached)
    assert done == (MissionStatus.COMPLETED, True), state.status_reason
    for h in hosts:
        host = state.hosts[h.name]
        assert host.stage is Stage.BASELINED and not host.locked, host.last_error
        assert host.facts["hostname"] == h.name
        assert h.addr in [a["addr"] for a in host.facts["addresses"]]
        assert host.facts["os"]["id"] == "debian"
        items = {i["name"]: i["status"] for i in host.facts["baseline"]["items"]}
        assert items["sshd_hardening"] == "changed"
        config = (h.root / "etc/ssh/sshd_config").read_text()
        assert config.startswith(SSHD_BEGIN) and "PermitRootLogin prohibit-password" in config
        # Full output kept at logs_ref, inside the logs directory the transport was given.
        refs = {r.logs_ref for r in results(events, h.name)}
        assert refs and all(ref and Path(ref).parent == logs_dir for ref in refs)
    assert all(r.ok for r in results(events))

    again, events = await run_mission(mission([lab_host(mission_lab, h) for h in hosts]), logs_dir)

    assert (again.status, again.goal_reached) == (MissionStatus.COMPLETED, True)
    for h in hosts:
        baseline = again.hosts[h.name].facts["baseline"]
        assert baseline["changed"] == 0, baseline
        assert all(i["status"] != "changed" for i in baseline["items"]), baseline["items"]


async def test_sshd_stopped_mid_mission_retries_and_recovers(
    mission_lab: NsLab, logs_dir: Path
) -> None:
    host = mission_lab.hosts["ms"]
    seen = {"stopped": False, "restarted": False}

    def listener(state: MissionState, events: Sequence[EventRecord]) -> None:
        if not seen["stopped"] and state.hosts["ms"].stage is Stage.DISCOVERED:
            seen["stopped"] = True
            mission_lab.stop_sshd(host)  # the baseline is queued next, on a dead host
        if not seen["restarted"] and any(e.kind is EventKind.TASK_RETRY for e in events):
            seen["restarted"] = True
            threading.Thread(target=mission_lab.start_sshd, args=(host,), daemon=True).start()

    lab = mission(
        [lab_host(mission_lab, host)],
        retry_attempts=5,
        retry_backoff_s=0.3,
        retry_backoff_max_s=1.0,
    )
    state, events = await run_mission(lab, logs_dir, listener=listener)

    assert seen == {"stopped": True, "restarted": True}
    failed = [r for r in results(events, "ms") if not r.ok]
    assert failed and all(r.retriable and r.error_code in RETRIABLE_CONNECT for r in failed)
    assert all(r.action == "linux.baseline" for r in failed)
    done = (state.status, state.goal_reached)
    assert done == (MissionStatus.COMPLETED, True), state.status_reason
    assert state.hosts["ms"].stage is Stage.BASELINED and not state.hosts["ms"].locked


async def test_sshd_stopped_for_good_locks_the_host(mission_lab: NsLab, logs_dir: Path) -> None:
    host = mission_lab.hosts["ms"]
    stopped: list[bool] = []

    def listener(state: MissionState, events: Sequence[EventRecord]) -> None:
        if not stopped and state.hosts["ms"].stage is Stage.DISCOVERED:
            stopped.append(True)
            mission_lab.stop_sshd(host)

    lab = mission(
        [lab_host(mission_lab, host, connect_timeout_s=1.0)],
        goal=Stage.BASELINED,
        max_failures=1,
        retry_attempts=2,
        retry_backoff_s=0.1,
    )
    try:
        state, events = await run_mission(lab, logs_dir, listener=listener)
    finally:
        if host.proc is None:
            mission_lab.start_sshd(host)

    ms = state.hosts["ms"]
    assert ms.locked and ms.stage is Stage.DISCOVERED
    assert ms.lock_reason and "linux.baseline" in ms.lock_reason
    assert state.status is MissionStatus.FAILED and "locked" in state.status_reason
    attempts = [r for r in results(events, "ms") if r.action == "linux.baseline"]
    assert [r.attempt for r in attempts] == [1, 2] and all(r.retriable for r in attempts)


async def test_changed_host_key_nothing_runs_and_planner_gives_up(
    mission_lab: NsLab, logs_dir: Path, tmp_path: Path
) -> None:
    good, bad = mission_lab.hosts["m1"], mission_lab.hosts["m2"]
    known = tmp_path / "known_hosts"
    # m2's address with m1's key: a reinstalled host, or a man in the middle.
    known.write_text(good.known_hosts_line + f"{bad.addr} ssh-ed25519 {good.host_key_pub}\n")
    accepted_before = sum("Accepted" in line for line in bad.log)
    lab = mission(
        [
            lab_host(mission_lab, h, known_hosts=str(known), accept_new_host_key=True)
            for h in (good, bad)
        ],
        goal=Stage.DISCOVERED,
    )

    state, events = await run_mission(lab, logs_dir)

    assert state.status is MissionStatus.COMPLETED and not state.goal_reached
    assert "1/2" in state.status_reason
    assert state.hosts["m1"].stage is Stage.DISCOVERED
    m2 = state.hosts["m2"]
    assert m2.stage is Stage.NEW and not m2.locked and m2.facts == {}
    (only,) = results(events, "m2")  # one attempt, no retry, no re-plan
    assert (only.error_code, only.retriable) == ("HOST_KEY_MISMATCH", False)
    assert not any(e.kind is EventKind.TASK_RETRY for e in events)
    assert sum("Accepted" in line for line in bad.log) == accepted_before  # never logged in
    assert known.read_text().count("\n") == 2  # accept-new never overwrites a changed key


class _InjectingPlanner:
    """Proposes tasks whose every string param is a shell-injection attempt."""

    name = "injector"

    def __init__(self, payload: str) -> None:
        self.payload = payload

    async def initial_tasks(self, state: MissionState) -> Plan:
        p = self.payload
        return Plan(
            tasks=[
                PlannedTask(host_id="m1", action="linux.discover", params={"sections": [p]}),
                PlannedTask(
                    host_id="m2", action="linux.baseline", params={"items": [p], "check_mode": True}
                ),
                PlannedTask(host_id="m3", action="linux.prepare", params={"items": [p]}),
            ]
        )

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        return Plan()


async def test_metacharacters_in_planned_params_never_execute(
    mission_lab: NsLab, logs_dir: Path
) -> None:
    marker = "/tmp/reaper-mission-pwned"
    payload = f"$(touch {marker}); touch {marker} | `touch {marker}` && ' \" \ntouch {marker}"
    hosts = [mission_lab.hosts[n] for n in ("m1", "m2", "m3")]
    lab = mission([lab_host(mission_lab, h) for h in hosts])

    state, events = await run_mission(lab, logs_dir, planner=_InjectingPlanner(payload))

    ran = results(events)
    assert len(ran) == 3 and all(not r.ok for r in ran), [r.summary for r in ran]
    assert state.status is MissionStatus.COMPLETED
    for h in hosts:
        assert not (h.root / marker.lstrip("/")).exists()
    assert not Path(marker).exists()
