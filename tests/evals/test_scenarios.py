from __future__ import annotations

import gzip
import json

import pytest

from evals.planners import DEFAULT_FIXTURES, cassette_for
from evals.scenario import Scenario, parse_scenario
from reaper.errors import ConfigError


def test_suite_has_the_required_scenarios(scenarios: list[Scenario]) -> None:
    assert len(scenarios) >= 15
    sizes = [len(s.lab_file(0).hosts) for s in scenarios]
    assert min(sizes) <= 3 and max(sizes) >= 50
    kinds = {
        f["kind"]
        for s in scenarios
        for h in s.lab["hosts"]
        for f in ((h.get("sim") or {}).get("faults") or [])
    } | {
        f["kind"]
        for s in scenarios
        for f in (((s.lab.get("defaults") or {}).get("sim") or {}).get("faults") or [])
    }
    assert kinds >= {"flaky", "down", "auth_failure", "needs_prepare", "slow", "command_failed"}
    assert any("hard" in s.tags for s in scenarios)
    assert any("injection" in s.tags for s in scenarios)


def test_every_scenario_ships_a_synthetic_cassette(scenarios: list[Scenario]) -> None:
    for scenario in scenarios:
        path = cassette_for(DEFAULT_FIXTURES, scenario.name)
        assert path.exists(), path
        first = gzip.decompress(path.read_bytes()).split(b"\n", 1)[0]
        header = json.loads(first)
        assert header["type"] == "header" and header["synthetic"] is True


def test_groups_expand_and_trial_seed_replaces_lab_seed() -> None:
    scenario = parse_scenario(
        "name: g\nlab:\n  seed: 5\n  defaults: {transport: sim}\n"
        "  groups: [{prefix: web, count: 3, os: linux}]\n"
    )
    lab = scenario.lab_file(9)
    assert [h.host_id for h in lab.hosts] == ["web-01", "web-02", "web-03"]
    assert lab.seed == 9
    assert scenario.mission_id(9) == "g-s9"
    assert (
        scenario.digest()
        == parse_scenario(
            "name: g\nlab:\n  seed: 5\n  defaults: {transport: sim}\n"
            "  groups: [{prefix: web, count: 3, os: linux}]\n"
        ).digest()
    )


def test_a_bad_scenario_is_one_clear_line() -> None:
    with pytest.raises(ConfigError, match=r"hosts\[0\]\.os"):
        parse_scenario("name: bad\nlab:\n  hosts: [{host_id: a, os: beos}]\n", source="bad.yaml")
