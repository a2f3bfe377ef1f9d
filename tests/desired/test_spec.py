"""Labs resolved per host: schema 2 roles, schema 1 profiles, inventory groups, the examples."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from reaper.desired import HostSpec, Ref, ResourceBase, ResourceId, parse_resource, resolve_desired
from reaper.errors import ConfigError
from reaper.inventory import parse_inventory
from reaper.inventory.load import lab_with_inventory
from reaper.lab import LabFile, load_lab, parse_lab
from reaper.models import Stage

SHARED = Path("/work/shared/examples")


def _shipped(name: str) -> LabFile:
    text = resources.files("reaper.labs").joinpath(name).read_text("utf-8")
    return parse_lab(text, source=name)


def parse_lab_resource(data: dict[str, object]) -> ResourceBase:
    return parse_resource(data, "r")


def _ids(lab: LabFile, host: str) -> list[str]:
    return [str(r.rid) for r in lab.desired.resources(host)]


def test_the_ad_lab_loads_with_every_host_and_resource():
    lab = _shipped("ad-lab.yaml")
    assert lab.schema_version == 2 and lab.mission_id == "ad-lab"
    assert [h.host_id for h in lab.hosts] == [
        "dc-01",
        "srv-01",
        "ws-01",
        "db-01",
        "web-01",
        "mac-01",
    ]
    assert _ids(lab, "dc-01") == [
        "windows_feature/AD-Domain-Services",
        "ad_domain/lab.local",
        "ad_user/alice",
    ]
    assert (
        _ids(lab, "srv-01")
        == _ids(lab, "ws-01")
        == [
            "dns_client/default",
            "domain_membership/lab.local",
        ]
    )
    base = ["package/curl", "user/ops", "file//etc/motd", "setting/net.ipv4.ip_forward"]
    assert _ids(lab, "db-01") == [
        *base,
        "package/postgresql",
        "service/postgresql",
        "firewall/allow-tcp-5432-from-192.0.2.0/24",
    ]
    assert _ids(lab, "web-01") == [
        *base,
        "package/nginx",
        "file//etc/nginx/conf.d/app.conf",
        "service/nginx",
    ]
    assert _ids(lab, "mac-01") == ["package/wget", "setting/com.apple.screensaver/askForPassword"]
    assert lab.desired.hosts["web-01"].roles == ("linux-base", "web")
    assert len(lab.desired.graph) == 23
    assert lab.desired.origins[Ref("web-01", "service", "nginx")] == "roles.web[2]"


def test_the_lockout_lab_loads():
    lab = _shipped("lockout-lab.yaml")
    assert _ids(lab, "app-01") == [
        "package/auditd",
        "service/auditd",
        "sshd_option/PermitRootLogin",
        "sshd_option/X11Forwarding",
    ]
    option = lab.desired.resource(Ref("app-01", "sshd_option", "PermitRootLogin"))
    assert option.properties() == {"value": "no"}
    assert lab.hosts[0].user == "root"


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared examples are not on this machine")
@pytest.mark.parametrize("name", ["ad-lab.yaml", "lockout-lab.yaml"])
def test_the_shipped_examples_are_the_shared_ones_as_they_are(name: str):
    shipped = resources.files("reaper.labs").joinpath(name).read_text("utf-8")
    assert shipped == (SHARED / name).read_text("utf-8")
    assert load_lab(SHARED / name).desired.hosts


def test_a_schema_1_lab_means_the_baseline_profile_of_each_os():
    lab = parse_lab(
        "defaults: {transport: sim}\n"
        "hosts: [{host_id: l, os: linux}, {host_id: w, os: windows}, {host_id: m, os: macos}]\n"
    )
    assert lab.schema_version == 1 and lab.goal is Stage.BASELINED
    for host, os in (("l", "linux"), ("w", "windows"), ("m", "macos")):
        assert lab.desired.hosts[host].roles == (f"{os}-baseline",)
        assert lab.desired.resources(host)
    assert "sshd_option/PermitRootLogin" in _ids(lab, "l")
    assert lab.desired.origins[Ref("l", "package", "auditd")] == "profile linux-baseline[0]"


def test_the_schema_1_goal_picks_how_much_of_the_profile():
    lab = parse_lab("goal: prepared\nhosts: [{host_id: l, os: linux, transport: sim}]\n")
    assert {r.kind for r in lab.desired.resources("l")} == {"package"}
    discovered = lab.model_copy(update={"goal": Stage.DISCOVERED})
    assert discovered.desired.resources("l") == ()  # not the cached prepared state
    assert discovered.desired.hosts["l"].roles == ()


def test_schema_1_refuses_roles():
    with pytest.raises(ConfigError, match=r"roles: needs schema_version: 2"):
        parse_lab("roles: {web: []}\nhosts: [{host_id: a, os: linux}]\n")
    with pytest.raises(ConfigError, match=r"hosts\[0\].roles: needs schema_version: 2"):
        parse_lab("hosts: [{host_id: a, os: linux, roles: [web]}]\n")


LAB2 = """schema_version: 2
roles:
  web:
    - {kind: package, name: nginx}
    - {kind: service, name: nginx}
  dc:
    - {kind: windows_feature, name: AD-Domain-Services}
hosts:
"""


def _lab2_error(hosts: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_lab(LAB2 + hosts, source="lab.yaml")
    message = str(info.value)
    assert message.startswith("lab.yaml: ") and "\n" not in message
    return message


def test_an_unknown_role_guesses_and_lists_the_roles():
    message = _lab2_error(
        "  - {host_id: a, os: linux, roles: [web]}\n  - {host_id: b, os: linux, roles: [wbe]}\n"
    )
    assert message == (
        "lab.yaml: hosts[1].roles[0] (b): unknown role 'wbe' (did you mean 'web'?); "
        "defined roles: web, dc"
    )


def test_a_resource_on_an_os_it_does_not_run_on_is_a_load_error():
    message = _lab2_error("  - {host_id: db-01, os: linux, roles: [dc]}\n")
    assert message == (
        "lab.yaml: hosts[0] (db-01, linux): roles.dc[0] windows_feature/AD-Domain-Services: "
        "windows_feature is not available on linux (runs on: windows)"
    )


def test_a_resource_error_inside_a_lab_names_the_role_position():
    with pytest.raises(ConfigError) as info:
        parse_lab(
            "schema_version: 2\nroles:\n  web:\n    - {kind: package, name: a}\n"
            "    - {kind: package, name: b}\n    - {kind: sevice, name: nginx}\n"
            "hosts: [{host_id: a, os: linux, roles: [web]}]\n",
            source="lab.yaml",
        )
    assert str(info.value).startswith(
        "lab.yaml: roles.web[2]: unknown kind 'sevice' (did you mean 'service'?); valid kinds:"
    )


def test_two_roles_declaring_one_resource_differently_is_an_error():
    roles = {
        "a": (parse_lab_resource({"kind": "package", "name": "curl"}),),
        "b": (parse_lab_resource({"kind": "package", "name": "curl", "version": "8"}),),
        "c": (parse_lab_resource({"kind": "package", "name": "curl"}),),
    }
    same = resolve_desired([HostSpec("h", "linux", ("a", "c"))], roles)
    assert [str(r.rid) for r in same.resources("h")] == ["package/curl"]  # identical: once
    with pytest.raises(
        ConfigError, match=r"package/curl is declared differently by roles.a\[0\] and roles.b\[0\]"
    ):
        resolve_desired([HostSpec("h", "linux", ("a", "b"))], roles)


def test_a_host_without_roles_declares_nothing():
    lab = parse_lab(LAB2 + "  - {host_id: a, os: linux, transport: sim}\n")
    assert lab.desired.resources("a") == ()


def test_the_desired_state_survives_a_planner_override_copy():
    lab = _shipped("ad-lab.yaml")
    copy = lab.model_copy(update={"planner": lab.planner.model_copy(update={"kind": "llm"})})
    assert copy.desired is lab.desired  # same hosts, roles and goal: the cache holds


def test_connection_settings_leave_roles_and_groups_out():
    lab = parse_lab(LAB2 + "  - {host_id: a, os: linux, roles: [web], transport: sim}\n")
    assert lab.hosts[0].connection().model_dump(exclude_unset=True) == {"transport": "sim"}


INVENTORY = """
[web]
web-01 ansible_host=10.0.0.5
[db]
db-01 ansible_host=10.0.0.6
[monitoring]
web-01
[linux:children]
web
db
"""


def test_inventory_groups_become_the_hosts_groups_by_depth_then_name():
    inv = parse_inventory(INVENTORY)
    groups = {h.host_id: h.groups for h in inv.hosts}
    assert groups == {"web-01": ["linux", "monitoring", "web"], "db-01": ["linux", "db"]}
    assert inv.desired.hosts["web-01"].roles == ("linux-baseline",)  # schema 1: the profile


def test_an_inventory_group_maps_to_the_role_of_the_same_name():
    roles_lab = {
        "schema_version": 2,
        "lab_type": "web",
        "defaults": {"transport": "ssh", "user": "deploy"},
        "roles": {
            "web": [{"kind": "package", "name": "nginx"}],
            "linux": [{"kind": "package", "name": "curl"}],
        },
    }
    lab = lab_with_inventory(roles_lab, parse_inventory(INVENTORY), source="roles.yaml")
    # `monitoring` names no role: an Ansible group that is not a Reaper role is ignored.
    assert lab.desired.hosts["web-01"].roles == ("linux", "web")
    assert _ids(lab, "web-01") == ["package/curl", "package/nginx"]
    assert _ids(lab, "db-01") == ["package/curl"]
    web = lab.hosts[0]
    assert web.address == "10.0.0.5" and web.user == "deploy"  # lab defaults fill the gaps


def test_a_lab_listing_hosts_cannot_take_an_inventory_too():
    lab = {"schema_version": 2, "roles": {}, "hosts": [{"host_id": "a", "os": "linux"}]}
    with pytest.raises(ConfigError, match=r"roles\.yaml: the lab lists its own hosts"):
        lab_with_inventory(lab, parse_inventory(INVENTORY), source="roles.yaml")


def test_resolve_desired_is_usable_without_a_lab_file():
    state = resolve_desired([HostSpec("m", "macos")], None, goal=Stage.BASELINED)
    assert state.hosts["m"].get(ResourceId("sshd_option", "PermitRootLogin")) is not None
    assert [ref for ref, _ in state] == list(state.graph.order)


def test_a_schema_2_lab_round_trips_through_json():
    lab = _shipped("ad-lab.yaml")
    again = LabFile.model_validate_json(lab.model_dump_json())
    assert again.roles == lab.roles
    assert again.desired.graph.order == lab.desired.graph.order


def test_an_inline_secret_in_a_lab_is_refused_without_echoing_it():
    text = (
        LAB2.replace(
            "  dc:\n",
            "  dc:\n    - {kind: ad_user, name: alice, password: Winter2026!}\n",
        )
        + "  - {host_id: dc-01, os: windows, roles: [dc]}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_lab(text, source="lab.yaml")
    message = str(info.value)
    assert message == (
        "lab.yaml: roles.dc[0] (ad_user/alice): password: secrets are never written inline; "
        "put it in an environment variable and name it with `password_env`"
    )
    assert "Winter2026" not in message


def test_a_cycle_in_a_lab_file_is_a_load_error_naming_it():
    text = (
        "schema_version: 2\nroles:\n  web:\n"
        "    - {kind: service, name: nginx, after: ['db-01:service/postgresql']}\n"
        "  db:\n    - {kind: service, name: postgresql, after: ['web-01:service/nginx']}\n"
        "hosts:\n  - {host_id: web-01, os: linux, roles: [web]}\n"
        "  - {host_id: db-01, os: linux, roles: [db]}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_lab(text, source="lab.yaml")
    assert str(info.value) == (
        "lab.yaml: roles.web[0]: dependency cycle: web-01:service/nginx -> "
        "db-01:service/postgresql -> web-01:service/nginx"
    )


def test_caseless_names_spelt_two_ways_are_one_resource_declared_twice():
    roles = {
        "a": (
            parse_lab_resource({"kind": "sshd_option", "name": "PermitRootLogin", "value": "no"}),
        ),
        "b": (
            parse_lab_resource({"kind": "sshd_option", "name": "permitrootlogin", "value": "yes"}),
        ),
    }
    with pytest.raises(ConfigError) as info:
        resolve_desired([HostSpec("h", "linux", ("a", "b"))], roles)
    assert str(info.value) == (
        "hosts[0] (h): sshd_option/permitrootlogin (roles.b[0]) and sshd_option/PermitRootLogin "
        "(roles.a[0]) are one resource: sshd_option names ignore case; spell it one way"
    )
    # Case matters for packages: two names, two resources.
    pkgs = {
        "a": (parse_lab_resource({"kind": "package", "name": "Foo"}),),
        "b": (parse_lab_resource({"kind": "package", "name": "foo"}),),
    }
    assert len(resolve_desired([HostSpec("h", "linux", ("a", "b"))], pkgs).resources("h")) == 2


def test_resolve_desired_refuses_a_host_twice():
    with pytest.raises(ConfigError, match=r"hosts\[1\]: duplicate host_id 'a'"):
        resolve_desired([HostSpec("a", "linux"), HostSpec("a", "macos")], None)


def test_a_copy_with_other_hosts_resolves_again():
    lab = parse_lab(LAB2 + "  - {host_id: a, os: linux, roles: [web], transport: sim}\n")
    assert list(lab.desired.hosts) == ["a"]
    other = lab.model_copy(update={"hosts": [lab.hosts[0].model_copy(update={"host_id": "b"})]})
    assert list(other.desired.hosts) == ["b"]
    assert list(lab.desired.hosts) == ["a"]


def test_a_lab_built_in_code_takes_resource_models():
    lab = _shipped("ad-lab.yaml")
    again = LabFile(schema_version=2, roles=lab.roles, hosts=lab.hosts)
    assert again.roles == lab.roles
    assert again.desired.graph.order == lab.desired.graph.order
