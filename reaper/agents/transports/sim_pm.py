"""Package and repository ensures on a simulated world: the package manager's lock, the
space and the download an install needs, per-distro names and dependencies."""

from __future__ import annotations

from typing import Any

from reaper.agents.transports.sim_ctx import Ctx, Failure
from reaper.agents.transports.sim_packages import (
    PACKAGES,
    SERVICES,
    Pkg,
    find_package,
    pm_text,
    resolve_install,
)
from reaper.agents.transports.sim_services import directory_entry, start_problem
from reaper.agents.transports.sim_world import HostWorld
from reaper.desired.compare import same

__all__ = ["ensure_package", "ensure_repository"]

_MIRRORS = {
    "debian": "deb.debian.org/debian",
    "ubuntu": "archive.ubuntu.com/ubuntu",
    "rhel": "mirrors.rockylinux.org",
    "suse": "download.opensuse.org",
    "macos": "ghcr.io",
    "windows": "community.chocolatey.org",
}
_SUITES = {"12": "bookworm", "11": "bullseye", "22.04": "jammy", "24.04": "noble"}


def _pm_values(ctx: Ctx, name: str, **extra: str) -> dict[str, str]:
    world = ctx.world
    mirror = _MIRRORS["ubuntu" if world.distro[0] == "ubuntu" else world.family]
    return {
        "name": name,
        "mirror": mirror,
        "suite": _SUITES.get(world.distro[1], "stable"),
        "holder": str(world.cond.get("pm_lock_held_by") or ""),
        **extra,
    }


def _pm_ready(ctx: Ctx, name: str) -> None:
    """The package manager's lock: PM_LOCKED until the holder is done (`pm_lock_attempts`
    failed tries; a check does not count)."""
    cond = ctx.world.cond
    if not cond.get("pm_lock_held_by"):
        return
    text = pm_text(ctx.world.family, "locked", **_pm_values(ctx, name))
    if not ctx.check:
        cond["pm_lock_left"] = int(cond.get("pm_lock_left", 1)) - 1
        if cond["pm_lock_left"] <= 0:
            cond["pm_lock_held_by"] = None  # the holder finished: the next try gets the lock
    raise Failure("PM_LOCKED", text)


def ensure_package(ctx: Ctx, resource: Any) -> None:
    world, name = ctx.world, resource.name
    if ctx.world.cond.get("pending_reboot") and world.os == "windows":
        raise Failure(
            "REBOOT_PENDING",
            f"{name} not installed. A reboot is pending; Chocolatey exit code 3010 "
            "(ERROR_SUCCESS_REBOOT_REQUIRED) from a previous install.",
        )
    _pm_ready(ctx, name)
    if resource.state == "absent":
        found = find_package(world.family, name)
        if found is not None and found[0] in world.packages:
            ctx.notes.append(f"Removing {found[0]} ({world.packages[found[0]]}) ...")
            _remove_package(world, found[0])
        return
    try:
        chain = resolve_install(world.family, name, world.distro)
    except KeyError:
        text = pm_text(world.family, "not_found", **_pm_values(ctx, name))
        raise Failure("PACKAGE_NOT_FOUND", text) from None
    real, pkg = chain[-1]
    if resource.version is not None and not same(
        "package", "version", resource.version, pkg.version
    ):
        values = _pm_values(ctx, name, version=resource.version)
        raise Failure("PACKAGE_NOT_FOUND", pm_text(world.family, "bad_version", **values))
    todo = [(n, p) for n, p in chain if n not in world.packages]
    _fetch(ctx, real, pkg, todo)
    for dep, p in todo:
        world.packages[dep] = p.version
        ctx.notes.append(f"Setting up {dep} ({p.version}) ...")
        for unit in p.services:
            _new_unit(world, unit)


def _fetch(ctx: Ctx, real: str, pkg: Pkg, todo: list[tuple[str, Pkg]]) -> None:
    """The space and the download the install needs: DISK_FULL, REPO_UNREACHABLE."""
    world = ctx.world
    need = sum(p.size_mb for _, p in todo)
    free = world.cond.get("disk_free_mb")
    if free is not None and need > free:
        values = _pm_values(ctx, real, version=pkg.version, need=str(need - free))
        raise Failure("DISK_FULL", pm_text(world.family, "disk_full", **values))
    if world.cond.get("repo_unreachable") and not _has_mirror(world):
        values = _pm_values(ctx, f"{real}_{pkg.version}")
        raise Failure("REPO_UNREACHABLE", pm_text(world.family, "unreachable", **values))
    if free is not None:
        world.cond["disk_free_mb"] = free - need
    cache = world.cond.setdefault("reclaimable_mb", {})
    cache["package_cache"] = int(cache.get("package_cache", 0)) + need


def _new_unit(world: HostWorld, unit: str) -> None:
    """A unit a package brings: Debian starts what it installs (when it can), RPM distros,
    Homebrew and Windows leave it stopped. Its config directories come with it."""
    svc = world.services.setdefault(unit, {"running": False, "enabled": False, "ports": None})
    spec = SERVICES.get(unit)
    for prefix in spec.config if spec else ():
        if prefix.endswith("/"):
            world.files.setdefault(prefix.rstrip("/"), directory_entry())
    if world.family == "debian" and start_problem(world, unit) is None:
        svc.update(running=True, enabled=True)


def _has_mirror(world: HostWorld) -> bool:
    """An enabled repository other than the distribution's own (the one that is unreachable)."""
    own = _MIRRORS["ubuntu" if world.distro[0] == "ubuntu" else world.family]
    return any(
        r.get("enabled", True) and own not in str(r.get("url")) for r in world.repos.values()
    )


def _remove_package(world: HostWorld, name: str) -> None:
    pkg = PACKAGES[world.family][name]
    del world.packages[name]
    for unit in pkg.services:
        world.services.pop(unit, None)


def ensure_repository(ctx: Ctx, resource: Any) -> None:
    if resource.state == "absent":
        ctx.world.repos.pop(resource.name, None)
        return
    _pm_ready(ctx, resource.name)
    ctx.world.repos[resource.name] = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in resource.model_dump(mode="json").items()
        if k in ("format", "url", "suite", "components", "key_url", "gpgcheck", "enabled")
    }
