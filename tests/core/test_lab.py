"""Lab files: what an operator writes, and one clear line for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from reaper.errors import ConfigError
from reaper.lab import load_lab, parse_lab
from reaper.models import MissionStatus, Stage
from reaper.policy import PRESETS

GOOD = """
schema_version: 1
mission_id: lab-1
lab_type: baseline-lab
goal: discovered
policy: cautious
settings: {max_failures: 5, stall_after_s: 12}
defaults: {transport: ssh, user: admin, key_file: ~/.ssh/lab}
hosts:
  - {host_id: web-01, os: linux, address: 10.0.0.5}
  - host_id: dc-01
    os: windows
    transport: sim
    password_env: DC_PASSWORD
    sim: {faults: [{kind: flaky, times: 2}], latency_s: [0.1, 0.2]}
"""


def test_a_good_lab_becomes_a_mission():
    lab = parse_lab(GOOD)
    state = lab.to_state()
    assert state.mission_id == "lab-1" and state.goal is Stage.DISCOVERED
    assert state.status is MissionStatus.RUNNING
    web, dc = state.hosts["web-01"], state.hosts["dc-01"]
    assert web.connection.transport == "ssh" and web.connection.user == "admin"  # defaults
    assert dc.connection.transport == "sim"  # the host's own value wins over defaults
    assert dc.connection.password_env == "DC_PASSWORD"  # a reference, never a value
    assert dc.connection.sim is not None and dc.connection.sim.faults[0].times == 2
    assert web.max_failures == dc.max_failures == 5
    assert state.settings["stall_after_s"] == 12
    assert lab.resolved_policy() == PRESETS["cautious"]


def test_mission_id_is_made_up_when_absent():
    lab = parse_lab("lab_type: My Lab!\nhosts: [{host_id: a, os: linux, transport: sim}]\n")
    one, two = lab.to_state(), lab.to_state()
    assert one.mission_id.startswith("my-lab-") and one.mission_id != two.mission_id
    assert lab.to_state("given").mission_id == "given"


BAD = {
    "invalid YAML": ("hosts: [{host_id: a, os: linux\n", "invalid YAML (line"),
    "not a mapping": ("- just\n- a list\n", "YAML mapping"),
    "no hosts": ("lab_type: x\nhosts: []\n", "hosts"),
    "unknown OS": ("hosts: [{host_id: a, os: solaris}]\n", "hosts[0].os"),
    "unknown transport": (
        "hosts: [{host_id: a, os: linux, transport: telnet}]\n",
        "hosts[0].transport",
    ),
    "duplicate host id": (
        "hosts: [{host_id: a, os: linux}, {host_id: a, os: macos}]\n",
        "duplicate host_id 'a'",
    ),
    "bad host id": ("hosts: [{host_id: 'a b', os: linux}]\n", "hosts[0].host_id"),
    "bad mission id": ("mission_id: '-bad id'\nhosts: [{host_id: a, os: linux}]\n", "mission_id"),
    "unknown field": ("hostz: []\nhosts: [{host_id: a, os: linux}]\n", "hostz"),
    "future schema": ("schema_version: 3\nhosts: [{host_id: a, os: linux}]\n", "schema_version 3"),
    "unknown goal": ("goal: conquered\nhosts: [{host_id: a, os: linux}]\n", "goal"),
    "bad sim fault": (
        "hosts: [{host_id: a, os: linux, sim: {faults: [{kind: meteor}]}}]\n",
        "hosts[0].sim.faults[0].kind",
    ),
    "defaults not a mapping": ("defaults: [1]\nhosts: [{host_id: a, os: linux}]\n", "defaults"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_lab_is_one_line_naming_the_file_and_field(case: str):
    text, expected = BAD[case]
    with pytest.raises(ConfigError) as info:
        parse_lab(text, source="lab.yaml")
    message = str(info.value)
    assert message.startswith("lab.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_unknown_policy_preset_is_refused_with_the_file_named():
    with pytest.raises(ConfigError, match=r"lab\.yaml: policy: unknown policy 'yolo'"):
        parse_lab("policy: yolo\nhosts: [{host_id: a, os: linux}]\n", source="lab.yaml")


def test_missing_and_unreadable_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such lab file"):
        load_lab(tmp_path / "nope.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read lab file"):
        load_lab(binary)
    with pytest.raises(ConfigError, match="cannot read lab file"):
        load_lab(tmp_path)  # a directory


def test_a_host_is_simulated_only_when_the_lab_says_so():
    with pytest.raises(ConfigError) as err:
        parse_lab("hosts: [{host_id: a, os: linux, address: 10.0.0.5}]\n", source="lab.yaml")
    assert str(err.value).startswith("lab.yaml: hosts[0] (a): no transport;")
    assert "transport: sim to simulate it" in str(err.value)
    assert parse_lab("hosts: [{host_id: a, os: linux, transport: sim}]\n").hosts[0].transport == (
        "sim"
    )
    by_default = parse_lab("defaults: {transport: ssh}\nhosts: [{host_id: a, os: linux}]\n")
    assert by_default.hosts[0].transport == "ssh"
