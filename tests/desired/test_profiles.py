"""The shipped profiles: today's baseline as resources, valid on their OS, without lockouts."""

from __future__ import annotations

import pytest

from reaper.agents.oscode.linux_baseline import BANNER, SYSCTL_DESIRED
from reaper.desired import os_problem, profile, profile_for_goal
from reaper.desired.graph import build_graph
from reaper.models import Stage


@pytest.mark.parametrize("os", ["linux", "windows", "macos"])
def test_each_profile_is_valid_on_its_os_and_acyclic(os: str):
    resources = profile(os)
    assert resources
    assert all(os_problem(r, os) is None for r in resources)
    graph = build_graph([("h", resources)])
    assert len(graph.order) == len(resources)


@pytest.mark.parametrize("os", ["linux", "macos"])
def test_the_baseline_keeps_a_root_key_connection(os: str):
    sshd = {r.rid.name: r.properties()["value"] for r in profile(os) if r.kind == "sshd_option"}
    assert sshd["PermitRootLogin"] == "prohibit-password"  # never `no`: that locks root out
    assert sshd["PasswordAuthentication"] == "no"


def test_the_linux_profile_matches_the_hard_coded_baseline():
    by_id = {str(r.rid): r for r in profile("linux")}
    for key, value in SYSCTL_DESIRED.items():
        assert by_id[f"setting/{key}"].properties() == {"value": value}
    assert by_id["file//etc/issue.net"].properties()["content"] == BANNER
    assert {"package/auditd", "package/chrony", "service/auditd", "service/chrony"} <= set(by_id)
    drop = by_id["firewall/default-inbound"]
    assert drop.after == ("firewall/ssh",)  # the default drop never shadows the ssh rule


def test_goals_pick_parts_of_the_profile():
    assert profile_for_goal("linux", Stage.BASELINED) == profile("linux")
    assert {r.kind for r in profile_for_goal("linux", Stage.PREPARED)} == {"package"}
    assert profile_for_goal("windows", Stage.PREPARED) == ()  # see the profiles' docstring
    assert profile_for_goal("macos", Stage.DISCOVERED) == ()
    assert profile_for_goal("linux", Stage.NEW) == ()
