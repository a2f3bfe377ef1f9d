"""Secrets held by this process only: inline passwords read from an Ansible inventory.

Host settings carry secrets by reference (`password_env`, `become_password_env`): names looked
up where a worker runs. A password written inline in an inventory has no such name, so the
inventory loader files it here under a generated, deterministic name
(`REAPER_SECRET_<HOST>_<KIND>`) and puts that name in the host's settings. Transports look a
name up in this registry first, then in the process environment (`secret_lookup()`), so:

- the value never enters a lab, a mission, the store, a task or an event: only the name does;
- it is not exported to child processes (unlike a variable set in `os.environ`);
- a worker in another process (`reaper worker`) finds it if its operator exports that same
  name; otherwise the host fails with a clear "variable … is not set".

Registered values are also what `redact()` and `RedactSecrets` (a logging filter) mask.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping

__all__ = [
    "RedactSecrets",
    "SecretLookup",
    "redact",
    "register_secret",
    "secret_lookup",
    "secret_name",
]

_lock = threading.Lock()
_secrets: dict[str, str] = {}
_MASK = "********"


def secret_name(host_id: str, kind: str) -> str:
    """The reference name for a host's secret: a valid environment variable name."""
    slug = re.sub(r"[^A-Z0-9]+", "_", host_id.upper()).strip("_") or "HOST"
    return f"REAPER_SECRET_{slug}_{kind.upper()}"


def register_secret(name: str, value: str) -> str:
    """File `value` under `name` (or under `name_2`, `name_3`… when `name` already holds
    another value) and return the name to reference it by."""
    with _lock:
        candidate, n = name, 1
        while candidate in _secrets and _secrets[candidate] != value:
            n += 1
            candidate = f"{name}_{n}"
        _secrets[candidate] = value
        return candidate


class SecretLookup(Mapping[str, str]):
    """Names → secret values: this process's registry, then an environment mapping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        with _lock:
            value = _secrets.get(name)
        if value is not None:
            return value
        return self._environ[name]

    def __iter__(self) -> Iterator[str]:
        with _lock:
            names = list(_secrets)
        yield from names
        yield from (k for k in self._environ if k not in names)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:  # never show values
        return "SecretLookup(<registry>, <environment>)"


def secret_lookup(environ: Mapping[str, str] | None = None) -> SecretLookup:
    """Where a transport resolves `password_env`: the registry, then `environ` (default: the
    process environment, read at lookup time)."""
    return SecretLookup(os.environ if environ is None else environ)


def redact(text: str) -> str:
    """`text` with every registered secret value masked."""
    with _lock:
        values = sorted((v for v in _secrets.values() if v), key=len, reverse=True)
    for value in values:
        text = text.replace(value, _MASK)
    return text


class RedactSecrets(logging.Filter):
    """A handler filter masking registered secrets in the formatted message (defence in
    depth: Reaper never logs a secret on purpose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _lock:
            empty = not _secrets
        if empty:
            return True
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
