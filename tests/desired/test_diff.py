"""The diff: desired minus observed, per resource and field, in graph order."""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import pytest

from reaper.desired import Ref, ResourceId, parse_resource
from reaper.desired.compare import content_digest, normalise_mode
from reaper.desired.diff import (
    FieldChange,
    ResourceDiff,
    desired_properties,
    diff_lab,
    diff_resource,
    render_diffs,
    summarize,
)
from reaper.errors import ConfigError
from reaper.lab import parse_lab
from tests.desired.test_kinds import GOOD

REF = Ref("h", "x", "y")


def _diff(data: dict[str, Any], seen: dict[str, Any] | None, **kw: Any) -> ResourceDiff:
    return diff_resource(REF, parse_resource(data, "r"), seen, **kw)


def test_missing_is_add_with_every_declared_field():
    d = _diff({"kind": "package", "name": "nginx", "version": "1.24"}, None)
    assert d.action == "add" and d.changes == (FieldChange("version", None, "1.24"),)
    assert str(d) == "+ h:x/y"


def test_present_and_matching_is_ok():
    assert _diff({"kind": "package", "name": "curl"}, {}).action == "ok"
    service = {"kind": "service", "name": "nginx", "state": "running", "enabled": True}
    assert _diff(service, {"state": "running", "enabled": True}).action == "ok"


def test_a_differing_field_is_a_change_before_to_after():
    service = {"kind": "service", "name": "nginx", "state": "running", "enabled": True}
    d = _diff(service, {"state": "stopped", "enabled": True})
    assert d.action == "change" and d.changes == (FieldChange("state", "stopped", "running"),)
    assert str(d) == "~ h:x/y  state: stopped → running"


def test_absent_is_remove_when_it_exists_and_ok_when_not():
    absent = {"kind": "package", "name": "telnet", "state": "absent"}
    assert _diff(absent, {"version": "0.17"}).action == "remove"
    assert _diff(absent, None).action == "ok"
    assert _diff(absent, {"state": "absent"}).action == "ok"
    assert _diff({"kind": "package", "name": "a"}, {"state": "absent"}).action == "add"


def test_undeclared_fields_are_not_managed():
    assert (
        _diff({"kind": "service", "name": "a"}, {"state": "running", "enabled": False}).action
        == "ok"
    )


@pytest.mark.parametrize(("declared", "seen"), [("0644", "644"), ("644", "0644"), ("0644", 0o644)])
def test_modes_compare_normalised(declared: str, seen: Any):
    f = {"kind": "file", "path": "/etc/motd", "mode": declared}
    assert _diff(f, {"mode": seen}).action == "ok"
    assert _diff(f, {"mode": "600"}).changes == (FieldChange("mode", "600", "0644"),)
    assert normalise_mode(0o100644) == "0644"  # a full st_mode keeps its permission bits


def test_file_content_is_compared_by_sha256():
    f = {"kind": "file", "path": "/etc/motd", "content": "Managed by Reaper\n"}
    digest = hashlib.sha256(b"Managed by Reaper\n").hexdigest()
    assert _diff(f, {"sha256": digest}).action == "ok"
    assert _diff(f, {"sha256": "sha256:" + digest}).action == "ok"
    assert _diff(f, {"content": "Managed by Reaper\n"}).action == "ok"
    d = _diff(f, {"content": "hello\n"})
    assert d.changes == (FieldChange("content", content_digest("hello\n"), "sha256:" + digest),)
    assert "content: sha256:5891b5b522d5… → sha256:" in str(d)  # shown short, never in full


def test_a_template_is_rendered_over_the_hosts_facts_first():
    f = {"kind": "file", "path": "/etc/motd", "template": "I am {{ hostname }}\n"}
    ok = {"content": "I am web-01\n"}
    assert _diff(f, ok, facts={"hostname": "web-01"}).action == "ok"
    assert _diff(f, ok, facts={"hostname": "db-01"}).action == "change"
    with pytest.raises(
        ConfigError, match=r"h:x/y: template does not render: 'hostname' is undefined"
    ):
        _diff(f, ok, facts={})


def test_package_versions_match_as_a_prefix_at_a_component_boundary():
    p = {"kind": "package", "name": "nginx", "version": "1.24"}
    assert _diff(p, {"version": "1.24.0-1ubuntu1"}).action == "ok"
    assert _diff(p, {"version": "1.24"}).action == "ok"
    assert _diff(p, {"version": "1.240"}).action == "change"


def test_group_memberships_are_additive():
    u = {"kind": "user", "name": "ops", "groups": ["sudo"]}
    assert _diff(u, {"groups": ["ops", "sudo"]}).action == "ok"
    assert _diff(u, {"groups": ["ops"]}).changes == (
        FieldChange("groups", ["ops"], ["ops", "sudo"]),
    )


@pytest.mark.parametrize(
    ("kind", "name", "declared", "seen"),
    [
        ("sshd_option", "X11Forwarding", "no", "NO"),
        ("setting", "net.ipv4.tcp_rmem", "4096 87380 6291456", "4096\t87380   6291456"),
        ("setting", "com.apple.screensaver/askForPassword", "1", True),
        ("setting", "com.apple.x/y", "true", "1"),
    ],
)
def test_setting_and_sshd_values_compare_as_loose_text(
    kind: str, name: str, declared: str, seen: Any
):
    assert _diff({"kind": kind, "name": name, "value": declared}, {"value": seen}).action == "ok"


def test_firewall_ports_compare_as_text():
    assert (
        _diff(
            {"kind": "firewall", "port": 22}, {"port": "22", "proto": "tcp", "action": "allow"}
        ).action
        == "ok"
    )


def test_dns_servers_from_hosts_compare_as_their_addresses():
    dns = {"kind": "dns_client", "servers_from": ["dc-01"]}
    assert _diff(dns, {"servers": ["10.0.0.1"]}, addresses={"dc-01": "10.0.0.1"}).action == "ok"
    d = _diff(dns, {"servers": ["192.0.2.1"]}, addresses={"dc-01": "10.0.0.1"})
    assert d.changes == (FieldChange("servers", ["192.0.2.1"], ("10.0.0.1",)),)
    unknown = _diff(dns, {"servers": ["10.0.0.1"]})
    assert unknown.changes[0].after == ("<address of dc-01>",)


def test_secret_references_never_show_in_a_diff():
    d = _diff({"kind": "ad_user", "name": "alice", "password_env": "LAB_ALICE"}, None)
    assert d.action == "add" and all("password" not in c.field for c in d.changes)


def _ad_lab_diff() -> list[ResourceDiff]:
    text = resources.files("reaper.labs").joinpath("ad-lab.yaml").read_text("utf-8")
    lab = parse_lab(text)
    observed = {
        "web-01": {
            ResourceId("package", "nginx"): {"version": "1.24.0"},
            ResourceId("file", "/etc/motd"): {"content": "Managed by Reaper\n", "mode": "644"},
            ResourceId("service", "nginx"): {"state": "stopped", "enabled": True},
        },
        "db-01": {ResourceId("file", "/etc/motd"): {"content": "old\n", "mode": "0644"}},
    }
    return diff_lab(lab.desired, observed, addresses={"dc-01": "10.0.0.1"})


def test_a_lab_diff_is_in_graph_order_and_covers_every_resource():
    diffs = _ad_lab_diff()
    assert len(diffs) == 23
    assert [d.ref for d in diffs][:2] == [
        Ref("dc-01", "windows_feature", "AD-Domain-Services"),
        Ref("dc-01", "ad_domain", "lab.local"),
    ]
    by_ref = {str(d.ref): d for d in diffs}
    assert by_ref["web-01:file//etc/motd"].action == "ok"
    assert by_ref["web-01:package/nginx"].action == "ok"
    assert by_ref["web-01:service/nginx"].action == "change"
    assert by_ref["db-01:file//etc/motd"].changes[0].field == "content"
    assert summarize(diffs) == {"add": 19, "change": 2, "remove": 0, "ok": 2}


def test_render_groups_per_host_with_counts():
    text = render_diffs(_ad_lab_diff())
    assert text.splitlines()[0] == "dc-01: 3 add, 0 change, 0 remove, 0 ok"
    assert "web-01: 4 add, 1 change, 0 remove, 2 ok" in text
    assert "  ~ web-01:service/nginx  state: stopped → running" in text
    assert "  = web-01:file//etc/motd" in text


def test_reported_fields_say_what_discover_must_read_back():
    from reaper.desired import KINDS
    from reaper.desired.diff import reported_fields

    assert reported_fields("file") == ("state", "mode", "owner", "group", "sha256")
    assert reported_fields("service") == ("state", "enabled")
    assert reported_fields("dns_client") == ("servers", "search")
    assert "password_env" not in reported_fields("ad_user")
    assert "name" not in reported_fields("firewall")
    # Everything a diff compares is in the list, for every kind.
    for kind in KINDS:
        data, _ = GOOD[kind]
        compared = desired_properties(parse_resource({"kind": kind, **data}, "r"))
        named = {"sha256" if f == "content" else f for f in compared}
        assert named <= set(reported_fields(kind)), kind


def test_a_memoised_diff_answers_as_a_fresh_one_for_each_host() -> None:
    # Hosts of one role share the resource model, so diffs are memoised by content: the
    # answer must still name the asking host's node, and tell True from 1.
    from reaper.desired import diff as diff_module

    resource = parse_resource({"kind": "setting", "name": "vm.swappiness", "value": "10"}, "r")
    seen = {"value": "60"}
    first = diff_resource(Ref("a", "setting", "vm.swappiness"), resource, seen)
    again = diff_resource(Ref("b", "setting", "vm.swappiness"), resource, dict(seen))
    assert again.ref.host == "b" and again.changes == first.changes
    assert again == diff_module._diff(again.ref, resource, seen, None, None)
    assert diff_resource(REF, resource, {"value": "10"}).action == "ok"
    assert diff_resource(REF, resource, {"value": "60"}).action == "change"
    user = parse_resource({"kind": "user", "name": "ann", "enabled": True}, "r")
    assert diff_resource(REF, user, {"enabled": True}).action == "ok"
    fresh = diff_module._diff(REF, user, {"enabled": 1}, None, None)
    assert diff_resource(REF, user, {"enabled": 1}) == fresh


def test_a_template_is_never_memoised_across_facts() -> None:
    file = {"kind": "file", "path": "/etc/x", "template": "{{ hostname }}"}
    one = _diff(file, {"sha256": content_digest("a")}, facts={"hostname": "a"})
    other = _diff(file, {"sha256": content_digest("a")}, facts={"hostname": "b"})
    assert (one.action, other.action) == ("ok", "change")
