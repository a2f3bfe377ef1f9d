"""`reaper sim drift`: a hand edit on a simulated host's stored world, which the next plan
shows and the next run fixes alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reaper.agents.transports.sim_drift import DRIFT_KINDS, drift
from reaper.agents.transports.sim_ensure import ensure
from reaper.agents.transports.sim_facts import facts_for
from reaper.agents.transports.sim_world import build_world
from reaper.desired.diff import diff_resource
from reaper.desired.parse import parse_resource
from reaper.errors import ConfigError

from .conftest import Run

LAB = str(Path(__file__).resolve().parents[2] / "reaper" / "labs" / "ad-lab.yaml")


def _plan(cli: Run) -> dict[str, str]:
    rc, out, err = cli("plan", LAB, "--json")
    assert rc == 0, err
    hosts = json.loads(out)["hosts"]
    return {f"{h}:{e['resource']}": e["action"] for h, es in hosts.items() for e in es}


def test_a_drift_shows_on_the_plan_and_the_next_run_fixes_it_alone(cli: Run) -> None:
    rc, _, err = cli("run", LAB, "--no-live", "--no-input", "--mission-id", "first")
    assert rc == 0, err
    rc, out, err = cli("sim", "drift", LAB, "web-01", "service/nginx")
    assert rc == 0, err
    assert out.startswith("drifted web-01:service/nginx: stopped nginx")
    rc, _, err = cli("sim", "drift", LAB, "db-01", "file//etc/motd", "--json")
    assert rc == 0, err
    plan = _plan(cli)
    assert {r for r, action in plan.items() if action != "ok"} == {
        "web-01:service/nginx",
        "db-01:file//etc/motd",
    }
    assert plan["web-01:service/nginx"] == "change"
    rc, out, err = cli("run", LAB, "--no-live", "--no-input", "--mission-id", "second", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["converges"] and report["resource_totals"] == {"ok": 23}
    changed = {h: row["resource_counts"]["changed"] for h, row in report["hosts"].items()}
    assert changed == {"web-01": 1, "db-01": 1, "dc-01": 0, "srv-01": 0, "ws-01": 0, "mac-01": 0}
    assert report["hosts"]["web-01"]["resources"]["service/nginx"]["change"] == "changed"
    assert set(_plan(cli).values()) == {"ok"}


def test_bad_drifts_are_one_line_and_change_nothing(cli: Run) -> None:
    rc, _, err = cli("sim", "drift", LAB, "web-01", "service/nginx")
    assert rc == 2 and "no stored world for web-01" in err and "reaper run" in err
    rc, _, err = cli("run", LAB, "--no-live", "--no-input")
    assert rc == 0, err
    rc, _, err = cli("sim", "drift", LAB, "web-01", "service/ngnix")
    assert rc == 2 and "did you mean 'service/nginx'?" in err and err.count("\n") == 1
    rc, _, err = cli("sim", "drift", LAB, "web-09", "service/nginx")
    assert rc == 2 and "no host 'web-09'" in err
    rc, _, err = cli("sim", "drift", LAB, "dc-01", "ad_domain/lab.local")
    assert rc == 2 and "no hand edit for kind 'ad_domain'" in err and "package" in err
    rc, _, err = cli("sim", "drift", LAB, "db-01", "package/curl")
    assert rc == 0, err
    rc, _, err = cli("sim", "drift", LAB, "db-01", "package/curl")
    assert rc == 2 and "is not installed: nothing to remove" in err
    assert {r for r, action in _plan(cli).items() if action != "ok"} == {"db-01:package/curl"}


DECLARED = {
    "package": {"kind": "package", "name": "jq"},
    "service": {"kind": "service", "name": "sshd", "state": "running"},
    "file": {"kind": "file", "path": "/etc/motd", "content": "hi\n"},
    "directory": {"kind": "directory", "path": "/srv/app"},
    "user": {"kind": "user", "name": "bench"},
    "group": {"kind": "group", "name": "bench"},
    "setting": {"kind": "setting", "name": "net.ipv4.ip_forward", "value": "0"},
    "sshd_option": {"kind": "sshd_option", "name": "X11Forwarding", "value": "no"},
    "firewall": {"kind": "firewall", "port": 8080, "action": "allow"},
}


@pytest.mark.parametrize("kind", DRIFT_KINDS)
def test_each_kind_drifts_from_its_declaration(kind: str) -> None:
    facts = facts_for("linux", "h1", seed=3)
    world = build_world("linux", facts, None)
    resource = parse_resource(DECLARED[kind], "t")
    done = ensure(world, resource, peers={}, facts=facts, host_id="h1", check=False)
    assert done.status.value == "success", done.summary

    def action() -> str:
        observed = ensure(world, resource, peers={}, facts=facts, host_id="h1", check=True)
        return diff_resource(
            resource.rid.on("h1"), resource, observed.data["before"], facts=facts, addresses={}
        ).action

    assert action() == "ok"
    assert drift(world, resource)
    assert action() != "ok"


def test_a_kind_without_a_hand_edit_is_refused() -> None:
    world = build_world("windows", facts_for("windows", "w1", seed=3), None)
    resource = parse_resource({"kind": "windows_feature", "name": "Web-Server"}, "t")
    with pytest.raises(ConfigError, match="no hand edit for kind 'windows_feature'"):
        drift(world, resource)
