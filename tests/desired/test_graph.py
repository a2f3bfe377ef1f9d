"""The dependency graph: explicit and implicit edges, cycles and dangling references at load,
a deterministic order, and the ready / blocked queries the converger will ask."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest

from reaper.desired import HostSpec, Ref, parse_ref, parse_resources, resolve_desired
from reaper.desired.graph import ResourceGraph
from reaper.errors import ConfigError
from reaper.lab import parse_lab


def _ad_graph() -> ResourceGraph:
    text = resources.files("reaper.labs").joinpath("ad-lab.yaml").read_text("utf-8")
    return parse_lab(text).desired.graph


def _graph(hosts: dict[str, list[dict[str, Any]]], os: str = "linux") -> ResourceGraph:
    roles = {h: parse_resources(items, f"roles.{h}") for h, items in hosts.items()}
    specs = [HostSpec(h, os, (h,)) for h in hosts]
    return resolve_desired(specs, roles).graph


def _error(hosts: dict[str, list[dict[str, Any]]], os: str = "linux") -> str:
    with pytest.raises(ConfigError) as info:
        _graph(hosts, os)
    return str(info.value)


R = parse_ref


def test_the_ad_lab_member_joins_after_the_domain_and_its_dns():
    g = _ad_graph()
    member = R("srv-01:domain_membership/lab.local")
    assert g.prerequisites(member) == (
        R("dc-01:ad_domain/lab.local"),
        R("srv-01:dns_client/default"),
    )
    assert [e.why for e in g.edges(member)] == ["after", "its DNS client"]
    ws = R("ws-01:domain_membership/lab.local")
    assert R("dc-01:ad_domain/lab.local") in g.prerequisites(ws)


def test_the_ad_lab_web_server_waits_for_its_database_and_package():
    g = _ad_graph()
    nginx = R("web-01:service/nginx")
    assert set(g.prerequisites(nginx)) == {R("db-01:service/postgresql"), R("web-01:package/nginx")}
    assert g.prerequisites(R("db-01:service/postgresql")) == (R("db-01:package/postgresql"),)
    assert g.prerequisites(R("dc-01:ad_user/alice")) == (R("dc-01:ad_domain/lab.local"),)
    assert g.prerequisites(R("dc-01:ad_domain/lab.local")) == (
        R("dc-01:windows_feature/AD-Domain-Services"),
    )


def test_order_is_topological_and_deterministic():
    g = _ad_graph()
    order = g.order
    assert len(order) == len(set(order)) == len(g)
    position = {node: i for i, node in enumerate(order)}
    for node in g.nodes:
        for before in g.prerequisites(node):
            assert position[before] < position[node]
    assert order == _ad_graph().order  # the same lab, the same order, every time
    assert order[:3] == (
        R("dc-01:windows_feature/AD-Domain-Services"),
        R("dc-01:ad_domain/lab.local"),
        R("dc-01:ad_user/alice"),
    )
    assert g.for_host("web-01")[-1] == R("web-01:service/nginx")


def test_waves_group_by_depth():
    waves = _ad_graph().waves
    assert R("dc-01:windows_feature/AD-Domain-Services") in waves[0]
    assert R("dc-01:ad_domain/lab.local") in waves[1]
    assert R("srv-01:domain_membership/lab.local") in waves[2]
    assert sum(len(w) for w in waves) == 23


def test_ready_and_blocked_by():
    g = _ad_graph()
    member = R("srv-01:domain_membership/lab.local")
    feature, domain = R("dc-01:windows_feature/AD-Domain-Services"), R("dc-01:ad_domain/lab.local")
    dns = R("srv-01:dns_client/default")
    assert g.blocked_by(member, done=set()) == (domain, dns)
    assert g.blocked_by(member, done={domain, dns}) == ()
    ready = g.ready(done=set())
    assert feature in ready and dns in ready and domain not in ready and member not in ready
    assert domain in g.ready(done={feature})
    assert domain not in g.ready(done={feature}, busy={domain})
    assert g.downstream(domain) == (
        R("dc-01:ad_user/alice"),
        member,
        R("ws-01:domain_membership/lab.local"),
    )
    assert g.dependents(feature) == (domain,)


def test_render_lists_the_order_with_what_each_waits_for():
    text = _ad_graph().render()
    lines = text.splitlines()
    assert lines[0] == " 1  dc-01:windows_feature/AD-Domain-Services"
    assert (
        lines[1] == " 2  dc-01:ad_domain/lab.local  after dc-01:windows_feature/AD-Domain-Services"
    )
    assert (
        " 5  srv-01:domain_membership/lab.local  after dc-01:ad_domain/lab.local, "
        "srv-01:dns_client/default"
    ) in lines
    assert len(lines) == 23


def test_a_cycle_across_hosts_is_named():
    message = _error(
        {
            "web-01": [{"kind": "service", "name": "nginx", "after": ["db-01:service/postgresql"]}],
            "db-01": [{"kind": "service", "name": "postgresql", "after": ["web-01:service/nginx"]}],
        }
    )
    assert message == (
        "roles.web-01[0]: dependency cycle: web-01:service/nginx -> db-01:service/postgresql"
        " -> web-01:service/nginx"
    )


def test_a_cycle_through_implicit_edges_is_named():
    # The package waits for the service, which implicitly waits for its package.
    message = _error({"h": [{"kind": "package", "name": "nginx", "after": ["service/nginx"]},
                            {"kind": "service", "name": "nginx"}]})  # fmt: skip
    assert message.endswith(
        "dependency cycle: h:package/nginx -> h:service/nginx -> h:package/nginx"
    )


def test_a_resource_after_itself_is_refused():
    message = _error({"h": [{"kind": "package", "name": "a", "after": ["package/a"]}]})
    assert message == "roles.h[0] (h:package/a): after names the resource itself"


def test_dangling_references_are_named_with_a_guess():
    message = _error(
        {
            "web-01": [{"kind": "service", "name": "nginx", "after": ["db-01:service/postgres"]}],
            "db-01": [{"kind": "service", "name": "postgresql"}],
        }
    )
    assert message == (
        "roles.web-01[0] (web-01:service/nginx): after 'db-01:service/postgres' names no "
        "declared resource (did you mean 'db-01:service/postgresql'?)"
    )
    nginx = {"kind": "service", "name": "nginx", "after": ["db-1:service/pg"]}
    message = _error({"web-01": [nginx], "db-01": []})
    assert "names host 'db-1', which is not in the lab (did you mean 'db-01'?)" in message


def test_notify_of_an_undeclared_service_dangles():
    message = _error(
        {"h": [{"kind": "file", "path": "/etc/a", "content": "", "notify": ["nginx"]}]}
    )
    assert "notify 'service/nginx' names no declared resource" in message


def test_servers_from_must_name_lab_hosts():
    message = _error({"m": [{"kind": "dns_client", "servers_from": ["dc-1"]}]}, os="windows")
    assert "servers_from names host 'dc-1', which is not in the lab" in message


def test_implicit_edges_within_a_host():
    g = _graph(
        {
            "h": [
                {"kind": "package_repository", "name": "nginx", "format": "dnf",
                 "url": "https://r", "gpgcheck": False},
                {"kind": "package", "name": "nginx"},
                {"kind": "group", "name": "web"},
                {"kind": "user", "name": "www", "groups": ["web", "undeclared"]},
                {"kind": "directory", "path": "/etc/nginx"},
                {"kind": "file", "path": "/etc/nginx/nginx.conf", "content": "x", "owner": "www",
                 "group": "web", "notify": ["nginx"]},
                {"kind": "service", "name": "nginx"},
            ]
        }
    )  # fmt: skip

    def why(node: str) -> dict[str, str]:
        return {str(e.before): e.why for e in g.edges(R(node))}

    assert why("h:package/nginx") == {"h:package_repository/nginx": "the host's repositories"}
    assert why("h:user/www") == {"h:group/web": "its group"}
    assert why("h:file//etc/nginx/nginx.conf") == {
        "h:group/web": "its group",
        "h:user/www": "its owner",
        "h:directory//etc/nginx": "its parent directory",
    }
    assert why("h:service/nginx") == {
        "h:package/nginx": "its package",
        "h:file//etc/nginx/nginx.conf": "notified by it",
    }


def test_ad_objects_follow_their_domain_and_groups():
    g = _graph(
        {
            "dc": [
                {"kind": "ad_domain", "name": "lab.local", "netbios": "LAB",
                 "safe_mode_password_env": "DSRM"},
                {"kind": "ad_group", "name": "ops"},
                {"kind": "ad_user", "name": "bob", "groups": ["ops"]},
            ],
            "dc2": [
                {"kind": "ad_user", "name": "carol", "domain": "lab.local"},
                {"kind": "domain_membership", "domain": "other.local", "credentials_env": "J"},
            ],
        },
        os="windows",
    )  # fmt: skip
    assert g.prerequisites(R("dc:ad_group/ops")) == (R("dc:ad_domain/lab.local"),)
    assert set(g.prerequisites(R("dc:ad_user/bob"))) == {
        R("dc:ad_domain/lab.local"),
        R("dc:ad_group/ops"),
    }
    assert g.prerequisites(R("dc2:ad_user/carol")) == (R("dc:ad_domain/lab.local"),)
    # A domain no host declares is outside the lab: nothing to wait for.
    assert g.prerequisites(R("dc2:domain_membership/other.local")) == ()


def test_a_same_host_reference_is_written_without_the_host():
    g = _graph(
        {
            "h": [
                {"kind": "package", "name": "a"},
                {"kind": "package", "name": "b", "after": ["package/a"]},
            ]
        }
    )
    assert g.prerequisites(Ref("h", "package", "b")) == (Ref("h", "package", "a"),)


def test_order_prefers_declaration_order_among_ready_resources():
    g = _graph({"h": [{"kind": "package", "name": "z", "after": ["package/y"]},
                      {"kind": "package", "name": "a"},
                      {"kind": "package", "name": "y"}]})  # fmt: skip
    assert [n.name for n in g.order] == ["a", "y", "z"]


def test_unblocked_by_is_the_incremental_ready_step():
    g = _ad_graph()
    feature, domain = R("dc-01:windows_feature/AD-Domain-Services"), R("dc-01:ad_domain/lab.local")
    dns = R("srv-01:dns_client/default")
    assert g.unblocked_by(feature, done={feature}) == (domain,)
    # The member needs its DNS client too: the domain alone does not unblock it.
    assert R("srv-01:domain_membership/lab.local") not in g.unblocked_by(
        domain, done={feature, domain}
    )
    assert g.unblocked_by(domain, done={feature, domain, dns}) == (
        R("dc-01:ad_user/alice"),
        R("srv-01:domain_membership/lab.local"),
    )
