"""Skip-or-fail for tests that need real services (Redis, PostgreSQL, sshd, namespaces).

On a user's machine without the service the test skips; in CI (REAPER_REQUIRE_SERVICES=1)
a missing service is a failure, so a green run means the service tests really ran.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from llm.llama_server import default_binary, default_model

__all__ = ["REQUIRE_SERVICES", "port_open", "require_llama", "require_service"]

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


def require_llama() -> tuple[Path, Path]:
    """The llama-server binary and the SmolLM2 GGUF `.ci/llama-setup` caches, or skip/fail."""
    binary = Path(os.environ.get("REAPER_LLAMA_SERVER") or default_binary())
    model = default_model()
    missing = [str(path) for path in (binary, model) if not path.is_file()]
    require_service("llama-server", not missing, f"no {', '.join(missing)}: run .ci/llama-setup")
    return binary, model
