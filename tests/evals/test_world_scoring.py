"""Desired-state scenarios are scored on the sim world's end state: a planner whose trace
looks busy but leaves the world unconverged loses to the rule converger."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from evals.by_fault import fault_rows
from evals.generate import SHIPPED_SEED, catalog, generate
from evals.harness import plan_jobs, run_suite
from evals.scenario import Scenario, load_scenarios, parse_scenario
from evals.scorecard import RunResult

DESIRED = Path(__file__).resolve().parents[2] / "evals" / "scenarios" / "desired"
WEAK = ("CheckModeOnly", "OneItemOnly", "SkipsDiscovery", "HammersRetries")


@pytest.fixture(scope="module")
def desired() -> list[Scenario]:
    return load_scenarios(DESIRED)


@pytest.fixture(scope="module")
def results(desired: list[Scenario]) -> list[RunResult]:
    planners = [("rule", "rule"), *((w, f"evals.weak:{w}") for w in WEAK)]
    return run_suite(plan_jobs(desired, planners, trials=2), processes=2)


def _wins(results: list[RunResult], planner: str) -> int:
    return sum(r.success for r in results if r.planner == planner)


def test_the_shipped_files_are_the_generator_s_output(desired: list[Scenario]) -> None:
    made = sorted(generate(SHIPPED_SEED, len(desired)), key=lambda s: s.name)
    assert [s.digest() for s in desired] == [s.digest() for s in made]


def test_at_least_30_scenarios_over_10_fault_types(desired: list[Scenario]) -> None:
    assert len(desired) >= 30
    kinds = {t for s in desired for t in s.tags if t.startswith("fault:") and t != "fault:none"}
    assert len(kinds) >= 10 and len(catalog()) >= 10
    assert any("control" in s.tags for s in desired)
    assert any("cross-host" in s.tags for s in desired)


def test_every_run_is_scored_on_the_world(results: list[RunResult]) -> None:
    assert all(r.error is None for r in results)
    assert all(r.world_resources for r in results)
    for r in results:
        assert r.world_converged is not None and r.world_resources is not None
        # success means the world matches, whatever the trace said (package_not_found asks
        # for a name the distro has not: there success is the rest converged, no loop)
        if r.success and r.fault != "package_not_found":
            assert r.world_converged == r.world_resources and r.world_collateral == 0


@pytest.mark.parametrize("weak", WEAK)
def test_each_weakened_planner_loses_to_the_converger(results: list[RunResult], weak: str) -> None:
    assert _wins(results, weak) < _wins(results, "rule")
    converged = Counter[str]()
    for r in results:
        converged[r.planner] += r.world_converged or 0
    assert converged[weak] < converged["rule"]


def test_check_mode_changes_nothing_in_the_world(results: list[RunResult]) -> None:
    # Absent resources are ok from the start; nothing else may be.
    for r in results:
        if r.planner == "CheckModeOnly" and "control" not in r.scenario:
            assert r.world_converged is not None and r.world_converged < (r.world_resources or 0)


def test_held_out_scenarios_differ_from_the_shipped_ones() -> None:
    shipped = {s.digest() for s in generate(SHIPPED_SEED, 32)}
    held_out = generate(SHIPPED_SEED + 1, 32)
    assert not shipped & {s.digest() for s in held_out}
    assert all(s.name.startswith(f"ho{SHIPPED_SEED + 1}-") for s in held_out)
    assert [s.digest() for s in generate(7, 5)] == [s.digest() for s in generate(7, 5)]


def _twin(scenario: Scenario) -> Scenario:
    """The same lab with every host's world conditions cleared: no fault."""
    data = scenario.model_dump(mode="json", exclude={"schema_version", "name"})
    for host in data["lab"]["hosts"]:
        host.setdefault("sim", {})["world"] = {}
    return parse_scenario(yaml.safe_dump(data), source=scenario.name, name=scenario.name)


def test_every_fault_bites_and_no_control_fails(desired: list[Scenario]) -> None:
    # A fault placed where nothing meets it would be a control under a fault's name: the
    # converger's run must differ from the no-fault twin's, and every twin must converge
    # (the lab is sound; only its fault can make a planner fail).
    # Two faults are the lab's own, not a world condition (a member with no resolver, a name
    # the distro has not): they have no no-fault twin.
    own = {f"fault:{f.kind}" for f in catalog() if not f.world}
    desired = [s for s in desired if not own & set(s.tags)]
    # A drift's twin (the file missing instead of edited) takes the same plan: not a fault.
    faulty = [s for s in desired if "fault:none" not in s.tags and "drift" not in s.tags]
    rule = [("rule", "rule")]
    with_fault = run_suite(plan_jobs(faulty, rule, trials=1), processes=2)
    twins = run_suite(plan_jobs([_twin(s) for s in desired], rule, trials=1), processes=2)
    assert [r.scenario for r in twins if not r.success] == []
    clean = {r.scenario: r for r in twins}

    def shape(r: RunResult) -> tuple[int, int, float, bool]:
        return (r.tasks_issued, r.failed_tasks, r.sim_time_s, r.success)

    assert [r.scenario for r in with_fault if shape(r) == shape(clean[r.scenario])] == []


def test_hammering_retries_is_refused_as_loops(results: list[RunResult]) -> None:
    # The same failing fix a third time is refused as a loop; the scorecard counts them.
    loops = Counter[str]()
    for r in results:
        loops[r.planner] += r.loops
        if r.fault == "none":
            assert r.loops == 0, (r.planner, r.scenario)
    assert loops["HammersRetries"] > loops["rule"]
    hammered = {r.fault for r in results if r.planner == "HammersRetries" and r.loops}
    assert {"disk_full", "repo_unreachable", "port_in_use"} <= hammered


# Where each weakened planner must lose to the converger, fault type by fault type: the rule
# converger fixes these, and the weakness is exactly what they need.
MUST_LOSE = {
    "CheckModeOnly": {"disk_full", "disk_low", "pm_locked"},  # nothing is ever applied
    "OneItemOnly": {"disk_full", "disk_low", "pm_locked"},  # every lab has 2+ resources a host
    "SkipsDiscovery": {"disk_full", "disk_low", "pm_locked", "none"},  # nothing known to fix
    "HammersRetries": {"disk_full", "disk_low"},  # retrying never frees the disk
}


@pytest.mark.parametrize("weak", WEAK)
def test_each_weakened_planner_loses_where_it_should(results: list[RunResult], weak: str) -> None:
    rows = {(r.fault, r.planner): r for r in fault_rows(results)}
    for fault in MUST_LOSE[weak]:
        rule, ours = rows[(fault, "rule")], rows[(fault, weak)]
        assert ours.successes < rule.successes, (weak, fault)
        assert ours.converged_pct < rule.converged_pct, (weak, fault)
