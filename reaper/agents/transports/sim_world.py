"""The stateful world of a simulated host: what is installed, running, written and configured,
and the conditions (faults) it is in. See docs/sim-world.md for the fault catalog.

A `HostWorld` is plain data (dicts, lists, strings, numbers): `copy()` is a deep copy that
never aliases, `to_data()` is its JSON form (the later step that keeps the world in the
mission store persists that). It is built deterministically from the host's seeded facts and
its `sim.world` conditions, so every run of a lab starts from the same world.

`observe(world, resource, peers)` reads one declared resource back in the form
`reaper.desired.diff.diff_resource` takes (the fields of `reported_fields(kind)`), or None
when it does not exist. Changing the world is `sim_ensure`'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from reaper.agents.transports.sim_packages import PACKAGES, family_of, find_package
from reaper.desired.base import ResourceBase
from reaper.desired.compare import content_digest
from reaper.models import SimWorldSettings

__all__ = [
    "SSHD_DEFAULTS",
    "TIME_SERVICES",
    "HostWorld",
    "address_of",
    "build_world",
    "copy_data",
    "domain_host",
    "observe",
    "unit_name",
]

# `sshd -T` keywords the simulated sshd knows, with its defaults.
SSHD_DEFAULTS: dict[str, str] = {
    "permitrootlogin": "prohibit-password",
    "passwordauthentication": "yes",
    "pubkeyauthentication": "yes",
    "kbdinteractiveauthentication": "no",
    "challengeresponseauthentication": "no",
    "usepam": "yes",
    "x11forwarding": "no",
    "maxauthtries": "6",
    "maxsessions": "10",
    "port": "22",
    "permitemptypasswords": "no",
    "clientaliveinterval": "0",
    "clientalivecountmax": "3",
    "logingracetime": "120",
    "allowtcpforwarding": "yes",
    "allowagentforwarding": "yes",
    "gatewayports": "no",
    "permittunnel": "no",
    "printmotd": "yes",
    "usedns": "no",
    "compression": "yes",
    "loglevel": "info",
    "strictmodes": "yes",
    "hostbasedauthentication": "no",
    "ignorerhosts": "yes",
    "banner": "none",
}
SSHD_KEYWORDS = frozenset(
    {*SSHD_DEFAULTS, "allowusers", "denyusers", "allowgroups", "denygroups", "ciphers", "macs",
     "kexalgorithms", "listenaddress", "authenticationmethods", "acceptenv", "subsystem"}
)  # fmt: skip
# The service that keeps each OS's clock in sync (stopped while the clock is off).
TIME_SERVICES = {"debian": "chrony", "rhel": "chronyd", "suse": "chronyd",
                 "windows": "w32time", "macos": "com.apple.timed"}  # fmt: skip
# Service names that are another unit's alias (`sshd` is Debian's `ssh.service`, which also
# answers to `chronyd`). `chrony` on RHEL and SUSE is a leniency of the sim (their unit is
# `chronyd`), so the shipped Linux profile converges on every simulated distro.
_ALIASES = {
    "debian": {"sshd": "ssh", "chronyd": "chrony"},
    "rhel": {"chrony": "chronyd"},
    "suse": {"chrony": "chronyd"},
}
# Packages a fresh host has, per family (plus those of the services its facts show running).
_BASE_PACKAGES = {
    "debian": ("openssh-server", "sudo", "cron", "rsyslog", "python3", "chrony"),
    "rhel": ("openssh-server", "sudo", "cronie", "rsyslog", "python3", "chrony"),
    "suse": ("openssh-server", "sudo", "rsyslog", "chrony"),
    "macos": (),
    "windows": (),
}
# A running service in the facts → the package that brings it, per family.
_SERVICE_PACKAGE = {
    "debian": {"nginx": "nginx", "postgresql": "postgresql", "mariadb": "mariadb-server",
               "docker": "docker.io", "redis-server": "redis-server", "apache2": "apache2",
               "auditd": "auditd"},
    "rhel": {"nginx": "nginx", "postgresql": "postgresql-server", "mariadb": "mariadb-server",
             "redis-server": "redis", "apache2": "httpd", "auditd": "audit"},
    "suse": {"nginx": "nginx", "postgresql": "postgresql-server", "apache2": "apache2",
             "auditd": "audit"},
}  # fmt: skip
_BUILTIN_SERVICES = {
    "windows": ("WinRM", "w32time", "Dnscache", "EventLog", "LanmanServer", "Spooler"),
    "macos": ("com.openssh.sshd", "com.apple.timed", "com.apple.syslogd"),
}
_SUPER_GROUP = {"debian": "sudo", "rhel": "wheel", "suse": "wheel", "macos": "admin"}


@dataclass(slots=True)
class HostWorld:
    """One simulated host's state. Every field is plain JSON-like data."""

    os: str
    family: str
    distro: tuple[str, str]  # (os-release ID, VERSION_ID)
    address: str
    packages: dict[str, str] = field(default_factory=dict)  # name → version
    # unit → {"running", "enabled", "ports": [..] (None: from its config)}
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    # path → {"type": "file" | "directory", "content", "mode", "owner", "group"}
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    sshd: dict[str, str] = field(default_factory=dict)  # keyword (lower case) → value
    firewall: dict[str, dict[str, Any]] = field(default_factory=dict)
    dns: dict[str, dict[str, Any]] = field(default_factory=dict)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: dict[str, bool] = field(default_factory=dict)
    # The forest this host is the DC of: {"name", "netbios", "functional_level", "users",
    # "groups", "computers"}; None when it is no domain controller.
    domain: dict[str, Any] | None = None
    membership: dict[str, Any] | None = None  # {"domain", "user", "ou"}
    # Live conditions: disk_free_mb, reclaimable_mb{}, pm_lock_held_by, pm_lock_left,
    # repo_unreachable, clock_offset_s, pending_reboot.
    cond: dict[str, Any] = field(default_factory=dict)
    journal: dict[str, list[str]] = field(default_factory=dict)  # unit → its log lines
    reboots: int = 0

    def copy(self) -> HostWorld:
        """A deep copy: nothing of it aliases this world."""
        return HostWorld.from_data(self.to_data())

    def to_data(self) -> dict[str, Any]:
        """The JSON form (plain data, deep-copied): what a mission store would keep."""
        data = asdict(self)
        data["distro"] = list(self.distro)
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, owned: bool = False) -> HostWorld:
        """A world from its JSON form: deep-copied, unless `owned` (a fresh dict nothing
        else holds, e.g. just unmarshalled), which the world then takes as it is."""
        fresh = dict(data) if owned else copy_data(dict(data))
        fresh["distro"] = tuple(fresh["distro"])
        return cls(**fresh)

    def log(self, unit: str, *lines: str) -> None:
        self.journal.setdefault(unit, []).extend(lines)
        del self.journal[unit][:-200]


def copy_data(value: Any) -> Any:
    """A deep copy of plain JSON-like data: a comprehension copy is several times cheaper than
    copy.deepcopy, and results must never alias a host's live state."""
    if isinstance(value, dict):
        return {k: copy_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_data(v) for v in value]
    return value


def unit_name(world: HostWorld, name: str) -> str:
    """The unit a service name means on this host (aliases resolved; Windows is caseless)."""
    name = _ALIASES.get(world.family, {}).get(name, name)
    if world.os == "windows":
        for unit in world.services:
            if unit.lower() == name.lower():
                return unit
    return name


def address_of(facts: Mapping[str, Any], fallback: str = "") -> str:
    for entry in facts.get("addresses", ()):
        addr = str(entry.get("addr", ""))
        if addr and not addr.startswith("127."):
            return addr
    return fallback


def build_world(os: str, facts: Mapping[str, Any], settings: SimWorldSettings | None) -> HostWorld:
    """A host's world from its facts and conditions (deterministic: no randomness here)."""
    conditions = settings or SimWorldSettings()
    distro = (
        (str(facts.get("os", {}).get("id", "")), str(facts.get("os", {}).get("version", "")))
        if os == "linux"
        else (os, "")
    )
    family = family_of(os, distro[0])
    address = address_of(facts, "10.0.0.10")
    world = HostWorld(os=os, family=family, distro=distro, address=address)
    running = {str(s) for s in facts.get("services", ())}
    names = list(_BASE_PACKAGES[family])
    names += [p for s, p in _SERVICE_PACKAGE.get(family, {}).items() if s in running]
    for name in names:
        found = find_package(family, name)
        if found is not None:
            _install(world, found[0], started=False)
    for unit in world.services:
        alias = {v: k for k, v in _ALIASES.get(family, {}).items()}.get(unit, unit)
        if unit in running or alias in running or unit in ("ssh", "sshd", "cron", "crond"):
            world.services[unit].update(running=True, enabled=True)
    for unit in _BUILTIN_SERVICES.get(os, ()):
        on = unit != "com.openssh.sshd" or bool(facts.get("sshd", {}).get("enabled"))
        world.services[unit] = {"running": on, "enabled": on, "ports": None}
    _accounts(world, facts)
    _filesystem(world, facts)
    if os == "linux":
        for key, value in facts.get("sysctl", {}).items():
            world.settings[key] = {"value": str(value), "type": None}
        world.sshd = {k: str(v) for k, v in facts.get("sshd", {}).items()}
    gateway = ".".join([*address.split(".")[:3], "2"])
    world.dns["default"] = {"servers": [gateway], "search": []}
    world.cond = {
        "disk_free_mb": conditions.disk_free_mb,
        "reclaimable_mb": dict(conditions.reclaimable_mb),
        "pm_lock_held_by": conditions.pm_lock_held_by,
        "pm_lock_left": conditions.pm_lock_attempts if conditions.pm_lock_held_by else 0,
        "repo_unreachable": conditions.repo_unreachable,
        "clock_offset_s": conditions.clock_offset_s,
        "pending_reboot": conditions.pending_reboot,
    }
    if conditions.clock_offset_s:
        unit = TIME_SERVICES[family]
        world.services.setdefault(unit, {"running": False, "enabled": False, "ports": None})
        world.services[unit].update(running=False, enabled=False)
    for port, holder in sorted(conditions.port_in_use.items()):
        unit = holder.split()[0]
        world.services[unit] = {"running": True, "enabled": True, "ports": [int(port)]}
    for path, content in sorted(conditions.files.items()):
        world.files[path] = {"type": "file", "content": content, "mode": "0644",
                             "owner": "root", "group": "root"}  # fmt: skip
    return world


def _install(world: HostWorld, name: str, *, started: bool) -> None:
    pkg = PACKAGES[world.family][name]
    world.packages[name] = pkg.version
    for unit in pkg.services:
        world.services.setdefault(unit, {"running": started, "enabled": started, "ports": None})


def _accounts(world: HostWorld, facts: Mapping[str, Any]) -> None:
    if world.os == "windows":
        world.users = {
            "Administrator": {"uid": None, "groups": ["Administrators"], "shell": None,
                              "home": "C:\\Users\\Administrator", "enabled": True},
            "Guest": {"uid": None, "groups": ["Guests"], "shell": None, "home": None,
                      "enabled": False},
        }  # fmt: skip
        for name in ("Administrators", "Users", "Guests", "Remote Desktop Users"):
            world.groups[name] = {"gid": None}
        return
    world.groups = {"root": {"gid": 0}, "adm": {"gid": 4}, "users": {"gid": 100}}
    super_group = _SUPER_GROUP[world.family]
    world.groups[super_group] = {"gid": 27 if super_group == "sudo" else 10}
    if world.os == "macos":
        world.groups["staff"] = {"gid": 20}
    world.users["root"] = {"uid": 0, "groups": [], "shell": "/bin/bash", "home": "/root",
                           "enabled": True}  # fmt: skip
    for name in (str(u) for u in facts.get("uid0_users", ()) if u != "root"):
        world.users[name] = {"uid": 0, "groups": [], "shell": "/bin/sh",
                             "home": f"/home/{name}", "enabled": True}  # fmt: skip


def _filesystem(world: HostWorld, facts: Mapping[str, Any]) -> None:
    if world.os == "windows":
        for path in ("C:\\Windows", "C:\\ProgramData", "C:\\Temp"):
            world.files[path] = {"type": "directory", "content": None, "mode": None,
                                 "owner": "Administrators", "group": None}  # fmt: skip
        return
    for path in ("/etc", "/tmp", "/var", "/var/log", "/opt", "/srv", "/home", "/root"):
        world.files[path] = {"type": "directory", "content": None, "mode": "0755",
                             "owner": "root", "group": "root"}  # fmt: skip
    world.files["/tmp"]["mode"] = "1777"
    world.files["/etc/ssh"] = {"type": "directory", "content": None, "mode": "0755",
                               "owner": "root", "group": "root"}  # fmt: skip
    include = "Include /etc/ssh/sshd_config.d/*.conf\n"
    world.files["/etc/ssh/sshd_config"] = {"type": "file", "content": include, "mode": "0644",
                                           "owner": "root", "group": "root"}  # fmt: skip
    world.files["/etc/motd"] = {"type": "file", "content": str(facts.get("motd", "")),
                                "mode": "0644", "owner": "root", "group": "root"}  # fmt: skip


def domain_host(domain: str, world: HostWorld, peers: Mapping[str, HostWorld]) -> HostWorld | None:
    """The world that is the DC of `domain` (this host's or a peer's), or None."""
    for candidate in (world, *peers.values()):
        hosted = candidate.domain
        if hosted is not None and str(hosted["name"]).lower() == domain.lower():
            return candidate
    return None


def _directory_domain(
    resource: ResourceBase, world: HostWorld, peers: Mapping[str, HostWorld]
) -> HostWorld | None:
    named = getattr(resource, "domain", None)
    if named is None:
        if world.domain is not None:
            return world
        named = (world.membership or {}).get("domain")
    return None if named is None else domain_host(str(named), world, peers)


Props = dict[str, Any] | None
_Observer = Callable[[HostWorld, ResourceBase, Mapping[str, HostWorld]], Props]


def observe(world: HostWorld, resource: ResourceBase, peers: Mapping[str, HostWorld]) -> Props:
    """What discover reports of `resource` (None: it does not exist)."""
    return _OBSERVERS[resource.kind](world, resource, peers)


def _package(world: HostWorld, resource: ResourceBase, peers: Mapping[str, HostWorld]) -> Props:
    found = find_package(world.family, resource.rid.name)
    version = world.packages.get(found[0]) if found else None
    return None if version is None else {"state": "present", "version": version}


def _service(world: HostWorld, resource: ResourceBase, peers: Mapping[str, HostWorld]) -> Props:
    svc = world.services.get(unit_name(world, resource.rid.name))
    if svc is None:
        return None
    return {"state": "running" if svc["running"] else "stopped", "enabled": svc["enabled"]}


def _path(world: HostWorld, resource: ResourceBase, peers: Mapping[str, HostWorld]) -> Props:
    entry = world.files.get(resource.rid.name)
    if entry is None or entry["type"] != resource.kind:
        return None
    out = {"state": "present", "mode": entry["mode"], "owner": entry["owner"],
           "group": entry["group"]}  # fmt: skip
    if resource.kind == "file":
        out["sha256"] = content_digest(entry["content"] or "")
    return out


def _table(
    attr: str, *, present: bool = True
) -> Callable[[HostWorld, ResourceBase, Mapping[str, HostWorld]], Props]:
    """An observer reading `world.<attr>[name]` (with `state: present` added)."""

    def read(world: HostWorld, resource: ResourceBase, peers: Mapping[str, HostWorld]) -> Props:
        entry = getattr(world, attr).get(resource.rid.name)
        if entry is None:
            return None
        return {"state": "present", **copy_data(entry)} if present else copy_data(entry)

    return read


def _sshd(world: HostWorld, resource: ResourceBase, peers: Mapping[str, HostWorld]) -> Props:
    key = resource.rid.name.lower()
    value = world.sshd.get(key, SSHD_DEFAULTS.get(key))
    return None if value is None else {"value": value}


def _feature(world: HostWorld, resource: ResourceBase, peers: Mapping[str, HostWorld]) -> Props:
    name = resource.rid.name.lower()
    installed = any(f.lower() == name and on for f, on in world.features.items())
    return {"state": "present"} if installed else None


def _ad_domain(world: HostWorld, resource: ResourceBase, peers: Mapping[str, HostWorld]) -> Props:
    hosted = world.domain
    if hosted is None or str(hosted["name"]).lower() != resource.rid.name.lower():
        return None
    return {"netbios": hosted["netbios"], "functional_level": hosted["functional_level"]}


def _member(world: HostWorld, resource: ResourceBase, peers: Mapping[str, HostWorld]) -> Props:
    member = world.membership
    if member is None or str(member["domain"]).lower() != resource.rid.name.lower():
        return None
    return {"state": "present", "user": member["user"], "ou": member["ou"]}


def _directory(world: HostWorld, resource: ResourceBase, peers: Mapping[str, HostWorld]) -> Props:
    dc = _directory_domain(resource, world, peers)
    if dc is None or dc.domain is None:
        return None
    entry = dc.domain["users" if resource.kind == "ad_user" else "groups"].get(resource.rid.name)
    if entry is None:
        return None
    return {"state": "present", "domain": dc.domain["name"], **copy_data(entry)}


_OBSERVERS: dict[str, _Observer] = {
    "package": _package,
    "service": _service,
    "file": _path,
    "directory": _path,
    "user": _table("users"),
    "group": _table("groups"),
    "setting": _table("settings", present=False),
    "sshd_option": _sshd,
    "firewall": _table("firewall"),
    "dns_client": _table("dns", present=False),
    "package_repository": _table("repos"),
    "windows_feature": _feature,
    "ad_domain": _ad_domain,
    "domain_membership": _member,
    "ad_user": _directory,
    "ad_group": _directory,
}
