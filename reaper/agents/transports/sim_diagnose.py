"""`diagnose` and `cleanup` on a simulated host's world.

The diagnose report is written in the text the Linux toolbox collects (`df -P -k`, `pgrep -a`
lock holders, `#state` of a unit and its journal, resolvers, listening ports, `timedatectl`)
and its findings come from the same parser (`toolbox.diagnose_findings`), plus the ones the
world knows and a real report shows between its lines: an unreachable repository, the clock's
offset, a pending reboot. Data: {"topics", "report", "findings"}, as on a real host.

`cleanup` frees what the world holds as reclaimable (package cache, temp files, old logs):
the right fix for a full disk. The package cache cannot be cleaned while another process
holds the package manager's lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reaper.actions import DIAGNOSE_TOPICS
from reaper.agents.base import ActionOutcome
from reaper.agents.oscode.toolbox import diagnose_findings
from reaper.agents.transports.sim_services import config_problem, ports_of
from reaper.agents.transports.sim_world import TIME_SERVICES, HostWorld, domain_host, unit_name
from reaper.models import ResultStatus

__all__ = ["cleanup", "diagnose"]

_MANAGER = {
    "debian": "apt-get",
    "rhel": "dnf",
    "suse": "zypper",
    "macos": "brew",
    "windows": "choco",
}


def _disk(world: HostWorld, facts: Mapping[str, Any]) -> str:
    lines = ["Filesystem     1024-blocks      Used Available Capacity Mounted on"]
    free_mb = world.cond.get("disk_free_mb")
    for i, disk in enumerate(facts.get("disks", ()) or [{"mount": "/", "size_gb": 40}]):
        size = int(disk.get("size_gb", 40)) * 1_048_576
        if i == 0 and free_mb is not None:
            avail = min(size, int(free_mb) * 1024)
        else:
            avail = size * (100 - int(disk.get("used_pct", 50))) // 100
        pct = 100 - avail * 100 // size if size else 0
        lines.append(
            f"/dev/sda{i + 1} {size:>14} {size - avail:>9} {avail:>9} {pct:>7}% "
            f"{disk.get('mount', '/')}"
        )
    return "\n".join(lines) + "\n#inodes\nFilesystem Inodes IUsed IFree IUse% Mounted on"


def _packages(world: HostWorld) -> str:
    lines = [f"manager: {_MANAGER[world.family]}", "#repositories"]
    mirror = "unreachable: connection timed out" if world.cond.get("repo_unreachable") else "ok"
    lines.append(f"distribution mirror ({mirror})")
    lines += [f"{name}: {repo.get('url')}" for name, repo in sorted(world.repos.items())]
    lines.append("#lock")
    holder = world.cond.get("pm_lock_held_by")
    if holder:
        name, _, pid = str(holder).partition(" (pid ")
        lines.append(f"{pid.rstrip(')') or '812'} {name}")
    lines.append("#broken")
    return "\n".join(lines)


def _service(world: HostWorld, name: str, n: int) -> str:
    unit = unit_name(world, name)
    svc = world.services.get(unit)
    if svc is None:
        return f"#state inactive\nUnit {name}.service could not be found.\n#log"
    state = "active" if svc["running"] else "failed" if svc.get("failed") else "inactive"
    lines = [
        f"#state {state}",
        f"● {unit}.service",
        f"     Loaded: loaded; {'enabled' if svc['enabled'] else 'disabled'}",
        f"     Active: {state}",
    ]
    problem = None if svc["running"] else config_problem(world, unit)
    if problem is not None:
        lines.append(
            f"    Process: ExecStartPre=config test (code=exited, status=1/FAILURE)\n{problem}"
        )
    lines.append("#log")
    lines += world.journal.get(unit, [])[-n:]
    return "\n".join(lines)


def _network(world: HostWorld, peers: Mapping[str, HostWorld], target: str | None) -> str:
    dns = world.dns.get("default", {})
    lines = [f"2: eth0    inet {world.address}/24", "#resolvers"]
    lines += [f"nameserver {s}" for s in dns.get("servers", [])]
    lines += [f"search {' '.join(dns.get('search', []))}"] if dns.get("search") else []
    lines.append("#listening")
    for unit, svc in sorted(world.services.items()):
        if svc["running"]:
            lines += [
                f'tcp LISTEN 0 511 0.0.0.0:{p} 0.0.0.0:* users:(("{unit}"))'
                for p in ports_of(world, unit)
            ]
    if target:
        lines.append("#resolve")
        dc = domain_host(target, world, peers)
        peer = peers.get(target)
        if dc is not None and dc.address in dns.get("servers", []):
            lines.append(f"{dc.address}    {target}")
        elif peer is not None:
            lines.append(f"{peer.address}    {target}")
        else:
            lines.append(f"unresolved {target}")
    return "\n".join(lines)


def _time(world: HostWorld) -> str:
    offset = float(world.cond.get("clock_offset_s", 0))
    unit = TIME_SERVICES[world.family]
    running = world.services.get(unit, {}).get("running", False)
    return (
        f"System clock synchronized: {'yes' if running and not offset else 'no'}\n"
        f"NTP service: {'active' if running else 'inactive'} ({unit})\n"
        f"Offset from the reference clock: {offset:+.1f}s"
    )


def _world_findings(world: HostWorld, topics: list[str]) -> list[str]:
    found: list[str] = []
    if "packages" in topics and world.cond.get("repo_unreachable") and not world.repos:
        found.append("the distribution's package repository is unreachable")
    offset = float(world.cond.get("clock_offset_s", 0))
    if "time" in topics and abs(offset) > 60:
        unit = TIME_SERVICES[world.family]
        found.append(f"clock is {offset:+.0f}s off and {unit} is not running")
    if world.cond.get("pending_reboot"):
        found.append("a reboot is pending")
    return found


def diagnose(
    world: HostWorld,
    peers: Mapping[str, HostWorld],
    facts: Mapping[str, Any],
    host_id: str,
    params: Mapping[str, Any],
) -> ActionOutcome:
    topics = list(params.get("topics") or DIAGNOSE_TOPICS)
    service, target = params.get("service"), params.get("target")
    report: dict[str, str] = {}
    if "disk" in topics:
        report["disk"] = _disk(world, facts)
    if "packages" in topics:
        report["packages"] = _packages(world)
    if "service" in topics:
        report["service"] = (
            _service(world, str(service), int(params.get("log_lines", 40)))
            if service
            else "no service named: pass `service` to see its status and log"
        )
    if "network" in topics:
        report["network"] = _network(world, peers, target)
    if "time" in topics:
        report["time"] = _time(world)
    if "processes" in topics:
        running = sorted(u for u, s in world.services.items() if s["running"])
        report["processes"] = "  PID USER %CPU COMMAND\n" + "\n".join(
            f"{1000 + i:>5} root  0.{i % 10} {u}" for i, u in enumerate(running)
        )
    findings = diagnose_findings(report, service, target) + _world_findings(world, topics)
    return ActionOutcome(
        status=ResultStatus.SUCCESS,
        summary=f"diagnose {host_id}: " + ("; ".join(findings) or "nothing abnormal found"),
        data={"topics": topics, "report": report, "findings": findings},
    )


def cleanup(world: HostWorld, host_id: str, params: Mapping[str, Any]) -> ActionOutcome:
    targets = list(params.get("targets") or ("package_cache", "temp", "old_logs"))
    check = bool(params.get("check_mode", False))
    reclaimable = world.cond.setdefault("reclaimable_mb", {})
    totals: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    for target in targets:
        if target == "package_cache" and world.cond.get("pm_lock_held_by"):
            notes.append(
                f"package_cache: skipped, the package manager is locked by "
                f"{world.cond['pm_lock_held_by']}"
            )
            continue
        mib = int(reclaimable.get(target, 0))
        totals[target] = {"files": mib * 4, "bytes": mib * 1_048_576}
        if not check:
            reclaimable[target] = 0
            if world.cond.get("disk_free_mb") is not None:
                world.cond["disk_free_mb"] = int(world.cond["disk_free_mb"]) + mib
    freed = sum(t["bytes"] for t in totals.values())
    verb = "would free" if check else "freed"
    return ActionOutcome(
        status=ResultStatus.SUCCESS,
        summary=f"cleanup {host_id}: {verb} {freed / 1_048_576:.1f} MiB "
        f"in {sum(t['files'] for t in totals.values())} files",
        data={"targets": totals, "check_mode": check, "changed": freed > 0},
        stdout_tail="\n".join(
            [*(f"{k} {v['files']} {v['bytes']}" for k, v in totals.items()), *notes]
        ),
    )
