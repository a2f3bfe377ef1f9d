"""The documented fixes of the sim world's fault catalog (docs/sim-world.md), as planners.

`RightFix` is the rule converger plus, for each failure class, the catalog's right fix:
catalog actions only, decided from the failure the host reported (its class and the tool's
text), never from the scenario or the world. Its run of a scenario is the scenario's proven
right-fix plan: tests/evals/test_fault_fixes.py shows each fault type converges with it, and
its task count is the reference the per-fault regret is measured against (`evals.by_fault`).
`WrongFix(code, fix)` answers one failure class with one of the catalog's wrong fixes, to show
they do nothing or make it worse. Use by name: `--planners evals.right_fix:RightFix`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from reaper.desired.identity import Ref
from reaper.desired.progress import Progress
from reaper.models import HostState, PlannedTask
from reaper.planners.converge import Converger

__all__ = ["MIRROR", "RIGHT_FIXES", "RightFix", "WrongFix"]

# A reachable mirror of the distribution (any enabled repository other than the unreachable
# one serves the sim; a real lab names its own).
MIRROR: dict[str, Any] = {
    "kind": "package_repository",
    "name": "lab-mirror",
    "format": "apt",
    "url": "http://mirror.lab.internal/debian",
    "suite": "bookworm",
    "components": ["main"],
    "key_url": "http://mirror.lab.internal/debian/archive-key.asc",
}
_HOLDER = re.compile(r"held by (\S+)")
_BAD_FILE = re.compile(r" in (/\S+?):\d+")
_TIME = {"windows": "w32time", "linux": "chrony", "macos": "com.apple.timed"}

# (host, the failure's text) → the fix, as (verb, params) on the host's OS
Fix = Callable[[HostState, str], tuple[str, dict[str, Any]] | None]


def _ensure(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return f"ensure_{spec['kind']}", {"resource": spec}


def _stop_holder(host: HostState, text: str) -> tuple[str, dict[str, Any]] | None:
    m = _HOLDER.search(text)
    if m is None:
        return None
    return _ensure({"kind": "service", "name": m.group(1), "state": "stopped", "enabled": False})


def _fix_config(host: HostState, text: str) -> tuple[str, dict[str, Any]] | None:
    # The file the config test names: one the lab declares is ensured as declared by the
    # converger; one it does not is a stray, and goes.
    m = _BAD_FILE.search(text)
    if m is None or any(d.get("path") == m.group(1) for d in host.desired):
        return None
    return _ensure({"kind": "file", "path": m.group(1), "state": "absent"})


def _resolver(host: HostState, text: str) -> tuple[str, dict[str, Any]] | None:
    domains = [d for d in host.desired if d.get("kind") == "domain_membership"]
    if not domains:
        return None
    # The DC of the domain is named by the membership's `after` (HOST:ad_domain/NAME).
    dcs = [a.partition(":")[0] for d in domains for a in d.get("after", ()) if ":ad_domain/" in a]
    return _ensure({"kind": "dns_client", "servers_from": dcs}) if dcs else None


RIGHT_FIXES: dict[str, Fix] = {
    "DISK_FULL": lambda host, text: ("cleanup", {}),
    "REBOOT_PENDING": lambda host, text: ("reboot", {}),
    "PM_LOCKED": lambda host, text: ("reboot", {}),  # after the converger's own retry
    "REPO_UNREACHABLE": lambda host, text: _ensure(MIRROR),
    "PORT_IN_USE": _stop_holder,
    "CONFIG_INVALID": _fix_config,
    "DNS_MISCONFIGURED": _resolver,
    "CLOCK_SKEW": lambda host, text: _ensure(
        {"kind": "service", "name": _TIME[host.os], "state": "running", "enabled": True}
    ),
}


class RightFix(Converger):
    """The converger, and for a failure its rules leave failed, the catalog's right fix
    (once per resource and failure class), then the resource again."""

    name = "right-fix"

    def __init__(self, fixes: dict[str, Fix] | None = None, *, rules: bool = True) -> None:
        self.fixes = RIGHT_FIXES if fixes is None else fixes
        self.rules = rules  # False: the rules' own recoveries are not used (WrongFix)
        self.fixed: set[tuple[Ref, str]] = set()  # (resource, class) whose fix went out
        self.retried: set[tuple[Ref, str]] = set()

    def _recovery(self, p: Progress, host: HostState, node: Ref) -> PlannedTask | None:
        rule = super()._recovery(p, host, node) if self.rules else None
        if rule is not None or p.state.check_mode:
            return rule
        rs = p.resource_state(node)
        code = rs.error_code or ""
        fix = self.fixes.get(code)
        key = (node, code)
        if fix is None or key in self.retried:
            return None
        if key in self.fixed:
            self.retried.add(key)
            return self.ensure_task(p, host, node, f"{code} fixed")
        found = fix(host, f"{rs.error or ''}\n{rs.output_tail}")
        if found is None:
            return None
        verb, params = found
        self.fixed.add(key)
        return PlannedTask(
            host_id=host.host_id,
            action=f"{host.os}.{verb}",
            params=params,
            reason=f"{node.rid} failed with {code}: the catalog's fix",
        )


class WrongFix(RightFix):
    """Every failure class answered with one wrong fix (verb, params), then a retry."""

    name = "wrong-fix"

    def __init__(self, verb: str, params: dict[str, Any] | None = None) -> None:
        def wrong(host: HostState, text: str) -> tuple[str, dict[str, Any]]:
            return verb, dict(params or {})

        super().__init__(dict.fromkeys(RIGHT_FIXES, wrong), rules=False)
