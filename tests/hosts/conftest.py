"""Fixtures for real-host tests: OpenSSH servers in network namespaces (see netns.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import dnfrepo
from reaper.lab import LabHost
from reaper.models import HostConnection
from tests.hosts.netns import USER, NsHost, NsLab, missing_requirements
from tests.needs import require_service

HOST_NAMES = ["h1", "h2", "h3", "hb", "hx"]
# Hosts for whole missions (engine, workers, planner): m1-m3 are baselined, ms has its sshd
# stopped mid-mission, mi is reached through an Ansible inventory with password auth (so it
# must never be baselined, which turns password auth off).
MISSION_HOST_NAMES = ["m1", "m2", "m3", "ms", "mi"]
# Hosts that converge desired state (tests/hosts/test_linux_converge.py): c1 runs whole
# missions, c2 the failure cases.
CONVERGE_HOST_NAMES = ["c1", "c2"]
# A host Reaper reaches as root with a key (tests/hosts/test_root_baseline.py).
ROOT_HOST_NAMES = ["r1"]
# RHEL-like hosts (dnf and rpm, a Rocky os-release): tests/hosts/test_dnf_converge.py.
DNF_HOST_NAMES = ["d1", "d2"]


def _lab(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], tag: str, **create: Any
) -> Iterator[NsLab]:
    why = missing_requirements()
    require_service("network-namespace sshd hosts", why is None, why or "")
    lab = NsLab.create(names, tmp_path_factory.mktemp(tag), **create)
    yield lab
    lab.destroy()


@pytest.fixture(scope="session")
def ns_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsLab]:
    yield from _lab(tmp_path_factory, HOST_NAMES, "netns")


@pytest.fixture(scope="session")
def mission_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsLab]:
    yield from _lab(tmp_path_factory, MISSION_HOST_NAMES, "netns-mission")


@pytest.fixture(scope="session")
def converge_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsLab]:
    yield from _lab(tmp_path_factory, CONVERGE_HOST_NAMES, "netns-converge")


@pytest.fixture(scope="session")
def dnf_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsLab]:
    why = missing_requirements() or dnfrepo.missing_requirements()
    require_service("RHEL-like (dnf) namespace hosts", why is None, why or "")
    yield from _lab(tmp_path_factory, DNF_HOST_NAMES, "netns-dnf", rootfs=dnfrepo.ROOTFS)


@pytest.fixture(scope="session")
def root_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsLab]:
    """A host whose root takes the lab's key, as labs built from cloud images often do."""
    for lab in _lab(tmp_path_factory, ROOT_HOST_NAMES, "netns-root"):
        for host in lab.hosts.values():
            ssh_dir = host.root / "root" / ".ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            keys = ssh_dir / "authorized_keys"
            keys.write_text(lab.client_key.with_suffix(".pub").read_text())
            keys.chmod(0o600)
        yield lab


def ssh_settings(lab: NsLab, host: NsHost, **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "transport": "ssh",
        "address": host.addr,
        "user": USER,
        "key_file": str(lab.client_key),
        "use_agent": False,
        "known_hosts": str(lab.known_hosts),
        "become": True,
        "connect_timeout_s": 3.0,
    }
    settings.update(overrides)
    return settings


def ssh_conn(lab: NsLab, host: NsHost, **overrides: Any) -> HostConnection:
    return HostConnection(**ssh_settings(lab, host, **overrides))


def lab_host(lab: NsLab, host: NsHost, **overrides: Any) -> LabHost:
    """A lab-file host entry for a namespace host (os linux, ssh with the lab's key)."""
    return LabHost(host_id=host.name, os="linux", **ssh_settings(lab, host, **overrides))


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"
