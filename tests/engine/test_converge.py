"""Desired-state missions through the real engine and workers: the rule converger plans from
the diff, in graph order across hosts; a failure fails its resource and blocks its
dependents, the rest goes on; known failures get their fix; a lockout is refused and the rest
converges; a converged lab changes nothing on the next run.

The hosts are a small world of resources (`World` below, an `ActionRunner`): it answers
discover and ensure_* as the action contract says, and can be told to fail a resource."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from reaper.cli.missions import checked
from reaper.desired import parse_resource
from reaper.desired.progress import progress
from reaper.lab import LabFile, load_lab, parse_lab
from reaper.models import EventKind, MissionState, MissionStatus
from reaper.planners.rules import RuleBasedPlanner
from tests.missions import HarnessFactory, of_kind
from tests.worlds import LAB, World

LABS = Path(__file__).resolve().parents[2] / "reaper" / "labs"


async def _run(harness: HarnessFactory, lab: LabFile, world: World) -> tuple[MissionState, Any]:
    h = await harness(runners={"sim": world}, planner=RuleBasedPlanner())
    state = await h.run(lab)
    return state, h


def _statuses(state: MissionState) -> Counter[str]:
    return Counter(status for _, status in progress(state))


async def test_ad_lab_converges_in_dependency_order_across_hosts(
    harness: HarnessFactory,
) -> None:
    world = World()
    state, h = await _run(harness, load_lab(LABS / "ad-lab.yaml"), world)
    assert state.status is MissionStatus.COMPLETED and state.goal_reached, state.status_reason
    assert state.status_reason == "converged: all 23 resources on 6 hosts"
    assert _statuses(state) == {"ok": 23}
    order = [a for _, a in world.log]
    # the members join after the domain exists, and after their own resolver points at it
    assert order.index("windows.ensure_ad_domain") < order.index("windows.ensure_domain_membership")
    srv = world.ensures("srv-01")
    assert srv == ["windows.ensure_dns_client", "windows.ensure_domain_membership"]
    # web-01's nginx service waits for db-01's postgresql service
    log = world.log
    nginx = next(i for i, (hh, a) in enumerate(log) if hh == "web-01" and a.endswith("service"))
    pg = next(i for i, (hh, a) in enumerate(log) if hh == "db-01" and a.endswith("service"))
    assert pg < nginx
    # the member's resolver was given the DC's address, not its name
    dns = world.seen[("srv-01", "dns_client/default")]
    assert list(dns["servers"]) == ["10.0.0.5"]
    # every host's last task is a read-only discover after its changes (no drift left)
    last = {hh: a for hh, a in world.log}
    assert all(a.endswith(".discover") for a in last.values()), last

    # a second run of the same lab on the same world changes nothing
    before = dict(world.seen)
    world.log.clear()
    lab = load_lab(LABS / "ad-lab.yaml").model_copy(update={"mission_id": "ad-lab-2"})
    again = await h.run(lab)
    assert again.goal_reached and world.ensures() == [] and world.seen == before
    assert {a.rpartition(".")[2] for _, a in world.log} == {"discover"}


async def test_a_failure_blocks_its_dependents_and_the_rest_goes_on(
    harness: HarnessFactory,
) -> None:
    world = World()
    world.fail[("web-01", "package/nginx")] = (
        "PACKAGE_NOT_FOUND",
        "E: Unable to locate package nginx",
    )
    state, _ = await _run(harness, parse_lab(LAB), world)
    assert state.status is MissionStatus.COMPLETED and not state.goal_reached
    assert state.status_reason == "incomplete: 6/8 resources converged, 1 failed, 1 blocked"
    p = progress(state)
    web1 = {str(n.rid): s for n, s in p if n.host == "web-01"}
    assert web1 == {
        "package/nginx": "failed",
        "file//etc/nginx/conf.d/app.conf": "ok",
        "service/nginx": "blocked",
        "user/deploy": "ok",
    }
    rs = state.hosts["web-01"].resources["package/nginx"]
    assert rs.error_code == "PACKAGE_NOT_FOUND" and "Unable to locate" in rs.output_tail
    assert not state.hosts["web-01"].locked and state.hosts["web-01"].failure_count == 0
    assert "ensure_service" not in " ".join(world.ensures("web-01"))
    assert all(s == "ok" for n, s in p if n.host == "web-02")


async def test_a_full_disk_is_cleaned_then_the_resource_retried(harness: HarnessFactory) -> None:
    world = World()
    world.fail[("web-02", "package/nginx")] = ("DISK_FULL", "E: You don't have enough free space")
    state, _ = await _run(harness, parse_lab(LAB), world)
    assert state.goal_reached, state.status_reason
    actions = [a for hh, a in world.log if hh == "web-02"]
    first = actions.index("linux.ensure_package")
    assert actions[first + 1] == "linux.cleanup" and actions[first + 2] == "linux.ensure_package"


async def test_check_mode_changes_nothing_and_reports_what_would(harness: HarnessFactory) -> None:
    world = World()
    lab = parse_lab(LAB)
    _, h = await _run(harness, lab.model_copy(update={"mission_id": "chk"}), world)
    assert world.seen  # converged for real first
    world.seen.pop(("web-01", "user/deploy"))  # a drift made by hand
    snapshot = dict(world.seen)
    world.log.clear()
    done = await h.run(checked(lab).model_copy(update={"mission_id": "chk-2"}))
    assert world.seen == snapshot  # nothing changed
    assert [a for a in world.ensures()] == ["linux.ensure_user"]  # only the drift, checked
    assert done.hosts["web-01"].resources["user/deploy"].outcome == "would_change"

    world.log.clear()
    fixed = await h.run(lab.model_copy(update={"mission_id": "fix"}))
    assert fixed.goal_reached and world.ensures() == ["linux.ensure_user"]  # only the drift


async def test_the_lockout_lab_refuses_root_login_off_and_converges_the_rest(
    harness: HarnessFactory,
) -> None:
    world = World()
    state, h = await _run(harness, load_lab(LABS / "lockout-lab.yaml"), world)
    assert state.status is MissionStatus.COMPLETED and not state.goal_reached
    p = {str(n.rid): s for n, s in progress(state)}
    assert p == {
        "package/auditd": "ok",
        "service/auditd": "ok",
        "sshd_option/PermitRootLogin": "failed",
        "sshd_option/X11Forwarding": "ok",
    }
    rs = state.hosts["app-01"].resources["sshd_option/PermitRootLogin"]
    assert rs.error_code == "REFUSED" and "lock Reaper out" in (rs.error or "")
    assert "connect as a sudo user first" in (rs.error or "")
    refused = of_kind(await h.events("lockout-lab"), EventKind.TASK_REFUSED)
    assert [e.payload["code"] for e in refused] == ["lockout"]
    assert ("app-01", "linux.ensure_sshd_option") in world.log  # X11Forwarding ran
    assert ("app-01", "sshd_option/PermitRootLogin") not in world.seen


def test_an_ensure_names_its_resource_as_the_lab_does() -> None:
    from reaper.engine.resources import resource_of

    for spec in (
        {"kind": "firewall", "port": 22, "action": "allow"},  # named by what it matches
        {"kind": "file", "path": "/etc/motd", "content": "x"},
        {"kind": "domain_membership", "domain": "lab.local", "credentials_env": "J"},
    ):
        resource = parse_resource(spec, "t")
        params = {"resource": dict(spec), "check_mode": False}
        assert resource_of(params, {}) == str(resource.rid)
    assert resource_of({"resource": {"kind": "nope"}}, {}) is None
