"""The actions a simulated host answers from its world (`sim_world`): `ensure_*`, the observed
resources of a `discover`, `diagnose`, `cleanup` and what a `reboot` does to the world; and
the facts kept in step with the world (running services, listening ports, sshd, sysctl, the
Windows domain), so a discover after an ensure shows the change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from reaper.actions import checked_params, get_action
from reaper.agents.base import ActionOutcome
from reaper.agents.transports.sim_ensure import ensure
from reaper.agents.transports.sim_services import listening_ports
from reaper.agents.transports.sim_world import HostWorld, observe
from reaper.desired.parse import declared_resources
from reaper.models import ResultStatus

__all__ = [
    "HasWorld",
    "WorldsView",
    "observed_resources",
    "reboot_world",
    "resync_facts",
    "run_ensure",
    "sync_facts",
]


class HasWorld(Protocol):
    world: HostWorld | None


class WorldsView(Mapping[str, HostWorld]):
    """The worlds of a mission's simulated hosts but one, as a lazy read-only view."""

    def __init__(self, hosts: Mapping[str, HasWorld], exclude: str) -> None:
        self._hosts = hosts
        self._exclude = exclude

    def __getitem__(self, key: str) -> HostWorld:
        state = self._hosts[key] if key != self._exclude else None
        if state is None or state.world is None:
            raise KeyError(key)
        return state.world

    def __iter__(self) -> Iterator[str]:
        return (h for h, s in self._hosts.items() if h != self._exclude and s.world is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _invalid(text: str) -> ActionOutcome:
    return ActionOutcome(
        status=ResultStatus.ERROR,
        summary=text[:300],
        stderr_tail=text,
        error_code="INVALID_PARAMS",
    )


def run_ensure(
    world: HostWorld,
    peers: Mapping[str, HostWorld],
    facts: dict[str, Any],
    host_id: str,
    action: str,
    params: Mapping[str, Any],
) -> ActionOutcome:
    """`<os>.ensure_<kind>` with params checked against the catalog's model."""
    spec = get_action(action)
    if spec is None:
        return ActionOutcome(
            status=ResultStatus.ERROR,
            summary=f"{action}: not an action for a {world.os} host",
            stderr_tail=f"reaper: unknown action {action!r}",
            error_code="UNKNOWN_ACTION",
        )
    try:
        checked = checked_params(spec, params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        return _invalid(f"{action}: {where}: {first['msg']}")
    resource = getattr(checked, "resource")  # noqa: B009 (a field of a model built at runtime)
    check = bool(getattr(checked, "check_mode", False))
    outcome = ensure(world, resource, peers=peers, facts=facts, host_id=host_id, check=check)
    if not check and outcome.data.get("result") != "unchanged":
        sync_facts(world, facts, resource.kind)
    return outcome


def observed_resources(
    world: HostWorld, peers: Mapping[str, HostWorld], declared: list[Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """`KIND/NAME` → observed properties (None: absent) for each declared resource, and
    the problems of the entries that are no resource (by their index)."""
    resources, problems = declared_resources(declared)
    out = {str(r.rid): observe(world, r, peers) for _, r in resources}
    return out, problems


def reboot_world(world: HostWorld) -> None:
    """A restart: enabled services run and others do not, a pending reboot is done, the
    package manager's lock holder is gone (the clock stays as it was)."""
    world.reboots += 1
    world.cond["pending_reboot"] = False
    world.cond["pm_lock_held_by"] = None
    for svc in world.services.values():
        svc["running"] = bool(svc["enabled"])
        svc["failed"] = False


def resync_facts(world: HostWorld, facts: dict[str, Any]) -> None:
    """Bring every fact kept in step with the world up to date (a world read from the
    store, changed elsewhere)."""
    for kind in ("service", "sshd_option", "setting", "ad_domain"):
        sync_facts(world, facts, kind)


def sync_facts(world: HostWorld, facts: dict[str, Any], kind: str) -> None:
    """Keep the discover facts in step with the world after a `kind` resource changed."""
    if world.os == "linux" and kind in ("service", "package", "file"):
        running = sorted(u for u, s in world.services.items() if s["running"])
        facts["services"] = running
        facts["listening_ports"] = listening_ports(world, running)
    elif world.os == "linux" and kind == "sshd_option":
        sshd = facts.setdefault("sshd", {})
        sshd.update({k: v for k, v in world.sshd.items() if k in sshd})
    elif world.os == "linux" and kind == "setting":
        sysctl = facts.setdefault("sysctl", {})
        for key in sysctl:
            value = world.settings.get(key, {}).get("value")
            if value is not None:
                sysctl[key] = int(value) if str(value).isdigit() else value
    elif world.os == "windows" and kind in ("ad_domain", "domain_membership"):
        computer = facts.setdefault("computer", {})
        if world.membership is not None:
            computer["domain"] = str(world.membership["domain"]).upper()
        elif world.domain is not None:
            computer["domain"] = str(world.domain["name"]).upper()
