"""Fixtures for real-host tests: OpenSSH servers in network namespaces (see netns.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reaper.models import HostConnection
from tests.hosts.netns import USER, NsHost, NsLab, missing_requirements
from tests.services import require_service

HOST_NAMES = ["h1", "h2", "h3", "hb", "hx"]


@pytest.fixture(scope="session")
def ns_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsLab]:
    why = missing_requirements()
    require_service("network-namespace sshd hosts", why is None, why or "")
    lab = NsLab.create(HOST_NAMES, tmp_path_factory.mktemp("netns"))
    yield lab
    lab.destroy()


def ssh_conn(lab: NsLab, host: NsHost, **overrides: Any) -> HostConnection:
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
    return HostConnection(**settings)


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"
