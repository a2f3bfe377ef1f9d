"""A change done but completed only by a restart (a DC promotion or a domain join made by an
earlier run, its restart not yet): discover reads it as declared with `restart_pending`, so
the diff runs nothing again, and the resource waits for a reboot (`reboot_required`), once."""

from __future__ import annotations

from reaper.cli.plan import plan_report
from reaper.desired.progress import progress
from reaper.engine.resources import after_discover, after_recovery
from reaper.lab import parse_lab
from reaper.models import HostState, MissionState, ResourceState, replace
from reaper.planners.converge import Converger

RID = "ad_domain/lab.local"
PENDING = {"netbios": "LAB", "functional_level": None, "restart_pending": True}
DONE = {"netbios": "LAB", "functional_level": "WinThreshold"}


def _host(rs: ResourceState) -> HostState:
    return HostState(host_id="dc-01", os="windows", resources={RID: rs})


def _read(host: HostState, props: dict[str, object] | None) -> ResourceState:
    return after_discover(host, {"resources": {RID: props}})[RID]


def test_a_first_read_of_a_pending_promotion_asks_for_the_reboot() -> None:
    rs = _read(_host(ResourceState()), PENDING)
    assert rs.seen and rs.verified and rs.reboot_required and rs.outcome is None
    assert rs.observed == PENDING


def test_a_read_back_after_the_ensure_keeps_the_reboot_it_reported() -> None:
    ensured = ResourceState(seen=True, observed=PENDING, outcome="changed", verified=False,
                            reboot_required=True, attempts=1)  # fmt: skip
    rs = _read(_host(ensured), PENDING)
    assert rs.verified and rs.reboot_required and rs.outcome == "changed"
    # A second read of the same is the same object (nothing derived from it changes).
    host = _host(rs)
    assert after_discover(host, {"resources": {RID: dict(PENDING)}})[RID] is rs


def test_after_the_reboot_it_reads_converged_or_fails_instead_of_rebooting_again() -> None:
    waiting = ResourceState(seen=True, observed=PENDING, verified=True, reboot_required=True)
    rebooted = after_recovery(_host(waiting), "reboot")
    assert rebooted is not None
    rs = rebooted[RID]
    assert not rs.reboot_required and not rs.verified
    done = _read(_host(rs), DONE)
    assert done.verified and not done.reboot_required and done.outcome is None
    still = _read(_host(rs), PENDING)
    assert still.outcome == "failed" and not still.reboot_required
    assert still.error_code == "COMMAND_FAILED" and "after the host restarted" in (
        still.error or ""
    )


def test_an_observation_without_the_flag_changes_nothing_of_the_reboot_logic() -> None:
    rs = _read(_host(ResourceState()), DONE)
    assert rs.verified and not rs.reboot_required


LAB = """
schema_version: 2
mission_id: pending
lab_type: pending
defaults: {transport: sim}
roles:
  dc:
    - {kind: ad_domain, name: lab.local, netbios: LAB, safe_mode_password_env: X_DSRM}
hosts:
  - {host_id: dc-01, os: windows, roles: [dc]}
"""


def _pending_lab() -> MissionState:
    """The lab's first discover, reading the promotion done and its restart not yet."""
    state = parse_lab(LAB).to_state()
    host = state.hosts["dc-01"]
    seen = after_discover(host, {"resources": {RID: PENDING}})
    state.hosts["dc-01"] = replace(host, resources=seen)
    return state


async def test_the_converger_reboots_a_pending_promotion_instead_of_promoting_again() -> None:
    plan = await Converger().initial_tasks(_pending_lab())
    assert [t.action for t in plan.tasks] == ["windows.reboot"]


def test_the_plan_shows_it_done_and_waiting_for_a_restart() -> None:
    [entry] = plan_report(progress(_pending_lab()))["hosts"]["dc-01"]
    assert entry["action"] == "ok" and entry["restart_pending"] is True
