"""A simulated host's own state between tasks, and its answers to the stage-era actions
(discover of facts, prepare, baseline, a facts-only diagnose), which do not need its world."""

from __future__ import annotations

import marshal
from dataclasses import dataclass, field
from typing import Any

from reaper.actions import DIAGNOSE_TOPICS
from reaper.agents.base import ActionOutcome
from reaper.agents.transports.sim_facts import BASELINE_ITEMS, PREPARE_ITEMS, get_path, set_path
from reaper.agents.transports.sim_world import HostWorld, build_world, copy_data
from reaper.models import ResultStatus, SimWorldSettings

__all__ = ["SimHostState", "baseline", "diagnose_facts", "discover", "error", "prepare"]


@dataclass(slots=True)
class SimHostState:
    """What a simulated host remembers between tasks."""

    os: str
    facts: dict[str, Any]
    installed: set[str]
    tasks_run: int = 0
    prepared: bool = False
    reboots: int = 0
    # How often each fault (by its position in the lab's list) has fired on this host.
    fired: dict[int, int] = field(default_factory=dict)
    # discover's precomputed answer; None whenever the facts change
    snapshot: tuple[bytes | None, str, str] | None = None
    # The resources and conditions of the host (`sim_world`), built on first use.
    world: HostWorld | None = None
    world_settings: SimWorldSettings | None = None

    def the_world(self) -> HostWorld:
        if self.world is None:
            self.world = self.fresh_world()
        return self.world

    def fresh_world(self) -> HostWorld:
        return build_world(self.os, self.facts, self.world_settings)


def error(
    code: str,
    summary: str,
    stderr: str,
    data: dict[str, Any] | None = None,
    *,
    retriable: bool = False,
) -> ActionOutcome:
    return ActionOutcome(
        status=ResultStatus.ERROR,
        summary=summary,
        data=data or {},
        stderr_tail=stderr,
        error_code=code,
        retriable=retriable,
    )


def _snapshot(os: str, facts: dict[str, Any]) -> tuple[bytes | None, str, str]:
    """What discover returns, precomputed until the facts change: marshal round-trips plain
    data as a deep copy in C, twice as fast as a Python copy (None when the facts hold a type
    marshal does not know, e.g. a date a YAML override produced)."""
    try:
        blob: bytes | None = marshal.dumps(facts)
    except ValueError:
        blob = None
    if os == "linux":
        what = get_path(facts, ("os", "pretty_name"), "Linux")
        lines = [
            f"os-release: {what}",
            f"kernel: {facts.get('kernel', '?')}",
            f"ss -tlnp: {len(facts.get('listening_ports', ()))} listening",
        ]
    elif os == "windows":
        what = get_path(facts, ("computer", "os_name"), "Windows")
        lines = [
            f"Caption : {what}",
            f"BuildNumber : {get_path(facts, ('computer', 'build'))}",
            f"Domain : {get_path(facts, ('computer', 'domain'))}",
        ]
    else:
        what = f"macOS {get_path(facts, ('sw_vers', 'product_version'), '?')}"
        lines = [
            f"ProductVersion:\t{get_path(facts, ('sw_vers', 'product_version'))}",
            f"BuildVersion:\t{get_path(facts, ('sw_vers', 'build'))}",
        ]
    return blob, str(what), "\n".join(lines)


def discover(host: SimHostState, host_id: str, params: dict[str, Any]) -> ActionOutcome:
    if host.snapshot is None:
        host.snapshot = _snapshot(host.os, host.facts)
    blob, what, lines = host.snapshot
    sections = params.get("sections")
    if sections is None and blob is not None:
        data: dict[str, Any] = marshal.loads(blob)
    else:
        data = {k: copy_data(v) for k, v in host.facts.items() if sections is None or k in sections}
    return ActionOutcome(
        status=ResultStatus.SUCCESS,
        summary=f"discovered {host_id}: {what}",
        data=data,
        stdout_tail=f"{lines}\ncollected {len(data)} fact groups",
    )


def diagnose_facts(host: SimHostState, host_id: str, params: dict[str, Any]) -> ActionOutcome:
    """What the facts the sim host has would show; a sim host is otherwise healthy."""
    topics = params.get("topics") or list(DIAGNOSE_TOPICS)
    facts = host.facts
    report = {
        "disk": "\n".join(
            f"{d.get('mount')} {d.get('size_gb')} GB {d.get('used_pct')}% used"
            for d in facts.get("disks", [])
        ),
        "packages": f"manager: {facts.get('package_manager', 'none')}\n#lock\n#broken\n",
        "service": "#state "
        + ("active" if params.get("service") in facts.get("services", []) else "inactive"),
        "network": "\n".join(str(a.get("addr")) for a in facts.get("addresses", [])),
        "time": "clock in sync (simulated)",
        "processes": "\n".join(str(s) for s in facts.get("services", [])),
    }
    report = {k: v for k, v in report.items() if k in topics}
    if "service" in report and not params.get("service"):
        report["service"] = "no service named: pass `service` to see its status and log"
    return ActionOutcome(
        status=ResultStatus.SUCCESS,
        summary=f"diagnose {host_id}: nothing abnormal found",
        data={"topics": list(topics), "report": report, "findings": []},
    )


def prepare(host: SimHostState, host_id: str, params: dict[str, Any]) -> ActionOutcome:
    wanted = params.get("items") or list(PREPARE_ITEMS[host.os])
    installed = [item for item in wanted if item not in host.installed]
    present = [item for item in wanted if item in host.installed]
    host.installed.update(installed)
    host.prepared = True
    if host.os == "linux" and "auditd" in host.installed:
        set_path(host.facts, ("auditd", "installed"), True)
        host.snapshot = None
    lines = [f"installed {item}" for item in installed] or ["nothing to install"]
    return ActionOutcome(
        status=ResultStatus.SUCCESS,
        summary=f"prepared {host_id}: {len(installed)} installed, {len(present)} present",
        data={"installed": installed, "already_present": present},
        stdout_tail="\n".join(lines),
    )


def baseline(
    host: SimHostState, host_id: str, params: dict[str, Any], *, needs_prepare: bool
) -> ActionOutcome:
    if needs_prepare and not host.prepared:
        missing = [i for i in PREPARE_ITEMS[host.os] if i not in host.installed]
        return error(
            "PREREQ_MISSING",
            f"baseline needs {', '.join(missing)} on {host_id}",
            f"baseline: prerequisite missing: {', '.join(missing)}",
            {"missing": missing, "fix": f"{host.os}.prepare"},
        )
    catalog = BASELINE_ITEMS[host.os]
    names = params.get("items")
    if names is not None:
        unknown = sorted(set(names) - {item.name for item in catalog})
        if unknown:
            return error(
                "INVALID_PARAMS",
                f"unknown baseline items: {', '.join(unknown)}",
                f"baseline: unknown items {unknown}",
            )
        catalog = tuple(item for item in catalog if item.name in names)
    check = bool(params.get("check_mode", False))
    items: list[dict[str, Any]] = []
    lines: list[str] = []
    for item in catalog:
        before = get_path(host.facts, item.path)
        changed = before != item.want
        if changed and not check:
            set_path(host.facts, item.path, item.want)
            host.snapshot = None
        after = item.want if changed else before
        items.append({"name": item.name, "changed": changed, "before": before, "after": after})
        lines.append(f"{'changed' if changed else 'ok'}: [{item.name}]")
    n_changed = sum(1 for i in items if i["changed"])
    n_unchanged = len(items) - n_changed
    verb = "would change" if check else "changed"
    lines.append(f"RECAP {host_id}: ok={len(items)} {verb}={n_changed}")
    return ActionOutcome(
        status=ResultStatus.SUCCESS,
        summary=f"baseline on {host_id}: {n_changed} {verb}, {n_unchanged} unchanged",
        data={
            "items": items,
            "changed": n_changed,
            "unchanged": n_unchanged,
            "check_mode": check,
        },
        stdout_tail="\n".join(lines[-12:]),
    )
