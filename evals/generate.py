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
        ),
        Fault(
            kind="clock_skew",
            world={"clock_offset_s": 600},
            right_fix="start the time service (chrony)",
            wrong_fixes=("reboot", "retry"),
        ),
        Fault(
            kind="disk_low",
            world={"disk_free_mb": 20},
            right_fix="cleanup",
            wrong_fixes=("retry", "reboot"),
        ),
        Fault(
            kind="pending_reboot",
            world={"pending_reboot": True},
            right_fix="reboot",
            wrong_fixes=("retry",),
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
    ]


def _host(host_id: str, roles: list[str], world: dict[str, Any] | None) -> dict[str, Any]:
    host: dict[str, Any] = {"host_id": host_id, "os": "linux", "roles": roles}
    if world:
        host["sim"] = {"world": world}
    return host


def _scenario(name: str, description: str, tags: list[str], lab: dict[str, Any]) -> Scenario:
    data = {
        "description": description,
        "tags": ["desired", *tags],
        "limits": {"max_steps": 120, "max_tasks": 400, "max_sim_s": 7200},
        "success": {"max_locked": None},
        "lab": {"schema_version": 2, "defaults": {"transport": "sim"}, **lab},
    }
    return parse_scenario(yaml.safe_dump(data, sort_keys=False), source=name, name=name)


def _fault_lab(rng: random.Random, fault: Fault, index: int) -> Scenario:
    shape = index % 3
    seed = rng.randrange(1, 10_000)
    if shape == 0:  # one host, one role
        lab = {
            "seed": seed,
            "roles": {"db": _PG},
            "hosts": [_host("db-01", ["db"], fault.world)],
        }
        what = "one database host"
    elif shape == 1:  # cross-host: the web server waits for its database
        web = [*_WEB[:2], {**_WEB[2], "after": ["db-01:service/postgresql"]}]
        faulty = rng.choice(["db-01", "web-01"])
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
    """`count` scenarios: every fault type in turn (three shapes), with a control and a
    partially converged lab after each ten."""
    rng = random.Random(seed)
    faults = catalog()
    out: list[Scenario] = []
    index = 0
    while len(out) < count:
        if index % 11 == 10:
            out.append(_control(rng, index) if index % 22 == 10 else _partial(rng, index))
        else:
            out.append(_fault_lab(rng, faults[index % len(faults)], index))
        index += 1
    return out


def write_shipped(out: Path, count: int = 32) -> list[Path]:
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
