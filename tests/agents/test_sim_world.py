"""The simulated world: every resource kind converges through its `ensure_*` (check mode
changes nothing, a second ensure is unchanged, a drift shows in discover), discover's
`resources` diff as ok after an ensure, packages have per-distro names, and each fault is a
condition with a right fix and wrong fixes that do not help."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reaper.actions import CATALOG, validate_params
from reaper.agents.base import ActionOutcome
from reaper.agents.transports.sim import SimRunner
from reaper.agents.transports.sim_services import BAD_CONFIG_MARKER
from reaper.agents.transports.sim_world import HostWorld
from reaper.desired import KINDS, diff_lab, diff_resource, parse_ref, profile
from reaper.desired.diff import reported_fields
from reaper.errors import ConfigError
from reaper.lab import load_lab, parse_lab
from reaper.lockout import lockout
from reaper.models import (
    HostConnection,
    MissionState,
    ResultStatus,
    SimSettings,
    SimWorldSettings,
)
from tests.agents.helpers import MISSION, task

# Fixed distros, running only the base services (the seeded facts may run more).
BASE = {"services": ["cron", "rsyslog", "sshd"]}
DEBIAN = {"os": {"id": "debian", "version": "12", "pretty_name": "Debian GNU/Linux 12"}, **BASE}
UBUNTU = {"os": {"id": "ubuntu", "version": "22.04", "pretty_name": "Ubuntu 22.04.4 LTS"}, **BASE}
ROCKY = {"os": {"id": "rocky", "version": "9.3", "pretty_name": "Rocky Linux 9.3"}, **BASE}
DC = "dc-01"


@dataclass
class Lab:
    """A SimRunner and the way each host is reached (facts and world conditions)."""

    runner: SimRunner = field(default_factory=lambda: SimRunner(seed=3))
    conns: dict[str, HostConnection] = field(default_factory=dict)
    n: int = 0

    def host(self, host_id: str, facts: dict[str, Any] | None = None, **world: Any) -> None:
        sim = SimSettings(facts=facts or {}, world=SimWorldSettings(**world) if world else None)
        self.conns[host_id] = HostConnection(transport="sim", sim=sim)

    async def run(self, host_id: str, action: str, params: dict[str, Any]) -> ActionOutcome:
        self.n += 1
        conn = self.conns.setdefault(host_id, HostConnection(transport="sim"))
        return await self.runner.run(task(self.n, host_id, action, params=params), host_id, conn)

    async def ensure(
        self, host_id: str, os: str, resource: dict[str, Any], *, check: bool = False
    ) -> ActionOutcome:
        params = {"resource": resource, "check_mode": check}
        return await self.run(host_id, f"{os}.ensure_{resource['kind']}", params)

    async def seen(self, host_id: str, os: str, resource: dict[str, Any]) -> Any:
        out = await self.run(host_id, f"{os}.discover", {"resources": [resource]})
        assert out.status is ResultStatus.SUCCESS
        (value,) = out.data["resources"].values()
        return value

    def world(self, host_id: str) -> HostWorld:
        state = self.runner.host_state(MISSION, host_id)
        assert state is not None and state.world is not None
        return state.world

    def diff(self, host_id: str, resource: dict[str, Any], seen: Any) -> str:
        model = KINDS[resource["kind"]].model_validate(resource)
        addresses = {h: self.world(h).address for h in self.conns if self._has_world(h)}
        return diff_resource(model.rid.on(host_id), model, seen, addresses=addresses).action

    def _has_world(self, host_id: str) -> bool:
        state = self.runner.host_state(MISSION, host_id)
        return state is not None and state.world is not None


def _ok(out: ActionOutcome, result: str) -> None:
    assert out.status is ResultStatus.SUCCESS, (out.error_code, out.stderr_tail)
    assert out.data["result"] == result, out.data


def _failed(out: ActionOutcome, code: str, text: str) -> None:
    assert out.status is ResultStatus.ERROR and out.error_code == code, (out.summary, out.data)
    assert text in out.stderr_tail, out.stderr_tail
    assert set(out.data) == {"resource", "before"}


async def _dc(lab: Lab) -> None:
    lab.host(DC)
    await lab.ensure(DC, "windows", {"kind": "windows_feature", "name": "AD-Domain-Services"})
    out = await lab.ensure(DC, "windows", AD_DOMAIN)
    _ok(out, "changed")
    assert out.data["reboot_required"] is True


AD_DOMAIN = {"kind": "ad_domain", "name": "lab.local", "netbios": "LAB",
             "safe_mode_password_env": "DSRM"}  # fmt: skip
JOIN = {"kind": "domain_membership", "domain": "lab.local", "credentials_env": "JOIN"}
TO_DC = {"kind": "dns_client", "servers_from": [DC]}

Drift = Callable[[HostWorld], None]
# (host, os, facts, resource, setup resources, a drift of the world)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], list[dict[str, Any]], Drift]] = [
    ("l1", "linux", ROCKY, {"kind": "package", "name": "nginx"}, [],
     lambda w: w.packages.pop("nginx")),
    ("l1", "linux", ROCKY, {"kind": "service", "name": "nginx", "state": "running",
                            "enabled": True}, [{"kind": "package", "name": "nginx"}],
     lambda w: w.services["nginx"].update(running=False)),
    ("l1", "linux", DEBIAN, {"kind": "file", "path": "/etc/motd", "content": "Managed\n",
                             "mode": "0640", "owner": "root", "group": "adm"}, [],
     lambda w: w.files["/etc/motd"].update(content="edited by hand\n")),
    ("l1", "linux", DEBIAN, {"kind": "directory", "path": "/srv/app", "mode": "0750"}, [],
     lambda w: w.files["/srv/app"].update(mode="0777")),
    ("l1", "linux", DEBIAN, {"kind": "user", "name": "ops", "groups": ["sudo"],
                             "shell": "/bin/bash"}, [],
     lambda w: w.users["ops"].update(shell="/bin/sh")),
    ("l1", "linux", DEBIAN, {"kind": "group", "name": "app", "gid": 2001}, [],
     lambda w: w.groups.pop("app")),
    ("l1", "linux", DEBIAN, {"kind": "setting", "name": "net.ipv4.ip_forward", "value": "1"}, [],
     lambda w: w.settings["net.ipv4.ip_forward"].update(value="0")),
    ("l1", "linux", DEBIAN, {"kind": "sshd_option", "name": "MaxAuthTries", "value": "3"}, [],
     lambda w: w.sshd.update(maxauthtries="6")),
    ("l1", "linux", DEBIAN, {"kind": "firewall", "port": 5432, "source": "192.0.2.0/24"}, [],
     lambda w: w.firewall.clear()),
    ("l1", "linux", DEBIAN, {"kind": "dns_client", "servers": ["192.0.2.53"],
                             "search": ["lab.local"]}, [],
     lambda w: w.dns["default"].update(servers=["10.0.0.2"])),
    ("l1", "linux", DEBIAN, {"kind": "package_repository", "name": "pgdg", "format": "apt",
                             "url": "https://apt.postgresql.org/pub/repos/apt",
                             "suite": "bookworm-pgdg",
                             "key_url": "https://www.postgresql.org/media/keys/ACCC4CF8.asc"},
     [], lambda w: w.repos["pgdg"].update(enabled=False)),
    ("w1", "windows", {}, {"kind": "windows_feature", "name": "Web-Server"}, [],
     lambda w: w.features.clear()),
    ("w1", "windows", {}, {"kind": "file", "path": "C:\\Temp\\motd.txt", "content": "hi\r\n",
                           "owner": "Administrators"}, [],
     lambda w: w.files["C:\\Temp\\motd.txt"].update(content="")),
    ("w1", "windows", {}, {"kind": "user", "name": "svc-web", "groups": ["Users"],
                           "enabled": True}, [],
     lambda w: w.users["svc-web"].update(enabled=False)),
    ("w1", "windows", {}, {"kind": "package", "name": "git"}, [],
     lambda w: w.packages.clear()),
    ("w1", "windows", {}, {"kind": "service", "name": "Spooler", "state": "stopped",
                           "enabled": False}, [],
     lambda w: w.services["Spooler"].update(running=True)),
    ("w1", "windows", {}, {"kind": "setting", "name": "HKLM\\SOFTWARE\\Lab\\Mode",
                           "value": "1", "type": "dword"}, [],
     lambda w: w.settings.clear()),
    (DC, "windows", {}, {"kind": "ad_user", "name": "alice", "groups": ["Domain Admins"],
                         "password_env": "ALICE"}, [],
     lambda w: w.domain["users"]["alice"].update(enabled=False) if w.domain else None),
    (DC, "windows", {}, {"kind": "ad_group", "name": "Web Admins", "scope": "universal"}, [],
     lambda w: w.domain["groups"].pop("Web Admins") if w.domain else None),
    ("m1", "macos", {}, {"kind": "service", "name": "nginx", "state": "running"},
     [{"kind": "package", "name": "nginx"}],
     lambda w: w.services["nginx"].update(running=False)),
    ("m1", "macos", {}, {"kind": "file", "path": "/usr/local/etc/lab.conf", "content": "x\n",
                         "mode": "0600"}, [],
     lambda w: w.files["/usr/local/etc/lab.conf"].update(mode="0644")),
    ("m1", "macos", {}, {"kind": "package", "name": "wget"}, [],
     lambda w: w.packages.pop("wget")),
    ("m1", "macos", {}, {"kind": "setting", "name": "com.apple.screensaver/askForPassword",
                         "value": "1", "type": "int"}, [],
     lambda w: w.settings.clear()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("host", "os", "facts", "resource", "setup", "drift"),
    CASES,
    ids=[f"{c[1]}-{c[3]['kind']}" for c in CASES],
)
async def test_each_kind_converges_idempotently_with_check_mode_and_drift(
    host: str,
    os: str,
    facts: dict[str, Any],
    resource: dict[str, Any],
    setup: list[dict[str, Any]],
    drift: Drift,
) -> None:
    lab = Lab()
    if host == DC:
        await _dc(lab)
    else:
        lab.host(host, facts)
    for prior in setup:
        assert (await lab.ensure(host, os, prior)).status is ResultStatus.SUCCESS
    before = await lab.seen(host, os, resource)
    assert lab.diff(host, resource, before) in ("add", "change")
    snapshot = lab.world(host).to_data()

    check = await lab.ensure(host, os, resource, check=True)
    _ok(check, "would_change")
    assert check.data["before"] == before and check.data["after"] is not None
    assert lab.world(host).to_data() == snapshot  # check mode changed nothing

    out = await lab.ensure(host, os, resource)
    _ok(out, "changed")
    assert out.data["resource"] == str(KINDS[resource["kind"]].model_validate(resource).rid)
    assert out.data["after"] == check.data["after"]
    seen = await lab.seen(host, os, resource)
    assert seen == out.data["after"] and lab.diff(host, resource, seen) == "ok"
    assert set(seen) == set(reported_fields(resource["kind"]))  # the fields the diff reads

    _ok(await lab.ensure(host, os, resource), "unchanged")
    drift(lab.world(host))
    assert lab.diff(host, resource, await lab.seen(host, os, resource)) != "ok"
    _ok(await lab.ensure(host, os, resource), "changed")
    assert lab.diff(host, resource, await lab.seen(host, os, resource)) == "ok"


async def test_the_domain_and_a_member_converge_across_hosts() -> None:
    lab = Lab()
    await _dc(lab)
    lab.host("srv-01")
    assert await lab.seen(DC, "windows", AD_DOMAIN) == {
        "netbios": "LAB",
        "functional_level": "WinThreshold",
    }
    _ok(await lab.ensure("srv-01", "windows", TO_DC), "changed")
    dc_before = lab.world(DC).to_data()
    _ok(await lab.ensure("srv-01", "windows", JOIN, check=True), "would_change")
    assert lab.world(DC).to_data() == dc_before  # a check touches no peer either
    out = await lab.ensure("srv-01", "windows", JOIN)
    _ok(out, "changed")
    assert out.data["reboot_required"] is True
    assert lab.world(DC).domain is not None and lab.world(DC).domain["computers"] == ["SRV-01"]
    assert lab.diff("srv-01", JOIN, await lab.seen("srv-01", "windows", JOIN)) == "ok"
    assert lab.diff("srv-01", TO_DC, await lab.seen("srv-01", "windows", TO_DC)) == "ok"
    _ok(await lab.ensure("srv-01", "windows", JOIN), "unchanged")
    facts = await lab.run("srv-01", "windows.discover", {})
    assert facts.data["computer"]["domain"] == "LAB.LOCAL"


# -- packages per distro -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "name", "pulled"),
    [(DEBIAN, "postgresql", "postgresql-15"), (UBUNTU, "postgresql", "postgresql-14"),
     (DEBIAN, "nginx", "nginx-common"), (ROCKY, "nginx", "nginx-core"),
     (ROCKY, "httpd", "httpd-core"), (ROCKY, "auditd", "audit")],
)  # fmt: skip
async def test_packages_pull_their_distro_dependencies(
    facts: dict[str, Any], name: str, pulled: str
) -> None:
    lab = Lab()
    lab.host("l1", facts)
    _ok(await lab.ensure("l1", "linux", {"kind": "package", "name": name}), "changed")
    assert pulled in lab.world("l1").packages


@pytest.mark.parametrize(
    ("facts", "name", "text"),
    [(DEBIAN, "httpd", "E: Unable to locate package httpd"),
     (ROCKY, "apache2", "No match for argument: apache2"),
     (ROCKY, "postgresql-15", "Error: Unable to find a match: postgresql-15")],
)  # fmt: skip
async def test_a_name_the_distro_does_not_have_is_not_found(
    facts: dict[str, Any], name: str, text: str
) -> None:
    lab = Lab()
    lab.host("l1", facts)
    _failed(await lab.ensure("l1", "linux", {"kind": "package", "name": name}), "PACKAGE_NOT_FOUND",
            text)  # fmt: skip
    out = await lab.ensure("l1", "linux", {"kind": "package", "name": "nginx", "version": "9.9"})
    _failed(out, "PACKAGE_NOT_FOUND", "9.9")


# -- faults: conditions with a right fix ---------------------------------------------------------

PG = {"kind": "package", "name": "postgresql"}


async def test_disk_full_is_fixed_by_cleanup_not_by_retry_or_reboot() -> None:
    lab = Lab()
    lab.host("l1", DEBIAN, disk_free_mb=0)
    diag = await lab.run("l1", "linux.diagnose", {"topics": ["disk"]})
    assert "disk / is 100% full" in diag.data["findings"]
    _failed(await lab.ensure("l1", "linux", PG), "DISK_FULL", "enough free space")
    await lab.run("l1", "linux.reboot", {})
    _failed(await lab.ensure("l1", "linux", PG), "DISK_FULL", "/var/cache/apt/archives/")
    file = {"kind": "file", "path": "/etc/motd", "content": "x\n"}
    _failed(await lab.ensure("l1", "linux", file), "DISK_FULL", "No space left on device")
    check = await lab.run("l1", "linux.cleanup", {"check_mode": True})
    assert check.data["check_mode"] is True and lab.world("l1").cond["disk_free_mb"] == 0
    freed = await lab.run("l1", "linux.cleanup", {})
    assert freed.data["targets"]["package_cache"]["bytes"] > 0
    _ok(await lab.ensure("l1", "linux", PG), "changed")


async def test_a_held_lock_clears_on_retry_and_diagnose_names_its_holder() -> None:
    lab = Lab()
    lab.host("l1", DEBIAN, pm_lock_held_by="unattended-upgr (pid 812)", pm_lock_attempts=2)
    diag = await lab.run("l1", "linux.diagnose", {"topics": ["packages"]})
    assert "package manager busy: 812 unattended-upgr" in diag.data["findings"]
    out = await lab.ensure("l1", "linux", PG)
    _failed(out, "PM_LOCKED", "It is held by process 812 (unattended-upgr)")
    assert out.retriable is True
    check = await lab.ensure("l1", "linux", PG, check=True)  # a check does not wait the lock out
    _failed(check, "PM_LOCKED", "lock-frontend")
    cleaned = await lab.run("l1", "linux.cleanup", {"targets": ["package_cache"]})  # wrong fix
    assert "skipped" in cleaned.stdout_tail and cleaned.data["targets"] == {}
    _failed(await lab.ensure("l1", "linux", PG), "PM_LOCKED", "(unattended-upgr)")
    _ok(await lab.ensure("l1", "linux", PG), "changed")


async def test_an_unreachable_repository_needs_a_mirror() -> None:
    lab = Lab()
    lab.host("l1", DEBIAN, repo_unreachable=True)
    _failed(await lab.ensure("l1", "linux", PG), "REPO_UNREACHABLE",
            "Could not connect to deb.debian.org")  # fmt: skip
    await lab.run("l1", "linux.cleanup", {})
    _failed(await lab.ensure("l1", "linux", PG), "REPO_UNREACHABLE", "Unable to fetch")
    diag = await lab.run("l1", "linux.diagnose", {"topics": ["packages"]})
    assert "the distribution's package repository is unreachable" in diag.data["findings"]
    mirror = {"kind": "package_repository", "name": "mirror", "format": "apt",
              "url": "http://mirror.example/debian", "suite": "bookworm", "gpgcheck": False,
              "key_url": "http://mirror.example/key.asc"}  # fmt: skip
    _ok(await lab.ensure("l1", "linux", mirror), "changed")
    _ok(await lab.ensure("l1", "linux", PG), "changed")


async def test_a_bad_config_stops_the_service_until_the_file_is_fixed() -> None:
    lab = Lab()
    lab.host("l1", DEBIAN)
    _ok(await lab.ensure("l1", "linux", {"kind": "package", "name": "nginx"}), "changed")
    nginx = {"kind": "service", "name": "nginx", "state": "running"}
    assert await lab.seen("l1", "linux", nginx) == {"state": "running", "enabled": True}
    conf = {"kind": "file", "path": "/etc/nginx/conf.d/app.conf", "notify": ["nginx"],
            "content": "server { listen 8080;\n"}  # fmt: skip
    out = await lab.ensure("l1", "linux", conf)
    _failed(out, "CONFIG_INVALID", 'nginx: [emerg] unexpected end of file, expecting "}"')
    assert "Job for nginx.service failed" in out.stderr_tail
    assert (await lab.seen("l1", "linux", nginx))["state"] == "stopped"  # worse: it is down
    _failed(await lab.ensure("l1", "linux", nginx), "CONFIG_INVALID", "test failed")  # retry
    diag = await lab.run("l1", "linux.diagnose", {"topics": ["service"], "service": "nginx"})
    assert "service nginx is failed" in diag.data["findings"]
    assert "[emerg]" in diag.data["report"]["service"]
    _ok(await lab.ensure("l1", "linux", {**conf, "content": "server { listen 8080; }\n"}),
        "changed")  # fmt: skip
    _ok(await lab.ensure("l1", "linux", nginx), "changed")
    facts = await lab.run("l1", "linux.discover", {})
    assert {"proto": "tcp", "port": 8080, "process": "nginx"} in facts.data["listening_ports"]


async def test_a_port_in_use_is_freed_by_stopping_its_holder() -> None:
    lab = Lab()
    lab.host("l1", ROCKY, port_in_use={80: "apache2"})
    nginx = {"kind": "service", "name": "nginx", "state": "running"}
    _failed(await lab.ensure("l1", "linux", nginx), "MISSING_DEPENDENCY",
            "Unit nginx.service not found")  # fmt: skip
    _ok(await lab.ensure("l1", "linux", {"kind": "package", "name": "nginx"}), "changed")
    out = await lab.ensure("l1", "linux", nginx)
    _failed(out, "PORT_IN_USE", "bind() to 0.0.0.0:80 failed (98: Address already in use)")
    _failed(await lab.ensure("l1", "linux", nginx), "PORT_IN_USE", "Address already in use")
    diag = await lab.run("l1", "linux.diagnose", {"topics": ["network"]})
    assert '0.0.0.0:80 0.0.0.0:* users:(("apache2"))' in diag.data["report"]["network"]
    stop = {"kind": "service", "name": "apache2", "state": "stopped"}
    _ok(await lab.ensure("l1", "linux", stop), "changed")
    _ok(await lab.ensure("l1", "linux", nginx), "changed")


async def test_a_join_needs_dns_pointing_at_the_dc() -> None:
    lab = Lab()
    await _dc(lab)
    lab.host("srv-01")
    text = "The specified domain either does not exist or could not be contacted"
    _failed(await lab.ensure("srv-01", "windows", JOIN), "DNS_MISCONFIGURED", text)
    public = {"kind": "dns_client", "servers": ["8.8.8.8"]}  # a wrong fix
    _ok(await lab.ensure("srv-01", "windows", public), "changed")
    _failed(await lab.ensure("srv-01", "windows", JOIN), "DNS_MISCONFIGURED", text)
    diag = await lab.run(
        "srv-01", "windows.diagnose", {"topics": ["network"], "target": "lab.local"}
    )
    assert "lab.local does not resolve" in diag.data["findings"]
    _ok(await lab.ensure("srv-01", "windows", TO_DC), "changed")
    _ok(await lab.ensure("srv-01", "windows", JOIN), "changed")


async def test_clock_skew_breaks_kerberos_until_the_time_service_runs() -> None:
    lab = Lab()
    await _dc(lab)
    lab.host("srv-01", clock_offset_s=600)
    _ok(await lab.ensure("srv-01", "windows", TO_DC), "changed")
    text = "The time at the Primary Domain Controller is different"
    _failed(await lab.ensure("srv-01", "windows", JOIN), "CLOCK_SKEW", text)
    await lab.run("srv-01", "windows.reboot", {})  # a wrong fix: the clock stays off
    _failed(await lab.ensure("srv-01", "windows", JOIN), "CLOCK_SKEW", text)
    diag = await lab.run("srv-01", "windows.diagnose", {"topics": ["time"]})
    assert "clock is +600s off and w32time is not running" in diag.data["findings"]
    w32time = {"kind": "service", "name": "w32time", "state": "running", "enabled": True}
    _ok(await lab.ensure("srv-01", "windows", w32time), "changed")
    _ok(await lab.ensure("srv-01", "windows", JOIN), "changed")


async def test_a_pending_reboot_blocks_features_until_a_reboot() -> None:
    lab = Lab()
    lab.host("w1", pending_reboot=True)
    feature = {"kind": "windows_feature", "name": "Web-Server"}
    _failed(await lab.ensure("w1", "windows", feature), "REBOOT_PENDING", "a restart is pending")
    _failed(await lab.ensure("w1", "windows", feature), "REBOOT_PENDING", "Restart the computer")
    assert "a reboot is pending" in (await lab.run("w1", "windows.diagnose", {})).data["findings"]
    await lab.run("w1", "windows.reboot", {})
    _ok(await lab.ensure("w1", "windows", feature), "changed")


async def test_missing_dependencies_name_what_is_missing() -> None:
    lab = Lab()
    lab.host(DC)
    _failed(await lab.ensure(DC, "windows", AD_DOMAIN), "MISSING_DEPENDENCY",
            "'Install-ADDSForest' is not recognized")  # fmt: skip
    alice = {"kind": "ad_user", "name": "alice"}
    no_dc = "Unable to find a default server with Active Directory Web Services running"
    _failed(await lab.ensure(DC, "windows", alice), "MISSING_DEPENDENCY", no_dc)
    lab.host("l1", ROCKY)
    ops = {"kind": "user", "name": "ops", "groups": ["sudo"]}  # RHEL's admins are `wheel`
    _failed(await lab.ensure("l1", "linux", ops), "MISSING_DEPENDENCY",
            "usermod: group 'sudo' does not exist")  # fmt: skip
    owned = {"kind": "file", "path": "/srv/x", "content": "", "owner": "app"}
    _failed(await lab.ensure("l1", "linux", owned), "MISSING_DEPENDENCY", "invalid user: 'app'")


# -- the world's own contract ----------------------------------------------------------------


async def test_worlds_are_deterministic_and_results_never_alias_them() -> None:
    one, two = Lab(), Lab()
    for lab in (one, two):
        lab.host("l1", port_in_use={8080: "apache2"})
        out = await lab.ensure("l1", "linux", {"kind": "package", "name": "curl"})
        assert out.status is ResultStatus.SUCCESS
    assert one.world("l1").to_data() == two.world("l1").to_data()
    copy = one.world("l1").copy()
    assert copy == one.world("l1") and copy.packages is not one.world("l1").packages
    data = json.loads(json.dumps(one.world("l1").to_data()))
    assert HostWorld.from_data(data) == one.world("l1")  # its JSON form round-trips
    out = await one.ensure("l1", "linux", {"kind": "user", "name": "ops"})
    out.data["after"]["groups"].append("root")
    assert one.world("l1").users["ops"]["groups"] == []


async def test_discover_reports_declared_resources_and_the_problems_of_bad_ones() -> None:
    lab = Lab()
    lab.host("l1", DEBIAN)
    resources = [{"kind": "package", "name": "sudo"}, {"kind": "package", "name": "nginx"},
                 {"kind": "service", "name": "sshd"}, {"kind": "nope", "name": "x"},
                 {"kind": "file", "path": "relative"}]  # fmt: skip
    out = await lab.run("l1", "linux.discover", {"resources": resources})
    assert out.data["resources"]["package/nginx"] is None
    assert out.data["resources"]["package/sudo"]["state"] == "present"
    assert out.data["resources"]["service/sshd"] == {"state": "running", "enabled": True}
    assert set(out.data["resource_problems"]) == {"3", "4"}
    assert "os" in out.data and "kernel" in out.data  # the facts are still there


async def test_bad_ensure_params_and_actions_of_another_os_are_refused() -> None:
    lab = Lab()
    out = await lab.run("l1", "linux.ensure_package", {"resource": {"kind": "service"}})
    assert out.error_code == "INVALID_PARAMS"
    out = await lab.run("l1", "linux.ensure_ad_domain", {"resource": AD_DOMAIN})
    assert out.error_code == "UNKNOWN_ACTION"


async def test_the_shipped_ad_lab_converges_in_graph_order_and_then_diffs_ok() -> None:
    lab_file = load_lab(Path(__file__).parents[2] / "reaper" / "labs" / "ad-lab.yaml")
    runner, n = SimRunner(seed=lab_file.seed), 0
    conns = {h.host_id: h.connection() for h in lab_file.hosts}
    oses = {h.host_id: h.os for h in lab_file.hosts}

    async def run(host: str, action: str, params: dict[str, Any]) -> ActionOutcome:
        nonlocal n
        n += 1
        return await runner.run(task(n, host, action, params=params), host, conns[host])

    for host in conns:  # discover first, as a converger does: every host has its world
        declared = [r.model_dump(mode="json") for r in lab_file.desired.resources(host)]
        await run(host, f"{oses[host]}.discover", {"resources": declared})
    for ref, resource in lab_file.desired:
        params = {"resource": resource.model_dump(mode="json")}
        out = await run(ref.host, f"{oses[ref.host]}.ensure_{resource.kind}", params)
        assert out.status is ResultStatus.SUCCESS, (str(ref), out.error_code, out.stderr_tail)
    observed: dict[str, Any] = {}
    for host in conns:
        declared = [r.model_dump(mode="json") for r in lab_file.desired.resources(host)]
        out = await run(host, f"{oses[host]}.discover", {"resources": declared})
        observed[host] = {parse_ref(k, host=host).rid: v for k, v in out.data["resources"].items()}
    addresses = {}
    for host in conns:
        state = runner.host_state(MISSION, host)
        assert state is not None and state.world is not None
        addresses[host] = state.world.address
    diffs = diff_lab(lab_file.desired, observed, addresses=addresses)
    assert {d.action for d in diffs} == {"ok"}, [str(d) for d in diffs if d.action != "ok"]


def test_world_conditions_are_declared_in_the_lab_and_survive_the_store() -> None:
    lab_file = parse_lab(
        "schema_version: 2\ndefaults: {transport: sim}\nroles: {r: [{kind: package, name: curl}]}\n"
        "hosts:\n  - {host_id: a, os: linux, roles: [r], sim: {faults: [{kind: flaky, times: 1}],"
        " world: {disk_free_mb: 0, port_in_use: {80: apache2}, clock_offset_s: 600}}}\n"
    )
    state = lab_file.to_state()
    back = MissionState.model_validate_json(state.model_dump_json())
    sim = back.hosts["a"].connection.sim
    assert sim is not None and sim.world is not None and sim.faults[0].kind == "flaky"
    assert sim.world.port_in_use == {80: "apache2"} and sim.world.disk_free_mb == 0
    with pytest.raises(ConfigError, match="disk_fre"):
        parse_lab(
            "hosts:\n  - {host_id: a, os: linux, transport: sim, sim: {world: {disk_fre: 0}}}\n"
        )


async def test_the_bad_config_marker_fails_any_service_that_reads_the_file() -> None:
    lab = Lab()
    lab.host("l1", ROCKY)
    _ok(await lab.ensure("l1", "linux", {"kind": "package", "name": "nginx"}), "changed")
    bad = {"kind": "file", "path": "/etc/nginx/nginx.conf", "content": f"{BAD_CONFIG_MARKER};\n"}
    _ok(await lab.ensure("l1", "linux", bad), "changed")  # nginx is not running: no restart
    nginx = {"kind": "service", "name": "nginx", "state": "running"}
    out = await lab.ensure("l1", "linux", nginx)
    _failed(out, "CONFIG_INVALID", f'nginx: [emerg] unknown directive "{BAD_CONFIG_MARKER}"')
    check = await lab.ensure("l1", "linux", nginx, check=True)
    _failed(check, "CONFIG_INVALID", "[emerg]")  # a check meets the same failure
    _ok(await lab.ensure("l1", "linux", {**bad, "content": "events {}\n"}), "changed")
    _ok(await lab.ensure("l1", "linux", nginx), "changed")


@pytest.mark.parametrize(
    ("os", "facts"),
    [("linux", DEBIAN), ("linux", UBUNTU), ("linux", ROCKY),
     ("linux", {"os": {"id": "opensuse-leap", "version": "15.5"}}), ("windows", {}), ("macos", {})],
)  # fmt: skip
async def test_the_shipped_profiles_converge_on_every_simulated_distro(
    os: str, facts: dict[str, Any]
) -> None:
    lab = Lab()
    lab.host("h", facts)
    conn = HostConnection(transport="sim", user="root")
    for resource in profile(os):
        action = f"{os}.ensure_{resource.kind}"
        params, error = validate_params(CATALOG[action], {"resource": resource.model_dump()})
        assert error is None
        if lockout(CATALOG[action].verb, params, conn, os) is not None:
            continue  # what the guard refuses is the policy's business, not the world's
        out = await lab.run("h", action, params)
        assert out.status is ResultStatus.SUCCESS, (str(resource.rid), out.stderr_tail)
        seen = await lab.seen("h", os, params["resource"])
        assert lab.diff("h", params["resource"], seen) == "ok", str(resource.rid)
