"""Skip-or-fail for tests that need real services (Redis, PostgreSQL, sshd, namespaces).

On a user's machine without the service the test skips; in CI (REAPER_REQUIRE_SERVICES=1)
a missing service is a failure, so a green run means the service tests really ran.
"""

from __future__ import annotations

import os
import socket

import pytest

__all__ = ["REQUIRE_SERVICES", "port_open", "require_service"]

REQUIRE_SERVICES = os.environ.get("REAPER_REQUIRE_SERVICES", "") not in ("", "0", "false")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, available: bool, why: str = "") -> None:
    """Skip the calling test when `available` is false, or fail under REAPER_REQUIRE_SERVICES."""
    if available:
        return
    message = f"{name} unavailable" + (f": {why}" if why else "")
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (REAPER_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)
