"""`<os>.ensure_<kind>` on a simulated host's world: converge one resource, or fail the way the
real tool does (its text in the tails, a failure class of `reaper.actions.FAILURE_CLASSES` in
`error_code`).

`ensure(world, resource, ...)` reads the resource back first: when it already matches
(`reaper.desired.diff.diff_resource` says ok) nothing runs and the result is "unchanged".
Otherwise the kind's handler changes the world, or a copy of it in check mode (so a check
reports the same failures a real run would meet, and changes nothing). Result data:

    {"resource": "KIND/NAME", "result": "changed" | "unchanged" | "would_change",
     "before": props | None, "after": props | None, "reboot_required": bool}

and on failure {"resource", "before"} with the error code and the tool's output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reaper.actions import FAILURE_CLASSES
from reaper.agents.base import ActionOutcome
from reaper.agents.transports.sim_packages import (
    PACKAGES,
    SERVICES,
    Pkg,
    find_package,
    pm_text,
    resolve_install,
)
from reaper.agents.transports.sim_world import (
    SSHD_KEYWORDS,
    TIME_SERVICES,
    HostWorld,
    domain_host,
    observe,
    unit_name,
)
from reaper.desired.base import ResourceBase
from reaper.desired.compare import same
from reaper.desired.diff import diff_resource
from reaper.desired.identity import parse_ref
from reaper.desired.system import DnsClient, File
from reaper.desired.template import TemplateProblem, render_template
from reaper.errors import ConfigError
from reaper.models import ResultStatus

__all__ = ["BAD_CONFIG_MARKER", "Failure", "config_problem", "ensure", "ports_of"]

# A file holding this text is a syntax error for the service that reads it.
BAD_CONFIG_MARKER = "@@sim:invalid@@"
_MIRRORS = {
    "debian": "deb.debian.org/debian",
    "ubuntu": "archive.ubuntu.com/ubuntu",
    "rhel": "mirrors.rockylinux.org",
    "suse": "download.opensuse.org",
    "macos": "ghcr.io",
    "windows": "community.chocolatey.org",
}
_SUITES = {"12": "bookworm", "11": "bullseye", "22.04": "jammy", "24.04": "noble"}
_REBOOTING_FEATURES = frozenset({"hyper-v", "failover-clustering", "containers"})


@dataclass(slots=True)
class Failure(Exception):
    code: str
    stderr: str
    stdout: str = ""
    summary: str = ""


@dataclass(slots=True)
class _Ctx:
    world: HostWorld
    peers: _Peers
    facts: Mapping[str, Any]
    host_id: str
    check: bool
    reboot_required: bool = False
    notes: list[str] = field(default_factory=list)


class _Peers(Mapping[str, HostWorld]):
    """The other hosts' worlds, read lazily (a lab may hold thousands). In check mode a peer
    a handler writes to is a copy (`writable`), seen in place of the original from then on."""

    def __init__(self, raw: Mapping[str, HostWorld], *, check: bool) -> None:
        self._raw = raw
        self._check = check
        self._copies: dict[str, HostWorld] = {}

    def __getitem__(self, key: str) -> HostWorld:
        return self._copies.get(key) or self._raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def writable(self, world: HostWorld) -> HostWorld:
        if not self._check or any(w is world for w in self._copies.values()):
            return world
        for key, candidate in self._raw.items():
            if candidate is world:
                copy = self._copies[key] = world.copy()
                return copy
        return world


def _addresses(resource: ResourceBase, peers: Mapping[str, HostWorld]) -> dict[str, str]:
    """Host id → address for what a dns_client's `servers_from` names (nothing else asks)."""
    if not isinstance(resource, DnsClient):
        return {}
    return {h: peers[h].address for h in resource.servers_from if h in peers}


def ensure(
    world: HostWorld,
    resource: ResourceBase,
    *,
    peers: Mapping[str, HostWorld],
    facts: Mapping[str, Any],
    host_id: str,
    check: bool,
) -> ActionOutcome:
    """Converge `resource` on `world` (on copies in check mode). `peers`: the mission's
    other hosts' worlds, by host id (a join asks its DC's, a dns_client their addresses)."""
    rid = str(resource.rid)
    before = observe(world, resource, peers)
    addresses = {**_addresses(resource, peers), host_id: world.address}
    try:
        wanted = diff_resource(
            resource.rid.on(host_id), resource, before, facts=facts, addresses=addresses
        )
    except ConfigError as exc:  # a template that does not render over this host's facts
        return _failed(rid, before, Failure("CONFIG_INVALID", f"template: {exc}"))
    if wanted.action == "ok":
        return _done(rid, "unchanged", before, before, False, f"{rid} is already as declared")
    ctx = _Ctx(
        world.copy() if check else world,
        _Peers(peers, check=check),
        facts,
        host_id,
        check,
    )
    try:
        _HANDLERS[resource.kind](ctx, resource)
    except Failure as failure:
        return _failed(rid, before, failure)
    after = observe(ctx.world, resource, ctx.peers)
    verb = "would change" if check else "changed"
    detail = ", ".join(str(c) for c in wanted.changes) or wanted.action
    return _done(
        rid,
        "would_change" if check else "changed",
        before,
        after,
        ctx.reboot_required,
        f"{rid} {verb}: {detail}",
        "\n".join(ctx.notes),
    )


def _done(
    rid: str,
    result: str,
    before: Any,
    after: Any,
    reboot: bool,
    summary: str,
    stdout: str = "",
) -> ActionOutcome:
    return ActionOutcome(
        status=ResultStatus.SUCCESS,
        summary=summary,
        data={
            "resource": rid,
            "result": result,
            "before": before,
            "after": after,
            "reboot_required": reboot,
        },
        stdout_tail=stdout or summary,
    )


def _failed(rid: str, before: Any, failure: Failure) -> ActionOutcome:
    retriable = FAILURE_CLASSES.get(failure.code, (False, ""))[0]
    first = failure.stderr.strip().splitlines()[-1] if failure.stderr.strip() else failure.code
    return ActionOutcome(
        status=ResultStatus.ERROR,
        summary=failure.summary or f"{rid}: {failure.code}: {first}"[:300],
        data={"resource": rid, "before": before},
        stdout_tail=failure.stdout,
        stderr_tail=failure.stderr,
        error_code=failure.code,
        retriable=retriable,
    )


# -- packages ------------------------------------------------------------------------------


def _pm_values(ctx: _Ctx, name: str, **extra: str) -> dict[str, str]:
    world = ctx.world
    mirror = _MIRRORS["ubuntu" if world.distro[0] == "ubuntu" else world.family]
    return {
        "name": name,
        "mirror": mirror,
        "suite": _SUITES.get(world.distro[1], "stable"),
        "holder": str(world.cond.get("pm_lock_held_by") or ""),
        **extra,
    }


def _pm_ready(ctx: _Ctx, name: str) -> None:
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


def _package(ctx: _Ctx, resource: Any) -> None:
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


def _fetch(ctx: _Ctx, real: str, pkg: Pkg, todo: list[tuple[str, Pkg]]) -> None:
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
            world.files.setdefault(prefix.rstrip("/"), _directory_entry())
    if world.family == "debian" and _start_problem(world, unit) is None:
        svc.update(running=True, enabled=True)


def _directory_entry() -> dict[str, Any]:
    return {"type": "directory", "content": None, "mode": "0755", "owner": "root", "group": "root"}


def _has_mirror(world: HostWorld) -> bool:
    return any(r.get("enabled", True) for r in world.repos.values())


def _remove_package(world: HostWorld, name: str) -> None:
    pkg = PACKAGES[world.family][name]
    del world.packages[name]
    for unit in pkg.services:
        world.services.pop(unit, None)


# -- services ------------------------------------------------------------------------------


def _config_files(world: HostWorld, unit: str) -> list[tuple[str, str]]:
    spec = SERVICES.get(unit)
    prefixes = spec.config if spec else (f"/etc/{unit}/", f"/etc/{unit}.conf")
    return sorted(
        (path, str(entry["content"] or ""))
        for path, entry in world.files.items()
        if entry["type"] == "file" and any(path.startswith(p) for p in prefixes)
    )


def ports_of(world: HostWorld, unit: str) -> list[int]:
    """The ports `unit` listens on: its config files' `listen N`, else its default ports."""
    svc = world.services.get(unit, {})
    if svc.get("ports") is not None:
        return [int(p) for p in svc["ports"]]
    listens = [
        int(m)
        for _, text in _config_files(world, unit)
        for m in re.findall(r"\blisten\s+(?:[\d.]+:)?(\d+)", text)
    ]
    spec = SERVICES.get(unit)
    return sorted(set(listens)) or list(spec.ports if spec else ())


def config_problem(world: HostWorld, unit: str) -> str | None:
    """What `unit`'s config test prints when one of its files is invalid (None: valid)."""
    for path, text in _config_files(world, unit):
        line = next((i for i, t in enumerate(text.splitlines(), 1) if BAD_CONFIG_MARKER in t), 0)
        braces = unit in ("nginx", "httpd", "apache2") and text.count("{") != text.count("}")
        if line or braces:
            return _config_error(unit, path, line, text)
    return None


def _start_problem(world: HostWorld, unit: str) -> Failure | None:
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


def _start(ctx: _Ctx, unit: str) -> None:
    problem = _start_problem(ctx.world, unit)
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


def _service(ctx: _Ctx, resource: Any) -> None:
    unit = unit_name(ctx.world, resource.name)
    svc = ctx.world.services.get(unit)
    if svc is None:
        raise _missing_unit(ctx.world, resource.name)
    if resource.enabled is not None:
        svc["enabled"] = resource.enabled
    if resource.state == "running" and not svc["running"]:
        _start(ctx, unit)
    elif resource.state == "stopped" and svc["running"]:
        svc["running"] = False
        ctx.world.log(unit, f"Stopped {unit}.service.")


# -- files and accounts ----------------------------------------------------------------------


def _no_space(ctx: _Ctx, path: str) -> None:
    if ctx.world.cond.get("disk_free_mb") == 0:
        text = (
            "Set-Content : There is not enough space on the disk."
            if ctx.world.os == "windows"
            else f"cp: error writing '{path}': No space left on device"
        )
        raise Failure("DISK_FULL", text)


def _owner(ctx: _Ctx, resource: Any) -> None:
    for attr, table in (("owner", ctx.world.users), ("group", ctx.world.groups)):
        who = getattr(resource, attr)
        if who is not None and who not in table:
            raise Failure(
                "MISSING_DEPENDENCY",
                f"chown: invalid {'user' if attr == 'owner' else 'group'}: '{who}'",
            )


def _path(ctx: _Ctx, resource: Any) -> None:
    files, path = ctx.world.files, resource.path
    if resource.state == "absent":
        files.pop(path, None)
        return
    _no_space(ctx, path)
    _owner(ctx, resource)
    entry = files.get(path)
    if entry is None or entry["type"] != resource.kind:
        default_mode = (
            None if ctx.world.os == "windows" else ("0644" if resource.kind == "file" else "0755")
        )
        admin = "Administrators" if ctx.world.os == "windows" else "root"
        entry = files[path] = {
            "type": resource.kind,
            "content": "" if resource.kind == "file" else None,
            "mode": default_mode,
            "owner": admin,
            "group": None if ctx.world.os == "windows" else "root",
        }
    old = entry.get("content")
    for attr in ("mode", "owner", "group"):
        if getattr(resource, attr) is not None:
            entry[attr] = getattr(resource, attr)
    if isinstance(resource, File):
        text = resource.content
        if resource.template is not None:
            try:
                text = render_template(resource.template, ctx.facts)
            except TemplateProblem as exc:
                raise Failure("CONFIG_INVALID", f"template error: {exc}") from None
        if text is not None:
            entry["content"] = text
        if entry["content"] != old:
            _notify(ctx, resource)


def _notify(ctx: _Ctx, resource: File) -> None:
    """Restart the running services the file notifies (on this host)."""
    for text in resource.notify:
        ref = parse_ref(text, host=ctx.host_id)
        unit = unit_name(ctx.world, ref.name)
        svc = ctx.world.services.get(unit)
        if ref.host != ctx.host_id or svc is None or not svc["running"]:
            continue
        ctx.notes.append(f"RUNNING HANDLER [restart {unit}]")
        _start(ctx, unit)


def _user(ctx: _Ctx, resource: Any) -> None:
    users, name = ctx.world.users, resource.name
    if resource.state == "absent":
        users.pop(name, None)
        return
    for group in resource.groups:
        if group not in ctx.world.groups:
            text = (
                f"Add-LocalGroupMember : Group {group} was not found."
                if ctx.world.os == "windows"
                else f"usermod: group '{group}' does not exist"
            )
            raise Failure("MISSING_DEPENDENCY", text)
    posix = ctx.world.os != "windows"
    user = users.get(name)
    if user is None:
        uid = max([999, *(u["uid"] or 0 for u in users.values())]) + 1 if posix else None
        user = users[name] = {
            "uid": uid,
            "groups": [],
            "shell": "/bin/bash" if posix else None,
            "home": f"/home/{name}" if posix else f"C:\\Users\\{name}",
            "enabled": True,
        }
    for attr in ("uid", "shell", "home", "enabled"):
        if getattr(resource, attr) is not None:
            user[attr] = getattr(resource, attr)
    user["groups"] = sorted({*user["groups"], *resource.groups})


def _group(ctx: _Ctx, resource: Any) -> None:
    groups = ctx.world.groups
    if resource.state == "absent":
        groups.pop(resource.name, None)
        return
    posix = ctx.world.os != "windows"
    gid = resource.gid
    if gid is None and posix:
        gid = (
            groups.get(resource.name, {}).get("gid")
            or max([999, *(g["gid"] or 0 for g in groups.values())]) + 1
        )
    groups[resource.name] = {"gid": gid}


def _setting(ctx: _Ctx, resource: Any) -> None:
    ctx.world.settings[resource.name] = {"value": resource.value, "type": resource.type}


def _sshd(ctx: _Ctx, resource: Any) -> None:
    key = resource.name.lower()
    if key not in SSHD_KEYWORDS:
        raise Failure(
            "CONFIG_INVALID",
            f"/etc/ssh/sshd_config: line 14: Bad configuration "
            f"option: {resource.name}\n/etc/ssh/sshd_config: terminating, 1 bad "
            "configuration options",
        )
    ctx.world.sshd[key] = resource.value
    ctx.notes.append("sshd -t: ok; systemctl reload ssh")


def _firewall(ctx: _Ctx, resource: Any) -> None:
    name = resource.rid.name
    if resource.state == "absent":
        ctx.world.firewall.pop(name, None)
        return
    ctx.world.firewall[name] = {
        "port": resource.port,
        "proto": resource.proto,
        "source": resource.source,
        "action": resource.action,
    }


def _dns(ctx: _Ctx, resource: DnsClient) -> None:
    servers = list(resource.servers)
    for host in resource.servers_from:
        peer = ctx.world if host == ctx.host_id else ctx.peers.get(host)
        if peer is None:
            raise Failure(
                "MISSING_DEPENDENCY",
                f"servers_from: the address of {host} is not known yet (discover it first)",
            )
        servers.append(peer.address)
    entry = ctx.world.dns.setdefault(resource.name, {"servers": [], "search": []})
    entry["servers"] = servers
    if resource.search:
        entry["search"] = list(resource.search)


def _repo(ctx: _Ctx, resource: Any) -> None:
    if resource.state == "absent":
        ctx.world.repos.pop(resource.name, None)
        return
    _pm_ready(ctx, resource.name)
    ctx.world.repos[resource.name] = {
        k: (list(v) if isinstance(v, tuple) else v)
        for k, v in resource.model_dump(mode="json").items()
        if k in ("format", "url", "suite", "components", "key_url", "gpgcheck", "enabled")
    }


# -- Windows and Active Directory --------------------------------------------------------------


def _reboot_gate(ctx: _Ctx, what: str) -> None:
    if ctx.world.cond.get("pending_reboot"):
        raise Failure(
            "REBOOT_PENDING",
            f"{what} : The requested operation cannot be performed "
            "because a restart is pending from a previous installation or update. "
            "Restart the computer, then try again.",
        )


def _feature(ctx: _Ctx, resource: Any) -> None:
    if resource.state == "absent":
        ctx.world.features.pop(resource.name, None)
        return
    _reboot_gate(ctx, "Install-WindowsFeature")
    ctx.world.features[resource.name] = True
    ctx.reboot_required = resource.name.lower() in _REBOOTING_FEATURES
    ctx.notes.append(
        f"Success Restart Needed Exit Code      Feature Result\n------- -------------- "
        f"---------      --------------\nTrue    {'Yes' if ctx.reboot_required else 'No'}"
        f"             Success        {{{resource.name}}}"
    )


def _ad_domain(ctx: _Ctx, resource: Any) -> None:
    world = ctx.world
    if not any(f.lower() == "ad-domain-services" for f in world.features):
        raise Failure(
            "MISSING_DEPENDENCY",
            "Install-ADDSForest : The term 'Install-ADDSForest' "
            "is not recognized as the name of a cmdlet, function, script file, or "
            "operable program. (install the AD-Domain-Services feature first)",
        )
    _reboot_gate(ctx, "Install-ADDSForest")
    if world.domain is not None and str(world.domain["name"]).lower() != resource.name.lower():
        raise Failure(
            "CONFIG_INVALID",
            f"Install-ADDSForest : this server is already the "
            f"domain controller of {world.domain['name']}",
        )
    world.domain = {
        "name": resource.name,
        "netbios": resource.netbios,
        "functional_level": resource.functional_level or "WinThreshold",
        "users": {"Administrator": {"ou": None, "groups": ["Domain Admins"], "enabled": True}},
        "groups": {
            g: {"ou": None, "scope": "global", "category": "security"}
            for g in ("Domain Admins", "Domain Users", "Domain Computers")
        },
        "computers": [],
    }
    for unit in ("DNS", "NTDS", "Netlogon", "Kdc"):
        world.services[unit] = {"running": True, "enabled": True, "ports": None}
    world.dns["default"] = {"servers": ["127.0.0.1"], "search": [resource.name]}
    ctx.reboot_required = True
    ctx.notes.append(
        "Install-ADDSForest: Operation completed successfully. The server will "
        "restart to complete the promotion."
    )


def _membership(ctx: _Ctx, resource: Any) -> None:
    world, domain = ctx.world, resource.domain
    if resource.state == "absent":
        world.membership = None
        return
    _reboot_gate(ctx, "Add-Computer")
    name = ctx.host_id.upper()[:15]
    head = (
        f"Add-Computer : Computer '{name}' failed to join domain '{domain}' from its "
        "current workgroup 'WORKGROUP' with following error message: "
    )
    dc = domain_host(domain, world, ctx.peers)
    dc = None if dc is None else ctx.peers.writable(dc)
    servers = world.dns.get("default", {}).get("servers", [])
    if dc is None or dc.address not in servers:
        raise Failure(
            "DNS_MISCONFIGURED",
            head + "The specified domain either does not exist or could not be contacted.",
            summary=f"{domain} does not resolve from "
            f"{ctx.host_id} (DNS servers: {', '.join(servers) or 'none'})",
        )
    skew = abs(float(world.cond.get("clock_offset_s", 0)) - float(dc.cond.get("clock_offset_s", 0)))
    if skew > 300:
        raise Failure(
            "CLOCK_SKEW",
            head + "The time at the Primary Domain Controller is "
            "different than the time at the Backup Domain Controller or member server "
            "by too large an amount.",
            summary=f"{ctx.host_id}'s clock is {skew:.0f}s "
            f"off the domain controller's (Kerberos allows 300s)",
        )
    world.membership = {
        "domain": dc.domain["name"] if dc.domain else domain,
        "user": resource.user,
        "ou": resource.ou,
    }
    if dc.domain is not None and name not in dc.domain["computers"]:
        dc.domain["computers"].append(name)
    ctx.reboot_required = True
    ctx.notes.append(
        f"WARNING: The changes will take effect after you restart the computer {name}."
    )


def _directory(ctx: _Ctx, resource: Any) -> None:
    named = (
        resource.domain
        or (ctx.world.domain or {}).get("name")
        or (ctx.world.membership or {}).get("domain")
    )
    dc = None if named is None else domain_host(str(named), ctx.world, ctx.peers)
    dc = None if dc is None else ctx.peers.writable(dc)
    if dc is None or dc.domain is None:
        cmd = "New-ADUser" if resource.kind == "ad_user" else "New-ADGroup"
        raise Failure(
            "MISSING_DEPENDENCY",
            f"{cmd} : Unable to find a default server with Active Directory Web Services running.",
        )
    table = dc.domain["users" if resource.kind == "ad_user" else "groups"]
    if resource.state == "absent":
        table.pop(resource.name, None)
        return
    if resource.kind == "ad_user":
        for group in resource.groups:
            if group not in dc.domain["groups"]:
                parts = ",".join(f"DC={p}" for p in str(dc.domain["name"]).split("."))
                raise Failure(
                    "MISSING_DEPENDENCY",
                    f"Add-ADGroupMember : Cannot find an object "
                    f"with identity: '{group}' under: '{parts}'.",
                )
        entry = table.setdefault(resource.name, {"ou": None, "groups": [], "enabled": True})
        entry["groups"] = sorted({*entry["groups"], *resource.groups})
        entry["enabled"] = resource.enabled
    else:
        entry = table.setdefault(resource.name, {"ou": None})
        entry.update(scope=resource.scope, category=resource.category)
    if resource.ou is not None:
        entry["ou"] = resource.ou


_HANDLERS: dict[str, Callable[[_Ctx, Any], None]] = {
    "package": _package,
    "service": _service,
    "file": _path,
    "directory": _path,
    "user": _user,
    "group": _group,
    "setting": _setting,
    "sshd_option": _sshd,
    "firewall": _firewall,
    "dns_client": _dns,
    "package_repository": _repo,
    "windows_feature": _feature,
    "ad_domain": _ad_domain,
    "domain_membership": _membership,
    "ad_user": _directory,
    "ad_group": _directory,
}
