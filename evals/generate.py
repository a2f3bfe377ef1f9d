"""Desired-state scenarios from the sim world's fault catalog (docs/sim-world.md), seeded.

`catalog()` lists each fault with the world condition that causes it, the resources it
bites, the right fix and the wrong ones (documentation for reports and for people writing
prompts; the scorer only reads the world). `generate(seed, count)` builds labs from it:
hosts, roles, which fault on which host, cross-host `after` edges, resources already in
place (partially converged, drift) and no-fault controls. The shipped files in
evals/scenarios/desired/ are `generate(SHIPPED_SEED, ...)` written out; any other seed gives
held-out scenarios never shipped, so neither a prompt nor a scripted model can be tuned to
the files:  `reaper eval --generated SEED:COUNT` (see evals/cli.py).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from evals.scenario import Scenario, parse_scenario

__all__ = ["SHIPPED_SEED", "Fault", "catalog", "generate", "write_shipped"]

SHIPPED_SEED = 18


class Fault(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str  # the failure class it shows as, lower case
    world: dict[str, Any]  # the host's sim.world conditions
    right_fix: str
    wrong_fixes: tuple[str, ...]
    # Where the condition bites (docs/sim-world.md): "linux" any package install, "db" the
    # database server's install, "web" the nginx start on its port, "ad" a Windows domain
    # join / AD promotion. A lab without it
    # would be a no-fault control under a fault's name. "web-stray" the nginx restart with a
    # stray config beside the lab's; "ad-nodns" members that declare no resolver; "tools-name"
    # a package name the distro does not have.
    bites: str = "linux"
    # The right fix reboots the host: the operator approves reboots in its scenarios.
    reboots: bool = False


_PG: list[dict[str, Any]] = [
    {"kind": "package", "name": "postgresql"},
    {"kind": "service", "name": "postgresql", "state": "running", "enabled": True},
]
_WEB: list[dict[str, Any]] = [
    {"kind": "package", "name": "nginx"},
    {
        "kind": "file",
        "path": "/etc/nginx/conf.d/app.conf",
        "content": "server { listen 8080; }\n",
        "mode": "0644",
        # the restart is what binds 8080 (Debian's install already started nginx on 80)
        "notify": ["nginx"],
    },
    {"kind": "service", "name": "nginx", "state": "running", "enabled": True},
]
_TOOLS: list[dict[str, Any]] = [
    {"kind": "package", "name": "curl"},
    {"kind": "package", "name": "jq"},
]


def catalog() -> list[Fault]:
    return [
        Fault(
            kind="disk_full",
            world={"disk_free_mb": 0},
            right_fix="cleanup",
            wrong_fixes=("retry", "reboot"),
        ),
        Fault(
            kind="pm_locked",
            world={"pm_lock_held_by": "unattended-upgr (pid 812)", "pm_lock_attempts": 2},
            right_fix="wait and retry (or reboot)",
            wrong_fixes=("cleanup while locked", "check-mode tries"),
        ),
        Fault(
            kind="pm_locked_long",
            world={"pm_lock_held_by": "apt-get (pid 4242)", "pm_lock_attempts": 6},
            right_fix="reboot kills the holder, or retry past the attempts",
            wrong_fixes=("give up after the retry budget",),
            reboots=True,
        ),
        Fault(
            kind="repo_unreachable",
            world={"repo_unreachable": True},
            right_fix="ensure_package_repository of a reachable mirror",
            wrong_fixes=("retry", "cleanup", "reboot"),
        ),
        Fault(
            kind="port_in_use",
            world={"port_in_use": {"8080": "apache2"}},
            right_fix="stop the holder (service apache2 stopped) or move the port",
            wrong_fixes=("retry the start",),
            bites="web",
        ),
        Fault(
            kind="clock_skew",
            world={"clock_offset_s": 600},
            right_fix="start the time service (w32time) before the domain join",
            wrong_fixes=("reboot", "retry"),
            bites="ad",
        ),
        Fault(
            kind="disk_low",
            world={"disk_free_mb": 20},
            right_fix="cleanup",
            wrong_fixes=("retry", "reboot"),
            bites="db",  # 20 MiB holds curl or nginx, not the database server
        ),
        Fault(
            kind="pending_reboot",
            world={"pending_reboot": True},
            right_fix="reboot",
            wrong_fixes=("retry",),
            bites="ad",
            reboots=True,
        ),
        Fault(
            kind="lock_and_disk",
            world={"disk_free_mb": 0, "pm_lock_held_by": "dpkg (pid 99)", "pm_lock_attempts": 1},
            right_fix="wait for the lock, then cleanup",
            wrong_fixes=("cleanup while locked", "reboot"),
        ),
        Fault(
            kind="repo_and_disk",
            world={"repo_unreachable": True, "disk_free_mb": 0},
            right_fix="a reachable mirror, then cleanup",
            wrong_fixes=("retry", "reboot"),
        ),
        Fault(
            kind="config_invalid",
            world={"files": {"/etc/nginx/conf.d/old.conf": "server { listen 80;\n"}},
            right_fix="remove the stray file the config test names (ensure_file absent), "
            "then ensure again",
            wrong_fixes=("restart again (leaves nginx stopped)",),
            bites="web-stray",
        ),
        Fault(
            kind="dns_misconfigured",
            world={},
            right_fix="ensure_dns_client servers_from the DC before the join",
            wrong_fixes=("public resolvers", "retry"),
            bites="ad-nodns",
        ),
        Fault(
            kind="package_not_found",
            world={},
            right_fix="none in the lab's terms (httpd is RHEL's name; Debian's is apache2): "
            "converge the rest, report the resource failed, do not loop",
            wrong_fixes=("retry",),
            bites="tools-name",
        ),
    ]


_DC: list[dict[str, Any]] = [
    {"kind": "windows_feature", "name": "AD-Domain-Services"},
    {
        "kind": "ad_domain",
        "name": "lab.local",
        "netbios": "LAB",
        "safe_mode_password_env": "LAB_DSRM_PASSWORD",
    },
]
_MEMBER: list[dict[str, Any]] = [
    {"kind": "dns_client", "servers_from": ["dc-01"]},
    {
        "kind": "domain_membership",
        "domain": "lab.local",
        "credentials_env": "LAB_JOIN_PASSWORD",
        "after": ["dc-01:ad_domain/lab.local"],
    },
]
# `postgresql` brings the server and its service on Debian only (RHEL's is the client,
# `postgresql-server` the server): a database host on a seeded RHEL would fail whatever
# the fault, and other seeded distros lack a package or two: Linux hosts are Debian 12, so
# a scenario fails only by its fault (tests/evals/test_world_scoring.py checks the twins).
# The seeded facts may also claim a running postgresql or nginx, which the world then half
# has (a package, no unit): the services are pinned to a plain base.
_DEBIAN = {
    "os": {
        "id": "debian",
        "name": "Debian GNU/Linux",
        "version": "12",
        "pretty_name": "Debian GNU/Linux 12 (bookworm)",
    },
    "package_manager": "apt",
    "services": ["cron", "rsyslog", "sshd", "systemd-journald", "systemd-logind"],
}


def _host(
    host_id: str, roles: list[str], world: dict[str, Any] | None, os: str = "linux"
) -> dict[str, Any]:
    host: dict[str, Any] = {"host_id": host_id, "os": os, "roles": roles}
    sim: dict[str, Any] = {}
    if os == "linux":
        sim["facts"] = _DEBIAN
    if world:
        sim["world"] = world
    if sim:
        host["sim"] = sim
    return host


def _ad_lab(rng: random.Random, fault: Fault | None) -> tuple[dict[str, Any], str]:
    """A domain controller and members that join it (each after the DC's domain)."""
    members = [f"srv-{i:02d}" for i in range(1, rng.randrange(2, 4))]
    faulty, world = "", None
    if fault is not None and fault.bites == "ad-nodns":
        lab = {
            "seed": rng.randrange(1, 10_000),
            "roles": {"dc": _DC, "member": _MEMBER[1:]},
            "hosts": [
                _host("dc-01", ["dc"], None, "windows"),
                *(_host(m, ["member"], None, "windows") for m in members),
            ],
        }
        return lab, f"a DC and {len(members)} member(s) that declare no resolver"
    if fault is not None:
        # a skewed clock bites the join, so only a member; a pending reboot bites either
        pool = members if fault.kind == "clock_skew" else ["dc-01", *members]
        faulty, world = rng.choice(pool), fault.world
    hosts = [_host("dc-01", ["dc"], world if faulty == "dc-01" else None, "windows")]
    hosts += [_host(m, ["member"], world if faulty == m else None, "windows") for m in members]
    lab = {
        "seed": rng.randrange(1, 10_000),
        "roles": {"dc": _DC, "member": _MEMBER},
        "hosts": hosts,
    }
    return lab, f"a DC and {len(members)} joining member(s), the fault on {faulty or 'none'}"


def _scenario(
    name: str,
    description: str,
    tags: list[str],
    lab: dict[str, Any],
    *,
    reboots: bool = False,
    min_goal_pct: float = 100.0,
) -> Scenario:
    # A lab whose right plan reboots (a pending reboot; a DC promotion and a domain join
    # report `reboot_required`): the operator approves reboots, and they are not failures.
    success: dict[str, Any] = {"max_locked": None}
    if reboots:
        success["max_destructive"] = None
    if min_goal_pct < 100:  # a resource no plan can fix: the rest must converge
        success.update(goal_reached=False, min_goal_pct=min_goal_pct)
    data = {
        "description": description,
        "tags": ["desired", *tags],
        "limits": {"max_steps": 120, "max_tasks": 400, "max_sim_s": 7200},
        "success": success,
        "operator": "approve" if reboots else "reject",
        "lab": {"schema_version": 2, "defaults": {"transport": "sim"}, **lab},
    }
    return parse_scenario(yaml.safe_dump(data, sort_keys=False), source=name, name=name)


def _fault_lab(rng: random.Random, fault: Fault, index: int, variant: int) -> Scenario:
    shape = {"web": 1, "web-stray": 1, "db": variant % 2}.get(fault.bites, variant % 3)
    seed = rng.randrange(1, 10_000)
    min_goal_pct = 100.0
    if fault.bites in ("ad", "ad-nodns"):
        lab, what = _ad_lab(rng, fault)
        shape = 1  # members join across hosts
    elif fault.bites == "tools-name":
        count = rng.randrange(2, 4)
        lab = {
            "seed": seed,
            "roles": {"tools": [_TOOLS[0], {"kind": "package", "name": "httpd"}]},
            "hosts": [_host(f"app-{i:02d}", ["tools"], None) for i in range(1, count + 1)],
        }
        what = f"{count} Debian hosts asked for RHEL's httpd"
        shape, min_goal_pct = 2, 50.0
    elif shape == 0:  # one host, one role
        lab = {
            "seed": seed,
            "roles": {"db": _PG},
            "hosts": [_host("db-01", ["db"], fault.world)],
        }
        what = "one database host"
    elif shape == 1:  # cross-host: the web server waits for its database
        web = [*_WEB[:2], {**_WEB[2], "after": ["db-01:service/postgresql"]}]
        pick = {"web": ["web-01"], "web-stray": ["web-01"], "db": ["db-01"]}.get(
            fault.bites, ["db-01", "web-01"]
        )
        faulty = rng.choice(pick)
        lab = {
            "seed": seed,
            "roles": {"db": _PG, "web": web},
            "hosts": [
                _host("db-01", ["db"], fault.world if faulty == "db-01" else None),
                _host("web-01", ["web"], fault.world if faulty == "web-01" else None),
            ],
        }
        what = f"db before web, the fault on {faulty}"
    else:  # a few alike hosts, one faulty
        count = rng.randrange(3, 6)
        bad = rng.randrange(1, count + 1)
        lab = {
            "seed": seed,
            "roles": {"tools": _TOOLS},
            "hosts": [
                _host(f"app-{i:02d}", ["tools"], fault.world if i == bad else None)
                for i in range(1, count + 1)
            ],
        }
        what = f"{count} alike hosts, the fault on app-{bad:02d}"
    return _scenario(
        f"ds-{fault.kind.replace('_', '-')}-{index}",
        f"{fault.kind} ({what}). Right fix: {fault.right_fix}. "
        f"Wrong: {', '.join(fault.wrong_fixes)}.",
        [f"fault:{fault.kind}", "cross-host" if shape == 1 else "single"],
        lab,
        reboots=fault.reboots or fault.bites in ("ad", "ad-nodns"),
        min_goal_pct=min_goal_pct,
    )


def _control(rng: random.Random, index: int) -> Scenario:
    # Absent things are already absent: the right plan reads and changes nothing.
    absent = [{"kind": "package", "name": n, "state": "absent"} for n in ("telnetd", "rsh-server")]
    return _scenario(
        f"ds-control-{index}",
        "no fault, nothing to do: the right plan discovers and changes nothing",
        ["fault:none", "control"],
        {
            "seed": rng.randrange(1, 10_000),
            "roles": {"hardened": absent},
            "hosts": [_host(f"srv-{i:02d}", ["hardened"], None) for i in range(1, 3)],
        },
    )


def _ad_control(rng: random.Random, index: int) -> Scenario:
    lab, what = _ad_lab(rng, None)
    return _scenario(
        f"ds-ad-control-{index}",
        f"no fault ({what}): the right plan promotes the DC, then joins the members "
        "(each rebooted as its change asks)",
        ["fault:none", "control", "cross-host"],
        lab,
        reboots=True,
    )


def _drift(rng: random.Random, index: int) -> Scenario:
    # A converged web host (nginx installed and running) whose site config was edited by hand.
    facts = {**_DEBIAN, "services": [*_DEBIAN["services"], "nginx"]}
    drifted = {"files": {"/etc/nginx/conf.d/app.conf": "server { listen 8081; }\n"}}
    return _scenario(
        f"ds-drift-{index}",
        "drift: a converged web host with its site config edited by hand; the right plan "
        "changes that file only (and restarts nginx)",
        ["fault:drift", "drift", "single"],
        {
            "seed": rng.randrange(1, 10_000),
            "roles": {"web": _WEB},
            "hosts": [
                {
                    "host_id": "web-01",
                    "os": "linux",
                    "roles": ["web"],
                    "sim": {"facts": facts, "world": drifted},
                }
            ],
        },
    )


def _partial(rng: random.Random, index: int) -> Scenario:
    # A clean lab, some resources already in place (absent ones), the rest to do.
    role = [*_TOOLS, {"kind": "package", "name": "telnetd", "state": "absent"}]
    return _scenario(
        f"ds-partial-{index}",
        "partially converged, no fault: only what differs should change",
        ["fault:none", "partial"],
        {
            "seed": rng.randrange(1, 10_000),
            "roles": {"tools": role},
            "hosts": [_host(f"app-{i:02d}", ["tools"], None) for i in range(1, 4)],
        },
    )


def generate(seed: int, count: int) -> list[Scenario]:
    """`count` scenarios: every fault type in turn (three shapes, or the one where it bites),
    with a control, a partially converged lab, a no-fault AD lab or a drift after each nine."""
    rng = random.Random(seed)
    faults = catalog()
    controls = (_control, _partial, _ad_control, _drift)
    out: list[Scenario] = []
    index = made = 0
    while len(out) < count:
        if index % 10 == 9:
            out.append(controls[(index // 10) % len(controls)](rng, index))
        else:
            fault = faults[made % len(faults)]
            out.append(_fault_lab(rng, fault, index, made // len(faults)))
            made += 1
        index += 1
    if seed == SHIPPED_SEED:
        return out
    # Held-out names say their seed: a `ds-disk-full-0` of seed 7 is not the shipped one, and
    # a baseline must not pair them.
    return [s.model_copy(update={"name": f"ho{seed}-{s.name.removeprefix('ds-')}"}) for s in out]


def write_shipped(out: Path, count: int = 40) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for scenario in generate(SHIPPED_SEED, count):
        path = out / f"{scenario.name}.yaml"
        data = scenario.model_dump(mode="json", exclude={"schema_version", "name"})
        path.write_text(
            "# Generated by evals.generate (SHIPPED_SEED); edit the generator, not this file.\n"
            + yaml.safe_dump(data, sort_keys=False),
            encoding="utf-8",
        )
        paths.append(path)
    return paths


if __name__ == "__main__":
    write_shipped(Path(__file__).parent / "scenarios" / "desired")
