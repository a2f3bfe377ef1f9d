"""Every resource kind: what it accepts, what it refuses, its identity, where it runs."""

from __future__ import annotations

from typing import Any

import pytest

from reaper.desired import KIND_OS, KINDS, os_problem, parse_resource
from reaper.errors import ConfigError

# One valid declaration per kind, and the identity it gets.
GOOD: dict[str, tuple[dict[str, Any], str]] = {
    "package": ({"name": "nginx", "version": "1.24"}, "package/nginx"),
    "service": ({"name": "nginx", "state": "running", "enabled": True}, "service/nginx"),
    "file": ({"path": "/etc/motd", "content": "hi\n", "mode": "644"}, "file//etc/motd"),
    "directory": ({"path": "/srv/app", "owner": "app"}, "directory//srv/app"),
    "user": ({"name": "ops", "groups": ["sudo"], "shell": "/bin/bash"}, "user/ops"),
    "group": ({"name": "ops", "gid": 2000}, "group/ops"),
    "setting": ({"name": "net.ipv4.ip_forward", "value": 0}, "setting/net.ipv4.ip_forward"),
    "sshd_option": ({"name": "X11Forwarding", "value": "no"}, "sshd_option/X11Forwarding"),
    "firewall": ({"port": 22}, "firewall/allow-tcp-22"),
    "dns_client": ({"servers": ["192.0.2.53"]}, "dns_client/default"),
    "package_repository": (
        {
            "name": "nginx",
            "format": "apt",
            "url": "https://nginx.org/packages/debian",
            "suite": "bookworm",
            "key_url": "https://nginx.org/keys/nginx_signing.key",
        },
        "package_repository/nginx",
    ),
    "windows_feature": ({"name": "AD-Domain-Services"}, "windows_feature/AD-Domain-Services"),
    "ad_domain": (
        {"name": "lab.local", "netbios": "LAB", "safe_mode_password_env": "DSRM"},
        "ad_domain/lab.local",
    ),
    "domain_membership": (
        {"domain": "lab.local", "credentials_env": "JOIN"},
        "domain_membership/lab.local",
    ),
    "ad_user": ({"name": "alice", "groups": ["Domain Admins"]}, "ad_user/alice"),
    "ad_group": ({"name": "ops", "scope": "universal"}, "ad_group/ops"),
}

# One invalid declaration per kind, and a piece of the error it gets.
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "package": ({"name": "nginx", "state": "absent", "version": "1"}, "no version"),
    "service": ({"name": "nginx", "state": "started"}, "'running' or 'stopped'"),
    "file": ({"path": "/etc/motd", "content": "a", "template": "b"}, "give one, not both"),
    "directory": ({"path": "srv/app"}, "must be absolute"),
    "user": ({"name": "ops", "uid": -1}, "uid"),
    "group": ({"name": ""}, "name"),
    "setting": ({"name": "x"}, "value: required for setting"),
    "sshd_option": ({"name": "Permit Root", "value": "no"}, "name"),
    "firewall": ({"port": 70000}, "1-65535"),
    "dns_client": ({"servers": ["dc-01"]}, "not an IP address"),
    "package_repository": (
        {"name": "r", "format": "apt", "url": "https://x", "key_url": "https://k"},
        "suite",
    ),
    "windows_feature": ({"name": "AD DS"}, "name"),
    "ad_domain": ({"name": "lab.local", "netbios": "LAB"}, "safe_mode_password_env: required"),
    "domain_membership": ({"domain": "lab.local"}, "credentials_env"),
    "ad_user": ({"name": "alice", "enabled": "maybe"}, "enabled"),
    "ad_group": ({"name": "ops", "scope": "galactic"}, "'global', 'domain_local' or 'universal'"),
}


def test_the_tables_cover_every_kind():
    assert set(GOOD) == set(BAD) == set(KINDS) == set(KIND_OS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_validates_and_names_itself(kind: str):
    data, identity = GOOD[kind]
    resource = parse_resource({"kind": kind, **data}, "roles.r[0]")
    assert str(resource.rid) == identity
    assert resource.kind == kind
    with pytest.raises(Exception, match="frozen"):
        resource.after = ("x/y",)  # type: ignore[misc]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_rejects_a_bad_declaration_in_one_line(kind: str):
    data, expected = BAD[kind]
    with pytest.raises(ConfigError) as info:
        parse_resource({"kind": kind, **data}, "roles.r[3]")
    message = str(info.value)
    assert message.startswith("roles.r[3]") and "\n" not in message
    assert expected in message


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_refuses_unknown_fields(kind: str):
    data, _ = GOOD[kind]
    with pytest.raises(ConfigError, match="unknown field 'colour'"):
        parse_resource({"kind": kind, **data, "colour": "red"}, "roles.r[0]")


def test_which_kind_runs_where_is_data():
    windows_only = {"windows_feature", "ad_domain", "domain_membership", "ad_user", "ad_group"}
    assert {k for k, oses in KIND_OS.items() if oses == {"windows"}} == windows_only
    assert KIND_OS["sshd_option"] == {"linux", "macos"}
    assert KIND_OS["package_repository"] == {"linux"}
    feature = parse_resource({"kind": "windows_feature", "name": "Web-Server"}, "r")
    assert os_problem(feature, "windows") is None
    assert os_problem(feature, "linux") == (
        "windows_feature is not available on linux (runs on: windows)"
    )


def test_a_firewall_rule_is_named_by_what_it_matches_unless_named():
    rule = parse_resource(
        {"kind": "firewall", "port": 5432, "source": "192.0.2.0/24", "action": "allow"}, "r"
    )
    assert str(rule.rid) == "firewall/allow-tcp-5432-from-192.0.2.0/24"
    named = parse_resource({"kind": "firewall", "name": "ssh", "port": 22}, "r")
    assert str(named.rid) == "firewall/ssh"
    assert "name" not in named.properties()
    with pytest.raises(ConfigError, match="not an address or CIDR"):
        parse_resource({"kind": "firewall", "port": 22, "source": "lan"}, "r")
    assert parse_resource({"kind": "firewall", "port": "8000-8100"}, "r").rid.name == (
        "allow-tcp-8000-8100"
    )


def test_file_modes_are_normalised_and_ambiguous_ints_refused():
    assert parse_resource({"kind": "file", "path": "/a", "mode": "644"}, "r").mode == "0644"  # type: ignore[attr-defined]
    assert parse_resource({"kind": "file", "path": "/a", "mode": "0o600"}, "r").mode == "0600"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="quote the mode"):
        parse_resource({"kind": "file", "path": "/a", "mode": 420}, "r")
    with pytest.raises(ConfigError, match="octal digits"):
        parse_resource({"kind": "file", "path": "/a", "mode": "0999"}, "r")


def test_file_notify_names_services_and_templates_parse_at_load():
    f = parse_resource({"kind": "file", "path": "/a", "content": "x", "notify": "nginx"}, "r")
    assert f.notify == ("service/nginx",)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="not a service"):
        parse_resource({"kind": "file", "path": "/a", "notify": ["package/nginx"]}, "r")
    with pytest.raises(ConfigError, match="template does not parse"):
        parse_resource({"kind": "file", "path": "/a", "template": "{% if %}"}, "r")
    with pytest.raises(ConfigError, match="absent file has no content"):
        parse_resource({"kind": "file", "path": "/a", "state": "absent", "content": "x"}, "r")


def test_paths_and_modes_are_checked_per_os():
    posix = parse_resource({"kind": "file", "path": "/etc/motd", "mode": "0644"}, "r")
    win = parse_resource({"kind": "file", "path": "C:\\motd.txt"}, "r")
    assert os_problem(posix, "linux") is None and os_problem(win, "windows") is None
    assert "not a Windows path" in (os_problem(posix, "windows") or "")
    assert "Windows path on a linux host" in (os_problem(win, "linux") or "")
    win_mode = parse_resource({"kind": "file", "path": "C:\\a", "mode": "0644"}, "r")
    assert "ACLs" in (os_problem(win_mode, "windows") or "")


@pytest.mark.parametrize(
    ("os", "name", "value_type", "problem"),
    [
        ("linux", "net.ipv4.ip_forward", None, None),
        ("linux", "com.apple.screensaver/askForPassword", None, "sysctl key"),
        ("linux", "net.ipv4.ip_forward", "dword", "not a linux setting type"),
        ("windows", "HKLM\\SOFTWARE\\Vendor\\Name", "dword", None),
        ("windows", "net.ipv4.ip_forward", None, "registry value"),
        ("windows", "HKLM\\SOFTWARE\\Vendor\\Name", "int", "valid: dword, expand_string"),
        ("macos", "com.apple.screensaver/askForPassword", "int", None),
        ("macos", "/Library/Preferences/com.apple.alf/globalstate", None, None),
        ("macos", "askForPassword", None, "defaults domain/key"),
    ],
)
def test_settings_are_validated_per_os(
    os: str, name: str, value_type: str | None, problem: str | None
):
    data: dict[str, Any] = {"kind": "setting", "name": name, "value": "1"}
    if value_type:
        data["type"] = value_type
    found = os_problem(parse_resource(data, "r"), os)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_posix_account_fields_are_refused_on_windows():
    user = parse_resource({"kind": "user", "name": "ops", "shell": "/bin/bash", "uid": 1001}, "r")
    assert os_problem(user, "linux") is None
    assert os_problem(user, "windows") == "uid, shell: POSIX account fields, not set on Windows"
    group = parse_resource({"kind": "group", "name": "ops", "gid": 5}, "r")
    assert os_problem(group, "windows") == "gid: a POSIX group field, not set on Windows"
    assert os_problem(parse_resource({"kind": "user", "name": "ops"}, "r"), "windows") is None


def test_setting_values_read_as_text():
    assert parse_resource({"kind": "setting", "name": "a.b", "value": 0}, "r").value == "0"  # type: ignore[attr-defined]
    assert parse_resource({"kind": "setting", "name": "a.b", "value": True}, "r").value == "1"  # type: ignore[attr-defined]


def test_dns_client_takes_servers_or_hosts_not_both():
    both = {"kind": "dns_client", "servers": ["192.0.2.1"], "servers_from": ["dc-01"]}
    with pytest.raises(ConfigError, match="exactly one"):
        parse_resource(both, "r")
    with pytest.raises(ConfigError, match="exactly one"):
        parse_resource({"kind": "dns_client"}, "r")


def test_dnf_repository_without_a_key_must_say_gpgcheck_false():
    repo = {"kind": "package_repository", "name": "epel", "format": "dnf", "url": "https://e"}
    with pytest.raises(ConfigError, match="signing key"):
        parse_resource(repo, "r")
    assert parse_resource({**repo, "gpgcheck": False}, "r").rid.name == "epel"


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        ("ad_user", {"name": "alice", "password": "hunter2"}, "password"),
        ("ad_domain", {"name": "lab.local", "netbios": "LAB", "safe_mode_password": "x"},
         "safe_mode_password"),
        ("domain_membership", {"domain": "lab.local", "credentials": "x"}, "credentials"),
        ("user", {"name": "ops", "password": "x"}, "password"),
        ("package_repository", {"name": "r", "format": "apt", "url": "https://x", "token": "t"},
         "token"),
    ],
)  # fmt: skip
def test_inline_secrets_are_refused_with_the_env_field_to_use(
    kind: str, data: dict[str, Any], field: str
):
    with pytest.raises(ConfigError) as info:
        parse_resource({"kind": kind, **data}, "roles.dc[2]")
    message = str(info.value)
    assert f"{field}: secrets are never written inline" in message
    assert f"`{field}_env`" in message
    for value in ("hunter2", "'x'", "'t'"):
        assert value not in message  # never echoed


def test_env_references_must_be_variable_names():
    with pytest.raises(ConfigError, match="not an environment variable name"):
        parse_resource({"kind": "ad_user", "name": "a", "password_env": "my pass"}, "r")


def test_secret_references_are_not_compared_properties():
    user = parse_resource({"kind": "ad_user", "name": "a", "password_env": "A_PW"}, "r")
    assert "password_env" not in user.properties()
