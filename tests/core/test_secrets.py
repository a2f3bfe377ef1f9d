"""Known secrets are masked in every form they travel in (raw, base64, URL-encoded, JSON
escaped), secret-keyed pairs inside values are masked, masks keep nothing of the value, and
the registry learns every value a host's references resolve to."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from rich.console import Console

from llm.redact import REDACTED, scrub, scrub_text
from reaper.logs import setup_logging
from reaper.models import HostConnection
from reaper.secrets import (
    known_secrets,
    redact,
    redact_value,
    register_host_secrets,
    remember_secret,
    secret_lookup,
)
from tests.missions import keep_root_logging


def canary() -> str:
    return "Canary-" + secrets.token_hex(6) + "/+ &"


def encoded_forms(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        quote(value, safe=""),
        quote_plus(value),
    ]


def assert_clean(text: str, *values: str) -> None:
    for value in values:
        for form in encoded_forms(value):
            assert form not in text, (form, text)


def test_known_value_masked_in_each_encoding() -> None:
    secret = canary()
    for form in encoded_forms(secret):
        out = scrub_text(f"before {form} after", [secret])
        assert out == f"before {REDACTED} after"
    basic = base64.b64encode(f"admin:{secret}".encode()).decode()
    out = scrub_text(f"Authorization: Basic {basic}", [secret])
    assert_clean(out, secret)
    assert secret not in scrub_text(json.dumps({"x": f'say "{secret}"'}), [secret])


def test_mask_is_fixed_and_longest_value_wins() -> None:
    short, long_ = "abcd1234", "abcd1234-and-more"
    assert scrub_text(f"{long_} {short}", [short, long_]) == f"{REDACTED} {REDACTED}"
    # The same mask whatever the length: nothing to count, nothing to reverse.
    assert scrub_text("x" * 40, ["x" * 40]) == scrub_text("yyyy", ["yyyy"]) == REDACTED


def test_very_short_secrets_are_masked_as_whole_tokens_only() -> None:
    assert scrub_text("pin 42z here", ["42z"]) == f"pin {REDACTED} here"
    assert scrub_text("x42zy and 142z", ["42z"]) == "x42zy and 142z"
    # no encoded forms for them: base64 of 3 characters is just 4 common characters
    assert scrub_text(base64.b64encode(b"42z").decode(), ["42z"]) == "NDJ6"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2", f"password={REDACTED}"),
        (
            "login ok; db_password: hunter2 (rotated)",
            f"login ok; db_password: {REDACTED} (rotated)",
        ),
        ('{"api_key": "k 1 2", "user": "bob"}', f'{{"api_key": "{REDACTED}", "user": "bob"}}'),
        ("CLIENT_SECRET='s3 cr3t'", f"CLIENT_SECRET='{REDACTED}'"),
        ("ansible_become_pass=x&next=1", f"ansible_become_pass={REDACTED}&next=1"),
        ("token: abc.def", f"token: {REDACTED}"),
        ("postgresql://app:pa55@db:5432/x", f"postgresql://app:{REDACTED}@db:5432/x"),
        ("İstanbul DB_PASSWORD=x1 ok", f"İstanbul DB_PASSWORD={REDACTED} ok"),
        ("a\npassword=x\ntoken=y", f"a\npassword={REDACTED}\ntoken={REDACTED}"),
        (
            'ssh_host_key: AAAA; tokens=12; password: ""',
            'ssh_host_key: AAAA; tokens=12; password: ""',
        ),
    ],
)
def test_secret_keyed_pairs_are_masked_inside_values(text: str, expected: str) -> None:
    assert scrub_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "PasswordAuthentication no",
        "passwordauthentication: no",
        '"input_tokens": 1200, "max_tokens": 400',
        "secret: false",
        "uptime 3 days",
    ],
)
def test_settings_about_secrets_and_counts_are_left_alone(text: str) -> None:
    assert scrub_text(text) == text


def test_scrub_masks_secret_keys_and_keeps_what_is_unchanged() -> None:
    facts = {"os": {"name": "debian"}, "db_password": "plain", "motd": "password=hunter2"}
    out = scrub(facts)
    assert out == {
        "os": {"name": "debian"},
        "db_password": REDACTED,
        "motd": f"password={REDACTED}",
    }
    assert out["os"] is facts["os"]
    clean = {"os": {"name": "debian"}, "count_tokens": 3}
    assert scrub(clean) is clean


def test_lookup_remembers_env_values_and_hosts_register_theirs() -> None:
    value, other = canary(), canary()
    env = {"LAB_PW": value, "LAB_BECOME": other}
    lookup = secret_lookup(env)
    assert lookup["LAB_PW"] == value
    assert value in known_secrets()
    conns = [HostConnection(transport="sim", become_password_env="LAB_BECOME")]
    assert other in register_host_secrets(conns, env)
    register_host_secrets([HostConnection(password_env="NOT_SET_ANYWHERE")], {})  # skipped
    assert_clean(redact(f"{value} {other}"), value, other)
    assert redact_value({"out": [f"x {value}"]}) == {"out": [f"x {REDACTED}"]}


def test_log_handlers_mask_messages_and_tracebacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep_root_logging(monkeypatch)
    value = canary()
    remember_secret(value)
    log_file = tmp_path / "log.jsonl"
    terminal = Console(file=__import__("io").StringIO(), width=200)
    setup_logging("INFO", json_file=str(log_file), console=terminal)
    log = logging.getLogger("reaper.test")
    log.warning("connecting with %s and password=hunter2", value)
    try:
        raise RuntimeError(f"auth failed for {base64.b64encode(value.encode()).decode()}")
    except RuntimeError:
        log.exception("it failed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    written = log_file.read_text() + terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "it failed" in written and "RuntimeError" in written
    assert_clean(written, value)
    assert "hunter2" not in written


def test_memoised_scrubbing_follows_the_known_secrets_and_equals_the_direct_one() -> None:
    # Short texts are memoised per (text, secrets): a secret learnt later is still masked
    # in a text scrubbed clean before, and long texts (not memoised) are scrubbed the same.
    value = "s3cret-" + secrets.token_hex(8)
    short = f"ensured user/deploy: password set to {value[:4]} {value}"
    assert scrub_text(short) == short  # nothing known yet: kept
    assert REDACTED in scrub_text(short, (value,)) and value not in scrub_text(short, (value,))
    long = short + " " + "x" * 4000
    assert scrub_text(long, (value,)) == scrub_text(short, (value,)) + " " + "x" * 4000
    data = {"resource": "user/deploy", "after": {"comment": value}}
    assert scrub(data) is data
    assert scrub(data, (value,)) == {"resource": "user/deploy", "after": {"comment": REDACTED}}
    keyed = {"after": {"db_password": "hunter22"}}
    assert scrub(keyed) == {"after": {"db_password": REDACTED}}
    assert scrub(keyed) == {"after": {"db_password": REDACTED}}  # the memoised answer too
