"""The rule converger's known recoveries on the sim world, through the real engine: a held
package-manager lock → wait and retry, bounded; a missing prerequisite → install it; a
pending reboot, or a change that reports `reboot_required` → reboot, then read back; any
other failure stays failed (for the LLM, in the hybrid)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from evals.harness import Job, run_job
from evals.scenario import Scenario, parse_scenario
from reaper.models import MissionState, ResultEvent
from reaper.planners.base import Plan
from reaper.planners.converge import LOCK_WAIT_S, Converger

_DEBIAN = {
    "os": {"id": "debian", "name": "Debian GNU/Linux", "version": "12"},
    "package_manager": "apt",
    "services": ["cron", "sshd"],
}


class _Recording(Converger):
    """The converger, keeping what it proposed and the results it saw."""

    def __init__(self) -> None:
        self.proposed: list[tuple[str, str, dict[str, Any], float]] = []
        self.results: list[tuple[str, str, str | None]] = []

    def _keep(self, plan: Plan) -> Plan:
        self.proposed += [(t.host_id, t.action, t.params, t.delay_s) for t in plan.tasks]
        return plan

    async def initial_tasks(self, state: MissionState) -> Plan:
        return self._keep(await super().initial_tasks(state))

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        self.results += [(r.host_id, r.action, r.error_code) for r in results]
        return self._keep(await super().next_tasks(state, results))

    def actions(self) -> list[str]:
        return [a.partition(".")[2] for _, a, _, _ in self.proposed]


def _scenario(roles: dict[str, Any], hosts: list[dict[str, Any]], **extra: Any) -> Scenario:
    data = {
        "success": {"max_locked": None, "max_destructive": None},
        "lab": {"schema_version": 2, "defaults": {"transport": "sim"}, "roles": roles,
                "hosts": hosts},
        **extra,
    }  # fmt: skip
    return parse_scenario(yaml.safe_dump(data), name="t")


def _linux(world: dict[str, Any] | None = None) -> dict[str, Any]:
    sim: dict[str, Any] = {"facts": _DEBIAN}
    if world:
        sim["world"] = world
    return {"host_id": "h-01", "os": "linux", "roles": ["r"], "sim": sim}


def _run(s: Scenario) -> tuple[_Recording, Any]:
    planner = _Recording()
    r = run_job(Job(scenario=s, planner="rule", spec="rule", trial=0, seed=3), lambda *_: planner)
    assert r.error is None, r.error
    return planner, r


def test_a_held_lock_is_waited_for_and_retried_once() -> None:
    # 3 engine tries, then the converger's retry after its wait: the holder is done by then.
    s = _scenario(
        {"r": [{"kind": "package", "name": "curl"}]},
        [_linux({"pm_lock_held_by": "apt-get (pid 7)", "pm_lock_attempts": 4})],
    )
    planner, r = _run(s)
    assert r.success and r.world_converged == r.world_resources
    ensures = [p for p in planner.proposed if p[1] == "linux.ensure_package"]
    assert len(ensures) == 2 and ensures[0][3] == 0 and ensures[1][3] == LOCK_WAIT_S


def test_a_lock_that_outlasts_the_retry_stays_failed_without_a_loop() -> None:
    s = _scenario(
        {"r": [{"kind": "package", "name": "curl"}]},
        [_linux({"pm_lock_held_by": "apt-get (pid 7)", "pm_lock_attempts": 50})],
    )
    planner, r = _run(s)
    assert not r.success and r.loops == 0
    assert planner.actions().count("ensure_package") == 2  # bounded: no third try
    assert "incomplete" in r.status_reason


def test_a_missing_package_of_a_service_is_installed_first() -> None:
    s = _scenario(
        {"r": [{"kind": "service", "name": "nginx", "state": "running", "enabled": True}]},
        [_linux()],
    )
    planner, r = _run(s)
    assert r.success, r.status_reason
    acts = planner.actions()
    first = acts.index("ensure_service")
    assert acts[first + 1] == "ensure_package" and acts[first + 2] == "ensure_service"
    assert planner.proposed[first + 1][2]["resource"] == {"kind": "package", "name": "nginx"}


def test_reboot_required_reboots_then_reads_back() -> None:
    s = _scenario(
        {"r": [{"kind": "windows_feature", "name": "AD-Domain-Services"},
               {"kind": "ad_domain", "name": "lab.local", "netbios": "LAB",
                "safe_mode_password_env": "X_DSRM"}]},
        [{"host_id": "dc-01", "os": "windows", "roles": ["r"]}],
        operator="approve",
    )  # fmt: skip
    planner, r = _run(s)
    assert r.success, r.status_reason
    acts = planner.actions()
    assert "reboot" in acts
    assert acts.index("ensure_ad_domain") < acts.index("reboot") < len(acts) - 1
    assert acts[-1] == "discover"  # re-observed after the restart


def test_a_refused_reboot_leaves_the_lab_converged_as_read() -> None:
    s = _scenario(
        {"r": [{"kind": "windows_feature", "name": "AD-Domain-Services"},
               {"kind": "ad_domain", "name": "lab.local", "netbios": "LAB",
                "safe_mode_password_env": "X_DSRM"}]},
        [{"host_id": "dc-01", "os": "windows", "roles": ["r"]}],
        operator="reject",
    )  # fmt: skip
    planner, r = _run(s)
    assert r.stop == "completed" and r.world_converged == r.world_resources
    assert planner.actions().count("reboot") == 1


def test_a_pending_reboot_is_rebooted_then_retried() -> None:
    s = _scenario(
        {"r": [{"kind": "windows_feature", "name": "AD-Domain-Services"}]},
        [{"host_id": "w-01", "os": "windows", "roles": ["r"],
          "sim": {"world": {"pending_reboot": True}}}],
        operator="approve",
    )  # fmt: skip
    planner, r = _run(s)
    assert r.success, r.status_reason
    assert ("w-01", "windows.ensure_windows_feature", "REBOOT_PENDING") in planner.results


def test_an_unknown_failure_stays_failed_for_the_llm() -> None:
    web = [
        {"kind": "package", "name": "nginx"},
        {"kind": "file", "path": "/etc/nginx/conf.d/app.conf",
         "content": "server { listen 8080; }\n", "notify": ["nginx"]},
        {"kind": "service", "name": "nginx", "state": "running", "enabled": True},
    ]  # fmt: skip
    s = _scenario({"r": web}, [_linux({"port_in_use": {8080: "apache2"}})])
    planner, r = _run(s)
    assert not r.success and "1 failed, 1 blocked" in r.status_reason
    assert not {"cleanup", "reboot", "diagnose"} & set(planner.actions())
