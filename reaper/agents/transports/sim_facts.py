"""Facts and baseline items of simulated hosts: the reference shape the real OS code returns.

`discover` data, per OS (every key present unless `sections` limited the top-level keys):

linux::

    os{id, name, version, pretty_name}, kernel, hostname, addresses[{iface, addr}],
    cpu{model, cores}, memory_mb, disks[{mount, size_gb, used_pct}], package_manager,
    services[str] (running units, without `.service`), listening_ports[{proto, port, process}],
    uid0_users[str], sshd{permitrootlogin, passwordauthentication, x11forwarding,
    maxauthtries, port}, firewall{backend, enabled}, sysctl{"net.ipv4.ip_forward": int},
    auditd{installed, enabled}, motd

windows::

    computer{name, domain, os_name, os_version, build, description}, addresses[{iface, addr}],
    cpu{model, cores}, memory_mb, firewall{domain, private, public: "on" | "off"},
    rdp{enabled, nla}, defender{realtime, signatures_age_days},
    updates{auto, last_installed: "YYYY-MM-DD"}, local_admins[str], smb{v1_enabled}

macos::

    sw_vers{product_name, product_version, build}, hostname, addresses[{iface, addr}],
    hardware{model, chip, memory_gb}, firewall{enabled, stealth}, sshd{enabled},
    filevault: "On" | "Off", gatekeeper{enabled}, sip{enabled}

`baseline` data: {"items": [{"name", "changed", "before", "after"}], "changed": n,
"unchanged": n, "check_mode": bool}; item names are those of `BASELINE_ITEMS`.
`prepare` data: {"installed": [...], "already_present": [...]}.

Values vary per host from a seeded RNG; they are plausible, not real inventories.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BASELINE_ITEMS",
    "PREPARE_ITEMS",
    "BaselineItem",
    "deep_merge",
    "facts_for",
    "get_path",
    "set_path",
]

Facts = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BaselineItem:
    """One setting the baseline enforces: where it lives in the facts and its wanted value."""

    name: str
    path: tuple[str, ...]
    want: Any


BASELINE_ITEMS: dict[str, tuple[BaselineItem, ...]] = {
    "linux": (
        BaselineItem("sshd_permit_root_login", ("sshd", "permitrootlogin"), "prohibit-password"),
        BaselineItem("sshd_password_authentication", ("sshd", "passwordauthentication"), "no"),
        BaselineItem("sshd_x11_forwarding", ("sshd", "x11forwarding"), "no"),
        BaselineItem("firewall_enabled", ("firewall", "enabled"), True),
        BaselineItem("ip_forward_disabled", ("sysctl", "net.ipv4.ip_forward"), 0),
        BaselineItem("auditd_enabled", ("auditd", "enabled"), True),
    ),
    "windows": (
        BaselineItem("firewall_domain", ("firewall", "domain"), "on"),
        BaselineItem("firewall_private", ("firewall", "private"), "on"),
        BaselineItem("firewall_public", ("firewall", "public"), "on"),
        BaselineItem("rdp_nla", ("rdp", "nla"), True),
        BaselineItem("defender_realtime", ("defender", "realtime"), True),
        BaselineItem("updates_auto", ("updates", "auto"), True),
        BaselineItem("smb1_disabled", ("smb", "v1_enabled"), False),
    ),
    "macos": (
        BaselineItem("firewall_enabled", ("firewall", "enabled"), True),
        BaselineItem("firewall_stealth", ("firewall", "stealth"), True),
        BaselineItem("sshd_disabled", ("sshd", "enabled"), False),
        BaselineItem("filevault_on", ("filevault",), "On"),
        BaselineItem("gatekeeper_enabled", ("gatekeeper", "enabled"), True),
    ),
}

# What `prepare` installs by default (and what `needs_prepare` reports missing).
PREPARE_ITEMS: dict[str, tuple[str, ...]] = {
    "linux": ("auditd", "libpam-pwquality"),
    "windows": ("PSWindowsUpdate", "LAPS"),
    "macos": ("osquery", "xcode-select"),
}

_LINUX_DISTROS = (
    ("ubuntu", "Ubuntu", "22.04", "Ubuntu 22.04.4 LTS", "apt", "5.15.0-105-generic", "ufw"),
    ("ubuntu", "Ubuntu", "24.04", "Ubuntu 24.04 LTS", "apt", "6.8.0-31-generic", "ufw"),
    (
        "debian",
        "Debian GNU/Linux",
        "12",
        "Debian GNU/Linux 12 (bookworm)",
        "apt",
        "6.1.0-21-amd64",
        "nftables",
    ),
    (
        "debian",
        "Debian GNU/Linux",
        "11",
        "Debian GNU/Linux 11 (bullseye)",
        "apt",
        "5.10.0-28-amd64",
        "nftables",
    ),
    (
        "rocky",
        "Rocky Linux",
        "9.3",
        "Rocky Linux 9.3 (Blue Onyx)",
        "dnf",
        "5.14.0-362.24.1.el9_3.x86_64",
        "firewalld",
    ),
    (
        "almalinux",
        "AlmaLinux",
        "8.9",
        "AlmaLinux 8.9 (Midnight Oncilla)",
        "dnf",
        "4.18.0-513.24.1.el8_9.x86_64",
        "firewalld",
    ),
    (
        "fedora",
        "Fedora Linux",
        "40",
        "Fedora Linux 40 (Server Edition)",
        "dnf",
        "6.8.5-301.fc40.x86_64",
        "firewalld",
    ),
    (
        "opensuse-leap",
        "openSUSE Leap",
        "15.5",
        "openSUSE Leap 15.5",
        "zypper",
        "5.14.21-150500.55.49-default",
        "firewalld",
    ),
)
_X86_CPUS = (
    "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz",
    "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
    "AMD EPYC 7763 64-Core Processor",
    "AMD EPYC 9354P 32-Core Processor",
    "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz",
)
_EXTRA_SERVICES = (
    ("nginx", 80, "nginx"),
    ("postgresql", 5432, "postgres"),
    ("mariadb", 3306, "mariadbd"),
    ("docker", 2375, "dockerd"),
    ("redis-server", 6379, "redis-server"),
    ("apache2", 8080, "apache2"),
)
_WINDOWS_EDITIONS = (
    ("Microsoft Windows Server 2022 Datacenter", "10.0.20348", ("20348.2340", "20348.2402")),
    ("Microsoft Windows Server 2019 Standard", "10.0.17763", ("17763.5696", "17763.5820")),
    ("Microsoft Windows Server 2016 Standard", "10.0.14393", ("14393.6897",)),
    ("Microsoft Windows 11 Enterprise", "10.0.22631", ("22631.3447", "22631.3527")),
    ("Microsoft Windows 10 Pro", "10.0.19045", ("19045.4291", "19045.4412")),
)
_MACOS_VERSIONS = (
    ("13.6.6", "22G630"),
    ("14.4.1", "23E224"),
    ("14.5", "23F79"),
    ("15.1", "24B83"),
)
_MAC_HARDWARE = (
    ("MacBookPro18,3", "Apple M1 Pro"),
    ("Macmini9,1", "Apple M1"),
    ("Mac14,2", "Apple M2"),
    ("Mac15,3", "Apple M3"),
    ("MacBookPro16,1", "Intel Core i7"),
)


def _rng(seed: int, host_id: str) -> random.Random:
    # A string seed is hashed with SHA-512 by `random`: stable across processes and runs.
    return random.Random(f"{seed}|{host_id}|facts")


def _addresses(rng: random.Random, iface: str, address: str | None) -> list[dict[str, str]]:
    addr = address or f"10.{rng.randint(0, 31)}.{rng.randint(0, 255)}.{rng.randint(2, 254)}"
    return [{"iface": "lo", "addr": "127.0.0.1"}, {"iface": iface, "addr": addr}]


def _linux(rng: random.Random, host_id: str, address: str | None) -> Facts:
    os_id, name, version, pretty, pkg, kernel, fw = rng.choice(_LINUX_DISTROS)
    extras = rng.sample(_EXTRA_SERVICES, rng.randint(0, 3))
    services = ["cron", "rsyslog", "sshd", "systemd-journald", "systemd-logind"]
    services += [svc for svc, _, _ in extras]
    ports = [{"proto": "tcp", "port": 22, "process": "sshd"}]
    ports += [{"proto": "tcp", "port": port, "process": proc} for _, port, proc in extras]
    auditd = rng.random() < 0.5
    disks = [
        {"mount": "/", "size_gb": rng.choice((20, 40, 80, 160)), "used_pct": rng.randint(12, 91)}
    ]
    if rng.random() < 0.4:
        disks.append(
            {"mount": "/var", "size_gb": rng.choice((50, 100, 200)), "used_pct": rng.randint(5, 80)}
        )
    return {
        "os": {"id": os_id, "name": name, "version": version, "pretty_name": pretty},
        "kernel": kernel,
        "hostname": host_id,
        "addresses": _addresses(rng, rng.choice(("eth0", "ens18", "enp0s3")), address),
        "cpu": {"model": rng.choice(_X86_CPUS), "cores": rng.choice((1, 2, 4, 8, 16))},
        "memory_mb": rng.choice((1024, 2048, 4096, 8192, 16384)),
        "disks": disks,
        "package_manager": pkg,
        "services": sorted(services + (["auditd"] if auditd else [])),
        "listening_ports": ports,
        "uid0_users": ["root"] + (["toor"] if rng.random() < 0.1 else []),
        "sshd": {
            "permitrootlogin": rng.choice(("yes", "prohibit-password", "no")),
            "passwordauthentication": rng.choice(("yes", "no")),
            "x11forwarding": rng.choice(("yes", "no")),
            "maxauthtries": rng.choice((3, 6)),
            "port": 22,
        },
        "firewall": {"backend": fw, "enabled": rng.random() < 0.5},
        "sysctl": {"net.ipv4.ip_forward": rng.choice((0, 1))},
        "auditd": {"installed": auditd, "enabled": auditd and rng.random() < 0.7},
        "motd": "",
    }


def _windows(rng: random.Random, host_id: str, address: str | None) -> Facts:
    os_name, os_version, builds = rng.choice(_WINDOWS_EDITIONS)
    domain = rng.choice(("WORKGROUP", "LAB.LOCAL", "CORP.EXAMPLE"))
    admins = ["Administrator"]
    if domain != "WORKGROUP":
        admins.append(f"{domain.split('.')[0]}\\Domain Admins")
    if rng.random() < 0.3:
        admins.append("helpdesk")

    def onoff() -> str:
        return "on" if rng.random() < 0.6 else "off"

    return {
        "computer": {
            "name": host_id.upper().replace("_", "-")[:15],
            "domain": domain,
            "os_name": os_name,
            "os_version": os_version,
            "build": rng.choice(builds),
            "description": "",
        },
        "addresses": _addresses(rng, "Ethernet0", address),
        "cpu": {"model": rng.choice(_X86_CPUS), "cores": rng.choice((2, 4, 8))},
        "memory_mb": rng.choice((4096, 8192, 16384)),
        "firewall": {"domain": onoff(), "private": onoff(), "public": onoff()},
        "rdp": {"enabled": rng.random() < 0.7, "nla": rng.random() < 0.5},
        "defender": {"realtime": rng.random() < 0.8, "signatures_age_days": rng.randint(0, 45)},
        "updates": {
            "auto": rng.random() < 0.5,
            "last_installed": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        },
        "local_admins": admins,
        "smb": {"v1_enabled": rng.random() < 0.25},
    }


def _macos(rng: random.Random, host_id: str, address: str | None) -> Facts:
    version, build = rng.choice(_MACOS_VERSIONS)
    model, chip = rng.choice(_MAC_HARDWARE)
    return {
        "sw_vers": {"product_name": "macOS", "product_version": version, "build": build},
        "hostname": f"{host_id}.local",
        "addresses": _addresses(rng, "en0", address),
        "hardware": {"model": model, "chip": chip, "memory_gb": rng.choice((8, 16, 32))},
        "firewall": {"enabled": rng.random() < 0.5, "stealth": rng.random() < 0.3},
        "sshd": {"enabled": rng.random() < 0.5},
        "filevault": rng.choice(("On", "Off")),
        "gatekeeper": {"enabled": rng.random() < 0.9},
        "sip": {"enabled": rng.random() < 0.95},
    }


_GENERATORS = {"linux": _linux, "windows": _windows, "macos": _macos}


def facts_for(
    os: str,
    host_id: str,
    *,
    seed: int,
    address: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Facts:
    """Fresh facts for a simulated host: seeded per (seed, host_id), then `overrides` merged
    deep (kept verbatim: they may hold arbitrary text such as injection attempts)."""
    facts = _GENERATORS[os](_rng(seed, host_id), host_id, address)
    return deep_merge(facts, overrides) if overrides else facts


def deep_merge(base: Facts, overrides: Mapping[str, Any]) -> Facts:
    """Merge `overrides` into `base` in place (dicts recurse, anything else replaces)."""
    for key, value in overrides.items():
        current = base.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            deep_merge(current, value)
        else:
            base[key] = _plain(value)
    return base


def _plain(value: Any) -> Any:
    # Copy containers so later mutation of the facts never reaches the lab settings.
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def get_path(facts: Mapping[str, Any], path: Sequence[str], default: Any = None) -> Any:
    node: Any = facts
    for key in path:
        # `type() is dict` first: facts are plain dicts, and the ABC check is slow.
        if (type(node) is not dict and not isinstance(node, Mapping)) or key not in node:
            return default
        node = node[key]
    return node


def set_path(facts: Facts, path: Sequence[str], value: Any) -> None:
    node = facts
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value
