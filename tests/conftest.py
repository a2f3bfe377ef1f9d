"""Suite-wide guards: no test reaches beyond this machine."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

# Builders and the in-process mission harness, for every test package.
pytest_plugins = ["tests.missions", "tests.brokers"]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
# Network namespaces made by the tests live in this range (see tests/netns.py).
_TEST_NETS = (ipaddress.ip_network("10.213.0.0/16"),)


def _allowed(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name to resolve: not ours
    return ip.is_loopback or any(ip in net for net in _TEST_NETS)


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _allowed(address):
        raise ConnectionRefusedError(f"test network guard: connection to {address!r} blocked")
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _allowed(address):
        raise ConnectionRefusedError(f"test network guard: connection to {address!r} blocked")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _network_guard() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real key must never make a test talk to a provider.
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
