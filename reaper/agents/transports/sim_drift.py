"""A hand edit on a simulated host (`reaper sim drift`): one declared resource changed on the
host's stored world as an operator at its console might change it, so the next plan shows it
and the next run fixes it (and only it).

Pure: `drift` changes the world it is given and says what it did, in one line.
"""

from __future__ import annotations

from collections.abc import Callable

from reaper.agents.transports.sim_packages import find_package
from reaper.agents.transports.sim_world import HostWorld, observe, unit_name
from reaper.desired.base import ResourceBase
from reaper.errors import ConfigError

__all__ = ["DRIFT_KINDS", "drift"]

HAND_EDIT = "# edited by hand\n"


def _package(world: HostWorld, r: ResourceBase) -> str:
    found = find_package(world.family, r.rid.name)
    if found is None or found[0] not in world.packages:
        raise ConfigError(f"{r.rid} is not installed: nothing to remove")
    del world.packages[found[0]]
    return f"removed package {found[0]}"


def _service(world: HostWorld, r: ResourceBase) -> str:
    unit = unit_name(world, r.rid.name)
    svc = world.services.get(unit)
    if svc is None:
        raise ConfigError(f"{r.rid}: no such service on the host (is its package installed?)")
    svc["running"] = not svc["running"]
    world.log(unit, f"{'Started' if svc['running'] else 'Stopped'} {unit} (by hand).")
    return f"{'started' if svc['running'] else 'stopped'} {unit}"


def _file(world: HostWorld, r: ResourceBase) -> str:
    entry = world.files.get(r.rid.name)
    if entry is None or entry["type"] != "file":
        world.files[r.rid.name] = {
            "type": "file", "content": HAND_EDIT, "mode": "0644", "owner": "root",
            "group": None if world.os == "windows" else "root",
        }  # fmt: skip
        return f"created {r.rid.name}"
    entry["content"] = (entry["content"] or "") + HAND_EDIT
    return f"appended {HAND_EDIT.strip()!r} to {r.rid.name}"


def _directory(world: HostWorld, r: ResourceBase) -> str:
    if world.files.pop(r.rid.name, None) is None:
        raise ConfigError(f"{r.rid} is not there: nothing to remove")
    return f"removed {r.rid.name}"


def _entry(attr: str, what: str) -> Callable[[HostWorld, ResourceBase], str]:
    def remove(world: HostWorld, r: ResourceBase) -> str:
        if getattr(world, attr).pop(r.rid.name, None) is None:
            raise ConfigError(f"{r.rid} is not there: nothing to remove")
        return f"removed {what} {r.rid.name}"

    return remove


def _sshd(world: HostWorld, r: ResourceBase) -> str:
    key = r.rid.name.lower()
    value = str(r.__dict__.get("value", ""))
    flipped = {"yes": "no", "no": "yes"}.get(value.lower(), "yes")
    world.sshd[key] = flipped
    return f"set {r.rid.name} {flipped} in sshd_config"


_DRIFTS: dict[str, Callable[[HostWorld, ResourceBase], str]] = {
    "package": _package,
    "service": _service,
    "file": _file,
    "directory": _directory,
    "user": _entry("users", "user"),
    "group": _entry("groups", "group"),
    "setting": _entry("settings", "setting"),
    "sshd_option": _sshd,
    "firewall": _entry("firewall", "firewall rule"),
}
DRIFT_KINDS = tuple(_DRIFTS)


def drift(world: HostWorld, resource: ResourceBase) -> str:
    """Change `resource` on `world` by hand; what was done, in one line. ConfigError: a kind
    with no hand edit here, or nothing to change (the world is left as it was)."""
    edit = _DRIFTS.get(resource.kind)
    if edit is None:
        raise ConfigError(
            f"{resource.rid}: no hand edit for kind {resource.kind!r}; "
            f"kinds: {', '.join(DRIFT_KINDS)}"
        )
    before = observe(world, resource, {})
    done = edit(world, resource)
    if observe(world, resource, {}) == before:  # e.g. a default that reads the same
        raise ConfigError(f"{resource.rid}: the edit ({done}) left it as it was")
    return done
