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

This module is also the one registry of *known secret values* of the process: the inline
values above, and every value a `SecretLookup` resolves from the environment (a lab's
`password_env`, `become_password_env`), or that `remember_secret()` or `register_host_secrets()`
were given. `redact()` / `redact_value()` mask them (and their base64 and URL-encoded forms,
plus `password=…`-shaped pairs) with `llm.redact`, a pure function taking the values as
arguments; they are applied where host output enters the system (worker results: facts,
errors, tails), when a mission is created (a sim host's scripted facts), in the LLM prompt and
its cassette, in tapes and, through `RedactSecrets`, in every log handler. A known value is
masked wherever it appears, so a password that is also a common word (`root`) masks that word
too; one under 4 characters only where it stands alone (see `llm.redact`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from llm.redact import REDACTED, SECRET_KEY, scrub, scrub_text
from reaper.models import MissionState

__all__ = [
    "REDACTED",
    "RedactSecrets",
    "SecretLookup",
    "is_secret_key",
    "known_secrets",
    "redact",
    "redact_mission",
    "redact_value",
    "register_host_secrets",
    "register_secret",
    "remember_secret",
    "secret_lookup",
    "secret_name",
]

_lock = threading.Lock()
_secrets: dict[str, str] = {}
# Every known value (the named ones above too), as a sorted tuple rebuilt on each change: the
# redactor caches its compiled pattern per tuple.
_known: set[str] = set()
_known_sorted: tuple[str, ...] = ()


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
        _remember(value)
        return candidate


def _remember(value: str) -> None:
    """Add `value` to the known values; the caller holds `_lock`."""
    global _known_sorted
    if value and value not in _known:
        _known.add(value)
        _known_sorted = tuple(sorted(_known))


def remember_secret(value: str | None) -> None:
    """Know `value` as a secret from now on (masked wherever `redact` runs)."""
    if value:
        with _lock:
            _remember(value)


def known_secrets() -> tuple[str, ...]:
    """Every secret value this process knows (for the LLM layer's pure redactor)."""
    return _known_sorted


def register_host_secrets(
    connections: Iterable[Any], environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """Resolve each connection's secret references (every secret-named `*_env` setting:
    `password_env`, `become_password_env`, and a `key_passphrase_env` or `token_env` a later
    schema adds) through the registry and `environ` (default: the process environment) and
    remember the values found; return every known value. A reference not set is skipped (the
    transport reports it when it needs it)."""
    lookup = secret_lookup(environ)
    for conn in connections:
        for field in getattr(type(conn), "model_fields", {}):
            if not (field.endswith("_env") and is_secret_key(field.removesuffix("_env"))):
                continue
            name = getattr(conn, field, None)
            if isinstance(name, str) and name:
                remember_secret(lookup.get(name))
    return known_secrets()


def is_secret_key(name: str) -> bool:
    """True for a variable or mapping key whose value is a secret whatever it looks like
    (`ansible_password`, `db_token`, `vault_passphrase`), not one about a secret
    (`PasswordAuthentication`)."""
    return SECRET_KEY.search(name) is not None


class SecretLookup(Mapping[str, str]):
    """Names → secret values: this process's registry, then an environment mapping."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        with _lock:
            value = _secrets.get(name)
        if value is not None:
            return value
        value = self._environ[name]
        remember_secret(value)  # resolved once: masked in whatever it shows up in
        return value

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
    """`text` with every known secret value (and its encodings) and every secret-keyed pair
    masked as `REDACTED`."""
    return scrub_text(text, _known_sorted)


def redact_value(value: Any) -> Any:
    """A JSON-like value with `redact` applied to every string, and the string value of a
    secret-named key (`password`, `db_token`…) masked whole; unchanged parts are not copied."""
    return scrub(value, _known_sorted)


_FORMATTER = logging.Formatter()


class RedactSecrets(logging.Filter):
    """A handler filter masking secrets in the message and the traceback before any
    formatter sees them (defence in depth: Reaper never logs a secret on purpose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_mission(state: MissionState) -> MissionState:
    """A new mission as it may be stored: its hosts' secret references resolved and remembered
    (so their values are masked from the first result on), and a sim host's scripted facts
    redacted like any host's output would be."""
    register_host_secrets(h.connection for h in state.hosts.values())
    hosts = dict(state.hosts)
    changed = False
    for host_id, host in state.hosts.items():
        sim = host.connection.sim
        if sim is None or not sim.facts:
            continue
        facts = redact_value(sim.facts)
        if facts is not sim.facts:
            conn = host.connection.model_copy(
                update={"sim": sim.model_copy(update={"facts": facts})}
            )
            hosts[host_id] = host.model_copy(update={"connection": conn})
            changed = True
    return state.model_copy(update={"hosts": hosts}) if changed else state
