"""Fixtures for the LLM layer: a fake provider server, keys set to fakes, network off."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llm.testing import FakeProviderServer, network_guard
from llm.types import LLMRequest, Message, SystemBlock

ANTHROPIC_TEST_KEY = "sk-ant-api03-test0123456789abcdef"
OPENAI_TEST_KEY = "sk-proj-test0123456789abcdefghij"

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"host": {"type": "string"}, "action": {"type": "string"}},
                "required": ["host", "action"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["tasks"],
    "additionalProperties": False,
}


@pytest.fixture(autouse=True)
def _no_network() -> Iterator[None]:
    with network_guard():
        yield


@pytest.fixture(autouse=True)
def _provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Isolate from the developer's shell: fake keys, no base URL or header overrides.
    for name in (
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_CUSTOM_HEADERS",
        "ANTHROPIC_PROFILE",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_CUSTOM_HEADERS",
        "OPENAI_ADMIN_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_TEST_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)


@pytest.fixture
def fake_server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


@pytest.fixture
def plan_request() -> LLMRequest:
    return LLMRequest(
        system=[
            SystemBlock(text="You plan lab tasks. Answer with the plan schema.", cache=True),
            SystemBlock(text="Mission m-1, step 3."),
        ],
        messages=[Message(role="user", text="Hosts: web-1 (linux, new). Plan the next tasks.")],
        json_schema=PLAN_SCHEMA,
        schema_name="plan",
        max_tokens=512,
        temperature=0.0,
        seed=7,
        metadata={"prompt_hash": "abc123"},
    )
