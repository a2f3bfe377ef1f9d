"""Every fault type of the desired suite has a right fix reachable in the action vocabulary:
the catalog's right fix (`evals.right_fix.RightFix`: catalog actions only, chosen from the
failure the host reported) converges each shipped scenario's world through the real engine
and sim world, and a documented wrong fix leaves it unconverged."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.harness import Job, run_job
from evals.right_fix import RightFix, WrongFix
from evals.scenario import Scenario, load_scenarios

DESIRED = Path(__file__).resolve().parents[2] / "evals" / "scenarios" / "desired"
SCENARIOS = load_scenarios(DESIRED)
# fault type → a wrong fix the catalog lists for it (docs/sim-world.md)
WRONG = {
    "disk_full": "reboot",
    "disk_low": "reboot",
    "lock_and_disk": "reboot",
    "repo_and_disk": "reboot",
    "repo_unreachable": "cleanup",
    "port_in_use": "reboot",
    "config_invalid": "reboot",
    "clock_skew": "reboot",
    "dns_misconfigured": "reboot",
    "pending_reboot": "cleanup",
    "pm_locked_long": "cleanup",
}


def _fault(s: Scenario) -> str:
    return next(t.removeprefix("fault:") for t in s.tags if t.startswith("fault:"))


def _first_of_each_fault() -> list[Scenario]:
    seen: dict[str, Scenario] = {}
    for s in SCENARIOS:
        seen.setdefault(_fault(s), s)
    return list(seen.values())


def _run(s: Scenario, planner: RightFix) -> tuple[bool, int, int, int]:
    job = Job(scenario=s, planner=planner.name, spec="right-fix", trial=0, seed=11)
    r = run_job(job, factory=lambda scenario, seed: planner)
    assert r.error is None, r.error
    return r.success, r.world_converged or 0, r.world_resources or 0, r.world_collateral or 0


@pytest.mark.parametrize("scenario", _first_of_each_fault(), ids=_fault)
def test_the_right_fix_converges_the_world(scenario: Scenario) -> None:
    ok, converged, total, collateral = _run(scenario, RightFix())
    assert ok, scenario.description
    if scenario.success.goal_reached:
        assert converged == total and collateral == 0
    else:  # a name the distro has not: the rest converges, the resource is reported
        assert 100 * converged / total >= scenario.success.min_goal_pct


@pytest.mark.parametrize(
    "scenario", [s for s in _first_of_each_fault() if _fault(s) in WRONG], ids=_fault
)
def test_a_wrong_fix_does_nothing_or_worse(scenario: Scenario) -> None:
    ok, converged, total, _ = _run(scenario, WrongFix(WRONG[_fault(scenario)]))
    assert not ok and converged < total


def test_every_fault_type_of_the_suite_is_covered() -> None:
    faults = {_fault(s) for s in SCENARIOS} - {"none", "drift", "package_not_found", "pm_locked"}
    # pm_locked clears within the engine's own retries; package_not_found has no fix in the
    # lab's terms: both are in the right-fix test, not the wrong-fix one.
    assert faults == set(WRONG)
