"""Canary secrets through a whole `reaper run` with the LLM planner (a local fake provider,
no real model): a `password_env` value and a `password=…` pair in a sim host's facts reach
neither the prompt sent, the recorded cassette, the tape, the store's event log, the log
file nor the console, in any encoding. An inventory's inline passwords likewise never reach
the prompt."""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml

from llm.testing import FakeProviderServer, ScriptedClient, network_guard
from reaper.cli import main
from reaper.config import Config
from reaper.inventory.load import parse_inventory
from reaper.planners.llm_factory import planner_from_cli
from tests.missions import keep_root_logging


def forms(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        quote(value, safe=""),
        quote_plus(value),
    ]


def leaks(text: str, *values: str) -> list[str]:
    return [f for v in values for f in forms(v) if f in text]


@pytest.fixture
def fake() -> Iterator[FakeProviderServer]:
    with network_guard(), FakeProviderServer() as server:
        yield server


def _sqlite_dump(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return "\n".join(str(row) for row in conn.iterdump())


def test_canaries_reach_no_prompt_cassette_tape_store_or_log(
    fake: FakeProviderServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    password = "Pw-" + secrets.token_hex(8) + "/=+"
    pair_value = "hunter2-" + secrets.token_hex(4)
    env_name = "LAB_PW_" + secrets.token_hex(3).upper()
    monkeypatch.chdir(tmp_path)
    for var in [v for v in __import__("os").environ if v.startswith("REAPER_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv(env_name, password)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-test0123456789abcdefghij")
    monkeypatch.setenv("REAPER_DB", str(tmp_path / "reaper.db"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    keep_root_logging(monkeypatch)
    lab = {
        "schema_version": 1,
        "mission_id": "canary-1",
        "goal": "discovered",
        "planner": {"kind": "llm", "provider": "openai-compatible", "model": "fake-model"},
        "settings": {"retry_backoff_s": 0.0},
        "hosts": [
            {
                "host_id": "web-01",
                "os": "linux",
                "transport": "sim",
                "password_env": env_name,
                "sim": {
                    "facts": {
                        "kernel": f"6.1 password={pair_value}",
                        "motd": f"login as root/{password}",
                        "encoded": base64.b64encode(password.encode()).decode(),
                        "url": f"https://x/?p={quote_plus(password)}",
                    }
                },
            }
        ],
    }
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(lab))
    # Answers that are not plans: the planner re-asks, then falls back to the rules, so
    # every step's prompt is sent and the answered ones are recorded.
    from llm.fakeserver import OPENAI_ROUTE, openai_completion

    fake.push(OPENAI_ROUTE, *[openai_completion(content="{}") for _ in range(40)])
    argv = [
        "run",
        "lab.yaml",
        "--base-url",
        fake.openai_base_url,
        "--record",
        "rec.cassette.jsonl",
        "--tape",
        "run.tape.jsonl",
        "--log-file",
        "log.jsonl",
        "--log-level",
        "DEBUG",
        "--no-live",
        "--no-input",
        "--json",
    ]
    capsys.readouterr()
    main(argv)
    out, err = capsys.readouterr()
    sent = json.dumps([r.body for r in fake.requests_to(OPENAI_ROUTE)])
    assert "web-01" in sent and "kernel" in sent  # the facts were shown to the model
    outputs = {
        "prompt": sent,
        "cassette": (tmp_path / "rec.cassette.jsonl").read_text(),
        "tape": (tmp_path / "run.tape.jsonl").read_text(),
        "store": _sqlite_dump(tmp_path / "reaper.db"),
        "log": (tmp_path / "log.jsonl").read_text(),
        "console": out + err,
    }
    assert all(outputs.values())
    for where, text in outputs.items():
        assert leaks(text, password, pair_value) == [], where
    assert "[REDACTED]" in outputs["cassette"] and "[REDACTED]" in outputs["tape"]


async def test_inventory_passwords_never_reach_the_prompt(tmp_path: Path) -> None:
    login, become = "Inv-" + secrets.token_hex(8), "Bec-" + secrets.token_hex(8)
    unused = "Tok-" + secrets.token_hex(8)  # a variable Reaper ignores, but a host may echo
    text = (
        "[web]\n"
        f"web1 ansible_host=10.0.0.5 ansible_password={login} ansible_become_password={become}\n"
        f"[web:vars]\nvault_api_token={unused}\n"
    )
    lab = parse_inventory(text, source="hosts.ini")
    state = lab.to_state("inv-1")
    facts: dict[str, Any] = {
        "motd": f"{login} {become}",
        "token": base64.b64encode(login.encode()).decode(),
    }
    state.hosts["web1"].facts.update(facts)
    client = ScriptedClient(["{}", "{}"])
    planner = planner_from_cli(Config(), state, client=client)
    await planner.initial_tasks(state)
    sent = json.dumps([r.model_dump(mode="json") for r in client.requests])
    assert "web1" in sent
    assert leaks(sent, login, become, unused) == []
    record = tmp_path / "c.jsonl"
    planner = planner_from_cli(Config(), state, client=ScriptedClient(["{}", "{}"]), record=record)
    await planner.initial_tasks(state)
    assert leaks(record.read_text(), login, become, unused) == []
