"""Service ensures on a simulated world: a unit starts unless its config is invalid or its
port is taken (the text systemctl, nginx, Start-Service or launchctl print), and starting the
time service puts the clock right."""

from __future__ import annotations

import re
from typing import Any

from reaper.agents.transports.sim_ctx import Ctx, Failure
from reaper.agents.transports.sim_packages import SERVICES
from reaper.agents.transports.sim_world import TIME_SERVICES, HostWorld, unit_name

__all__ = [
    "BAD_CONFIG_MARKER",
    "config_problem",
    "directory_entry",
    "ensure_service",
    "listening_ports",
    "ports_of",
    "start",
    "start_problem",
]

# A file holding this text is a syntax error for the service that reads it.
BAD_CONFIG_MARKER = "@@sim:invalid@@"


def directory_entry() -> dict[str, Any]:
    return {"type": "directory", "content": None, "mode": "0755", "owner": "root", "group": "root"}


_LISTEN = re.compile(r"\blisten\s+(?:[\d.]+:)?(\d+)")
_Files = list[tuple[str, Any]]  # (path, entry) of the world's regular files, by path


def _regular_files(world: HostWorld) -> _Files:
    return sorted((p, e) for p, e in world.files.items() if e["type"] == "file")


def _config_files(
    world: HostWorld, unit: str, files: _Files | None = None
) -> list[tuple[str, str]]:
    spec = SERVICES.get(unit)
    prefixes = spec.config if spec else (f"/etc/{unit}/", f"/etc/{unit}.conf")
    return [
        (path, str(entry["content"] or ""))
        for path, entry in (_regular_files(world) if files is None else files)
        if path.startswith(prefixes)
    ]


def ports_of(world: HostWorld, unit: str, files: _Files | None = None) -> list[int]:
    """The ports `unit` listens on: its config files' `listen N`, else its default ports.
    `files`: the world's regular files (`_regular_files`), when the caller asks for several
    units at once."""
    svc = world.services.get(unit, {})
    if svc.get("ports") is not None:
        return [int(p) for p in svc["ports"]]
    listens = [
        int(m) for _, text in _config_files(world, unit, files) for m in _LISTEN.findall(text)
    ]
    spec = SERVICES.get(unit)
    return sorted(set(listens)) or list(spec.ports if spec else ())


def listening_ports(world: HostWorld, units: list[str]) -> list[dict[str, Any]]:
    """The `listening_ports` fact for the running `units`: the files are read once for all."""
    files = _regular_files(world)
    return [
        {"proto": "tcp", "port": p, "process": u} for u in units for p in ports_of(world, u, files)
    ]


def config_problem(world: HostWorld, unit: str) -> str | None:
    """What `unit`'s config test prints when one of its files is invalid (None: valid)."""
    for path, text in _config_files(world, unit):
        line = next((i for i, t in enumerate(text.splitlines(), 1) if BAD_CONFIG_MARKER in t), 0)
        braces = unit in ("nginx", "httpd", "apache2") and text.count("{") != text.count("}")
        if line or braces:
            return _config_error(unit, path, line, text)
    return None


def start_problem(world: HostWorld, unit: str) -> Failure | None:
    """Why `unit` would not start now (a bad config, a taken port), or None."""
    log = config_problem(world, unit)
    if log is not None:
        world.log(unit, *log.splitlines())
        return Failure("CONFIG_INVALID", _start_failed(world, unit, log))
    mine = set(ports_of(world, unit))
    for other, svc in sorted(world.services.items()):
        taken = mine & set(ports_of(world, other)) if other != unit and svc["running"] else set()
        if taken:
            port = min(taken)
            log = (
                f"nginx: [emerg] bind() to 0.0.0.0:{port} failed (98: Address already in use)"
                if unit == "nginx"
                else f"{unit}: could not bind to 0.0.0.0:{port}: Address already in use"
            )
            world.log(unit, log)
            return Failure(
                "PORT_IN_USE",
                _start_failed(world, unit, log),
                summary=f"{unit} cannot start: port {port} is held by {other}",
            )
    return None


def _config_error(unit: str, path: str, line: int, text: str) -> str:
    where = f"{path}:{line or len(text.splitlines())}"
    if unit == "nginx":
        log = (
            f'nginx: [emerg] unknown directive "{BAD_CONFIG_MARKER}" in {where}'
            if line
            else f'nginx: [emerg] unexpected end of file, expecting "}}" in {where}'
        )
        log += "\nnginx: configuration file /etc/nginx/nginx.conf test failed"
    elif unit in ("apache2", "httpd"):
        log = f"AH00526: Syntax error on line {line or 1} of {path}:\nInvalid command found"
    elif unit in ("ssh", "sshd"):
        log = f"{path}: line {line or 1}: Bad configuration option: {BAD_CONFIG_MARKER}"
    else:
        log = f"{unit}: syntax error in {where}"
    return log


def _start_failed(world: HostWorld, unit: str, log: str) -> str:
    if world.os == "windows":
        return (
            f"Start-Service : Service '{unit} ({unit})' cannot be started due to the "
            f"following error: Cannot start service {unit} on computer '.'.\n{log}"
        )
    if world.os == "macos":
        return f"Bootstrap failed: 5: Input/output error\n{log}"
    return (
        f"Job for {unit}.service failed because the control process exited with error "
        f'code.\nSee "systemctl status {unit}.service" and "journalctl -xeu {unit}.service"'
        f" for details.\n{log}"
    )


def _missing_unit(world: HostWorld, name: str) -> Failure:
    if world.os == "windows":
        text = f"Get-Service : Cannot find any service with service name '{name}'."
    elif world.os == "macos":
        text = f'Could not find service "{name}" in domain for system'
    else:
        text = f"Failed to start {name}.service: Unit {name}.service not found."
    return Failure("MISSING_DEPENDENCY", text, summary=f"service {name} is not installed")


def start(ctx: Ctx, unit: str) -> None:
    problem = start_problem(ctx.world, unit)
    svc = ctx.world.services[unit]
    svc["failed"] = problem is not None
    if problem is not None:
        svc["running"] = False  # a failed (re)start leaves it down
        raise problem
    svc["running"] = True
    ctx.world.log(unit, f"Started {unit}.service.")
    if unit == TIME_SERVICES.get(ctx.world.family):
        ctx.world.cond["clock_offset_s"] = 0.0  # in sync again
        ctx.notes.append(f"{unit}: clock stepped to the reference time")


def ensure_service(ctx: Ctx, resource: Any) -> None:
    unit = unit_name(ctx.world, resource.name)
    svc = ctx.world.services.get(unit)
    if svc is None:
        raise _missing_unit(ctx.world, resource.name)
    if resource.enabled is not None:
        svc["enabled"] = resource.enabled
    if resource.state == "running" and not svc["running"]:
        start(ctx, unit)
    elif resource.state == "stopped" and svc["running"]:
        svc["running"] = False
        ctx.world.log(unit, f"Stopped {unit}.service.")
