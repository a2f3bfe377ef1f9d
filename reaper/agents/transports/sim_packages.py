"""The simulated hosts' package databases and services, per distro family: names as each
distro spells them, versions, dependencies, the services a package brings and the texts its
package manager prints when something goes wrong. Pure data and lookups.

Families: `debian` (Debian, Ubuntu: apt), `rhel` (Rocky, AlmaLinux, Fedora: dnf), `suse`
(openSUSE: zypper), `macos` (Homebrew), `windows` (Chocolatey). A name a family does not
have is not found, as on a real host: `httpd` on Debian, `apache2` on Rocky.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "PACKAGES",
    "SERVICES",
    "Pkg",
    "ServiceSpec",
    "family_of",
    "find_package",
    "pm_text",
    "resolve_install",
]


@dataclass(frozen=True, slots=True)
class Pkg:
    version: str
    deps: tuple[str, ...] = ()
    services: tuple[str, ...] = ()  # units the package installs (stopped, disabled)
    size_mb: int = 5
    provides: tuple[str, ...] = ()  # other names it answers to (`audit` provides `auditd`)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    ports: tuple[int, ...] = ()
    config: tuple[str, ...] = ()  # path prefixes of the files it reads at start


def _db(**entries: Pkg) -> dict[str, Pkg]:
    return {name.replace("__", "-").replace("_at_", "@"): pkg for name, pkg in entries.items()}


_DEBIAN = _db(
    curl=Pkg("7.88.1-10+deb12u5", ("libcurl4",)),
    libcurl4=Pkg("7.88.1-10+deb12u5"),
    wget=Pkg("1.21.3-1+b2"),
    nginx=Pkg("1.22.1-9", ("nginx-common",), ("nginx",), 2),
    nginx__common=Pkg("1.22.1-9"),
    apache2=Pkg("2.4.62-1~deb12u1", ("apache2-bin", "apache2-data"), ("apache2",), 4),
    apache2__bin=Pkg("2.4.62-1~deb12u1"),
    apache2__data=Pkg("2.4.62-1~deb12u1"),
    postgresql=Pkg("15+248", ("postgresql-{pg}",)),
    postgresql__common=Pkg("248"),
    mariadb__server=Pkg("1:10.11.6-0+deb12u1", (), ("mariadb",), 60),
    redis__server=Pkg("5:7.0.15-1~deb12u1", (), ("redis-server",)),
    openssh__server=Pkg("1:9.2p1-2+deb12u3", (), ("ssh",)),
    auditd=Pkg("1:3.0.9-1", (), ("auditd",)),
    chrony=Pkg("4.3-2+deb12u1", (), ("chrony",)),
    nftables=Pkg("1.0.6-2+deb12u2", (), ("nftables",)),
    ufw=Pkg("0.36.2-1"),
    sudo=Pkg("1.9.13p3-1+deb12u1"),
    vim=Pkg("2:9.0.1378-2"),
    git=Pkg("1:2.39.5-0+deb12u1", (), (), 40),
    htop=Pkg("3.2.2-2"),
    jq=Pkg("1.6-2.1"),
    tmux=Pkg("3.3a-3"),
    rsync=Pkg("3.2.7-1"),
    python3=Pkg("3.11.2-1+b1", (), (), 30),
    docker_io=Pkg("20.10.24+dfsg1-1+b3", (), ("docker",), 90),
    cron=Pkg("3.0pl1-162", (), ("cron",)),
    rsyslog=Pkg("8.2302.0-1", (), ("rsyslog",)),
    unattended__upgrades=Pkg("2.9.1+nmu3"),
    libpam__pwquality=Pkg("1.4.5-1+b1"),
)
_DEBIAN["docker.io"] = _DEBIAN.pop("docker_io")
for _major in ("13", "14", "15", "16"):
    _DEBIAN[f"postgresql-{_major}"] = Pkg(
        f"{_major}.8-0+deb12u1", ("postgresql-common",), ("postgresql",), 50
    )

_RHEL = _db(
    curl=Pkg("7.76.1-29.el9_4.1", ("libcurl",)),
    libcurl=Pkg("7.76.1-29.el9_4.1"),
    wget=Pkg("1.21.1-7.el9"),
    nginx=Pkg("1:1.20.1-16.el9_4.1", ("nginx-core",), ("nginx",), 2),
    nginx__core=Pkg("1:1.20.1-16.el9_4.1"),
    httpd=Pkg("2.4.57-11.el9_4.1", ("httpd-core",), ("httpd",), 4),
    httpd__core=Pkg("2.4.57-11.el9_4.1"),
    postgresql=Pkg("13.14-1.el9_3", (), (), 10),
    postgresql__server=Pkg("13.14-1.el9_3", ("postgresql",), ("postgresql",), 50),
    mariadb__server=Pkg("3:10.5.22-1.el9_2", (), ("mariadb",), 60),
    redis=Pkg("6.2.7-1.el9", (), ("redis",)),
    openssh__server=Pkg("8.7p1-38.el9_4.4", (), ("sshd",)),
    audit=Pkg("3.1.2-2.el9", (), ("auditd",), provides=("auditd",)),
    chrony=Pkg("4.5-1.el9", (), ("chronyd",)),
    nftables=Pkg("1:1.0.9-1.el9", (), ("nftables",)),
    firewalld=Pkg("1.3.4-1.el9", (), ("firewalld",)),
    sudo=Pkg("1.9.5p2-10.el9_3"),
    vim__enhanced=Pkg("2:8.2.2637-20.el9_1"),
    git=Pkg("2.43.5-1.el9_4", (), (), 40),
    jq=Pkg("1.6-16.el9"),
    tmux=Pkg("3.2a-5.el9"),
    rsync=Pkg("3.2.3-19.el9_4.1"),
    python3=Pkg("3.9.18-3.el9_4.5", (), (), 30),
    podman=Pkg("4:4.9.4-10.el9_4", (), (), 60),
    cronie=Pkg("1.5.7-11.el9", (), ("crond",)),
    rsyslog=Pkg("8.2310.0-4.el9", (), ("rsyslog",)),
    libpwquality=Pkg("1.4.4-8.el9"),
)
_SUSE = _db(
    curl=Pkg("8.0.1-150400.5.47.1"),
    wget=Pkg("1.20.3-150000.3.20.1"),
    nginx=Pkg("1.21.5-150400.3.3.1", (), ("nginx",), 2),
    apache2=Pkg("2.4.51-150400.6.20.1", (), ("apache2",), 4),
    postgresql=Pkg("16-150500.10.6.1"),
    postgresql__server=Pkg("16-150500.10.6.1", ("postgresql",), ("postgresql",), 50),
    openssh__server=Pkg("8.4p1-150300.3.37.1", (), ("sshd",)),
    audit=Pkg("3.0.6-150400.4.16.1", (), ("auditd",), provides=("auditd",)),
    chrony=Pkg("4.1-150400.21.5.1", (), ("chronyd",)),
    nftables=Pkg("1.0.5-150500.1.1", (), ("nftables",)),
    firewalld=Pkg("0.9.3-150400.8.15.1", (), ("firewalld",)),
    sudo=Pkg("1.9.12p1-150500.7.10.1"),
    vim=Pkg("9.1.0330-150500.20.12.1"),
    git=Pkg("2.43.0-150500.3.11.1", (), (), 40),
    jq=Pkg("1.6-3.3.1"),
    rsyslog=Pkg("8.2306.0-150400.5.24.1", (), ("rsyslog",)),
)
_MACOS = _db(
    wget=Pkg("1.24.5", ("openssl@3",)),
    curl=Pkg("8.10.1", ("openssl@3",)),
    openssl_at_3=Pkg("3.3.2", (), (), 30),
    git=Pkg("2.47.0", (), (), 40),
    jq=Pkg("1.7.1"),
    htop=Pkg("3.3.0"),
    tmux=Pkg("3.5a"),
    nginx=Pkg("1.27.2", (), ("nginx",), 2),
    postgresql_at_16=Pkg("16.4", (), ("postgresql@16",), 50),
    python_at_3_12=Pkg("3.12.7", (), (), 60),
    osquery=Pkg("5.13.1", (), (), 40),
)
_MACOS["python@3.12"] = _MACOS.pop("python@3_12")
_WINDOWS = _db(
    git=Pkg("2.47.0", (), (), 60),
    _7zip=Pkg("24.08.0"),
    notepadplusplus=Pkg("8.7.0"),
    python=Pkg("3.12.7", (), (), 90),
    googlechrome=Pkg("130.0.6723.70", (), (), 110),
    firefox=Pkg("131.0.3", (), (), 90),
    sysinternals=Pkg("2024.10.5", (), (), 40),
    putty=Pkg("0.81.0"),
    vscode=Pkg("1.94.2", (), (), 100),
    openssh=Pkg("9.5.0-beta1", (), ("sshd",)),
    PSWindowsUpdate=Pkg("2.2.1.5"),
    LAPS=Pkg("6.2.0.0"),
)
_WINDOWS["7zip"] = _WINDOWS.pop("_7zip")

PACKAGES: dict[str, dict[str, Pkg]] = {
    "debian": _DEBIAN,
    "rhel": _RHEL,
    "suse": _SUSE,
    "macos": _MACOS,
    "windows": _WINDOWS,
}

SERVICES: dict[str, ServiceSpec] = {
    "nginx": ServiceSpec((80,), ("/etc/nginx/",)),
    "apache2": ServiceSpec((80,), ("/etc/apache2/",)),
    "httpd": ServiceSpec((80,), ("/etc/httpd/",)),
    "postgresql": ServiceSpec((5432,), ("/etc/postgresql/", "/var/lib/pgsql/")),
    "postgresql@16": ServiceSpec((5432,), ("/opt/homebrew/var/postgresql@16/",)),
    "mariadb": ServiceSpec((3306,), ("/etc/mysql/", "/etc/my.cnf")),
    "redis-server": ServiceSpec((6379,), ("/etc/redis/",)),
    "redis": ServiceSpec((6379,), ("/etc/redis/",)),
    "ssh": ServiceSpec((22,), ("/etc/ssh/sshd_config",)),
    "sshd": ServiceSpec((22,), ("/etc/ssh/sshd_config",)),
    "docker": ServiceSpec((), ("/etc/docker/",)),
}

_DISTRO_FAMILY = {
    "debian": "debian",
    "ubuntu": "debian",
    "rocky": "rhel",
    "almalinux": "rhel",
    "fedora": "rhel",
    "rhel": "rhel",
    "centos": "rhel",
    "opensuse-leap": "suse",
}
# Debian's `postgresql` metapackage pulls the release's major version.
_PG_MAJOR = {("debian", "11"): "13", ("ubuntu", "22.04"): "14", ("ubuntu", "24.04"): "16"}


def family_of(os: str, distro: str) -> str:
    """The package family of a host (`debian` for an unknown Linux)."""
    if os != "linux":
        return os
    return _DISTRO_FAMILY.get(distro, "debian")


def find_package(family: str, name: str) -> tuple[str, Pkg] | None:
    """The package `name` answers to in `family` (its own name or a `provides`), or None."""
    db = PACKAGES[family]
    if name in db:
        return name, db[name]
    lowered = {k.lower(): k for k in db} if family == "windows" else {}
    if name.lower() in lowered:
        real = lowered[name.lower()]
        return real, db[real]
    for real, pkg in db.items():
        if name in pkg.provides:
            return real, pkg
    return None


def resolve_install(family: str, name: str, distro: tuple[str, str]) -> list[tuple[str, Pkg]]:
    """`name` and its dependencies, dependencies first (each once). KeyError: not found."""
    found = find_package(family, name)
    if found is None:
        raise KeyError(name)
    order: list[tuple[str, Pkg]] = []
    seen: set[str] = set()

    def visit(real: str, pkg: Pkg) -> None:
        if real in seen:
            return
        seen.add(real)
        for dep in pkg.deps:
            dep_name = dep.format(pg=_PG_MAJOR.get(distro, "15"))
            sub = find_package(family, dep_name)
            if sub is not None:
                visit(*sub)
        order.append((real, pkg))

    visit(*found)
    return order


_HOLDER = re.compile(r"(?P<name>.+?)\s*\(pid (?P<pid>\d+)\)")


def _holder(text: str) -> tuple[str, str]:
    m = _HOLDER.fullmatch(text.strip())
    return (m.group("name"), m.group("pid")) if m else (text.strip(), "812")


def pm_text(family: str, what: str, **values: str) -> str:
    """What the family's package manager prints for `what` (not_found, locked, unreachable,
    disk_full, bad_version), as its real counterpart does."""
    if what == "locked":
        holder, pid = _holder(values.get("holder", ""))
        values = {**values, "holder": holder, "pid": pid}
    template = _TEXTS[family][what]
    return template.format(**values)


_APT_HEAD = "Reading package lists...\nBuilding dependency tree...\nReading state information...\n"
_TEXTS: Mapping[str, Mapping[str, str]] = {
    "debian": {
        "not_found": _APT_HEAD + "E: Unable to locate package {name}",
        "bad_version": _APT_HEAD + "E: Version '{version}' for '{name}' was not found",
        "locked": "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process "
        "{pid} ({holder})\nN: Be aware that removing the lock file is not a solution and may "
        "break your system.\nE: Unable to acquire the dpkg frontend lock "
        "(/var/lib/dpkg/lock-frontend), is another process using it?",
        "unreachable": "Err:1 http://{mirror} {suite} InRelease\n  Could not connect to "
        "{mirror}:80 (151.101.2.132), connection timed out\nE: Failed to fetch "
        "http://{mirror}/pool/main/{name}.deb  Could not connect to {mirror}:80 "
        "(151.101.2.132), connection timed out\nE: Unable to fetch some archives, maybe run "
        "apt-get update or try with --fix-missing?",
        "disk_full": _APT_HEAD + "E: You don't have enough free space in /var/cache/apt/archives/.",
    },
    "rhel": {
        "not_found": "Last metadata expiration check: 0:12:41 ago.\nNo match for argument: "
        "{name}\nError: Unable to find a match: {name}",
        "bad_version": "No match for argument: {name}-{version}\nError: Unable to find a "
        "match: {name}-{version}",
        # As dnf 4 prints it with exit_on_lock (Reaper's ensure sets it; else dnf waits).
        "locked": "RPMDB already locked by {pid}\n  The application with PID {pid} is: {holder}",
        "unreachable": "Errors during downloading metadata for repository 'baseos':\n  - Curl "
        "error (28): Timeout was reached for https://{mirror}/mirrorlist [Connection timed out "
        "after 30000 milliseconds]\nError: Failed to download metadata for repo 'baseos': "
        "Cannot download repomd.xml: Cannot download repodata/repomd.xml: All mirrors were tried",
        "disk_full": "Error: Transaction test error:\n  installing package {name}-{version} "
        "needs {need}MB more space on the / filesystem",
    },
    "suse": {
        "not_found": "Loading repository data...\nReading installed packages...\n'{name}' not "
        "found in package names. Trying capabilities.\nNo provider of '{name}' found.",
        "bad_version": "No provider of '{name} = {version}' found.",
        "locked": "System management is locked by the application with pid {pid} ({holder}).\n"
        "Close this application before trying again.",
        "unreachable": "Download (curl) error for 'http://{mirror}/repodata/repomd.xml':\nError "
        "code: Connection failed\nError message: Failed to connect to {mirror} port 80",
        "disk_full": "Error: Not enough free disk space: {need} MiB needed on /",
    },
    "macos": {
        "not_found": 'Warning: No available formula with the name "{name}".\n'
        "==> Searched for a formula with that name: no results",
        "bad_version": 'Error: No available formula with the name "{name}@{version}".',
        "locked": "Error: A `brew install {name}` process has already locked "
        "/opt/homebrew/var/homebrew/locks/{name}.formula.lock.\nPlease wait for it to finish "
        "or terminate it ({holder}, pid {pid}) to continue.",
        "unreachable": "curl: (28) Failed to connect to {mirror} port 443 after 30002 ms: "
        'Timeout was reached\nError: {name}: Failed to download resource "{name}"',
        "disk_full": "Error: No space left on device @ rb_sysopen - "
        "/opt/homebrew/Cellar/{name}/{version}",
    },
    "windows": {
        "not_found": "Chocolatey v2.3.0\nInstalling the following packages:\n{name}\n{name} "
        "not installed. The package was not found with the source(s) listed.\nChocolatey "
        "installed 0/1 packages. 1 packages failed.",
        "bad_version": "{name} not installed. The package was not found with the source(s) "
        "listed (version {version}).",
        "locked": "{name} not installed. Another installation is already in progress "
        "({holder}, pid {pid}). Complete that installation before proceeding with this "
        "install. Exit code: 1618",
        "unreachable": "Unable to connect to source 'https://{mirror}/api/v2/':\n The remote "
        "name could not be resolved: '{mirror}'\nChocolatey installed 0/1 packages.",
        "disk_full": "{name} not installed. There is not enough space on the disk. Exit code: 112",
    },
}
