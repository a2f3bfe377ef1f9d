"""LLMPlanner over the real Anthropic and OpenAI SDKs, against a local fake provider server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llm.anthropic import AnthropicClient
from llm.openai import OpenAIClient
from llm.testing import (
    ANTHROPIC_ROUTE,
    OPENAI_ROUTE,
    FakeProviderServer,
    FakeReply,
    anthropic_error,
    anthropic_message,
    network_guard,
    openai_completion,
    openai_error,
)
from reaper.planners.llm import LLMPlanner
from reaper.planners.llm_schema import plan_json_schema
from tests.planners.support import demo_state, plan_answer

GOOD = plan_answer(("win-01", "windows.discover"), ("mac-01", "macos.discover"))


@pytest.fixture(autouse=True)
def _fake_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-test0123456789abcdef")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-test0123456789abcdefghij")
    with network_guard():
        yield


@pytest.fixture
def server() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as fake:
        yield fake


class Wire:
    """One provider's wire format: how to build its client and script its answers."""

    def __init__(self, provider: str, server: FakeProviderServer) -> None:
        self.provider = provider
        self.server = server
        self.route = ANTHROPIC_ROUTE if provider == "anthropic" else OPENAI_ROUTE

    def client(self, *, timeout: float = 5.0, max_retries: int = 2) -> Any:
        if self.provider == "anthropic":
            return AnthropicClient(
                "claude-haiku-4-5",
                base_url=self.server.anthropic_base_url,
                timeout=timeout,
                max_retries=max_retries,
            )
        return OpenAIClient(
            "gpt-4o-mini",
            base_url=self.server.openai_base_url,
            timeout=timeout,
            max_retries=max_retries,
        )

    def plan(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.provider == "anthropic":
            return anthropic_message(tool_input=body, tool_name="plan", cache_read=400)
        return openai_completion(content=json.dumps(body), cached_tokens=400)

    def text(self, raw: str, *, truncated: bool = False) -> dict[str, Any]:
        if self.provider == "anthropic":
            return anthropic_message(text=raw, stop_reason="max_tokens" if truncated else None)
        return openai_completion(content=raw, finish_reason="length" if truncated else "stop")

    def refusal(self) -> dict[str, Any]:
        if self.provider == "anthropic":
            return anthropic_message(text="I can't help with that.", stop_reason="refusal")
        return openai_completion(refusal="I can't help with that.")

    def error(self, status: int) -> FakeReply:
        if self.provider == "anthropic":
            return anthropic_error(status, "overloaded_error" if status == 529 else "api_error")
        return openai_error(status)

    def sent(self) -> list[dict[str, Any]]:
        return [r.body for r in self.server.requests_to(self.route)]


@pytest.fixture(params=["anthropic", "openai"])
def wire(request: pytest.FixtureRequest, server: FakeProviderServer) -> Wire:
    return Wire(request.param, server)


async def test_good_plan_over_the_wire(wire: Wire) -> None:
    wire.server.push(wire.route, wire.plan(GOOD))
    planner = LLMPlanner(wire.client())
    plan = await planner.initial_tasks(demo_state())
    assert [t.host_id for t in plan.tasks] == ["win-01", "mac-01"]
    d = plan.decision
    assert d["fallback"] is False and d["provider"] == wire.provider and d["priced"] is True
    assert d["usage"]["cache_read_tokens"] == 400 and d["cost_usd"] > 0
    (body,) = wire.sent()
    if wire.provider == "anthropic":
        assert body["tools"][0]["input_schema"] == plan_json_schema()
        assert body["tool_choice"] == {"type": "tool", "name": "plan"}
        assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    else:
        fmt = body["response_format"]["json_schema"]
        assert fmt["strict"] is True and fmt["schema"] == plan_json_schema()
        assert body["messages"][0]["role"] == "system" and body["seed"] == 0


@pytest.mark.parametrize(
    ("provider", "status"),
    [("anthropic", 429), ("anthropic", 529), ("anthropic", 503), ("openai", 429), ("openai", 503)],
)
async def test_sdk_retries_transient_errors_then_plans(
    server: FakeProviderServer, provider: str, status: int
) -> None:
    wire = Wire(provider, server)
    wire.server.push(wire.route, wire.error(status), wire.plan(GOOD))
    plan = await LLMPlanner(wire.client()).initial_tasks(demo_state())
    assert plan.decision["fallback"] is False and len(plan.tasks) == 2
    assert len(wire.sent()) == 2  # one SDK retry, no planner-level retry on top


async def test_retries_exhausted_fall_back(wire: Wire) -> None:
    wire.server.push(wire.route, wire.error(503), wire.error(503))
    plan = await LLMPlanner(wire.client(max_retries=1)).initial_tasks(demo_state())
    assert plan.decision["fallback"] is True and "HTTP 503" in plan.decision["error"]
    assert len(plan.tasks) == 4


async def test_timeout_falls_back_to_rules(wire: Wire) -> None:
    wire.server.push(wire.route, FakeReply(body=wire.plan(GOOD), delay_s=5.0))
    plan = await LLMPlanner(wire.client(timeout=0.3, max_retries=0)).initial_tasks(demo_state())
    assert plan.decision["fallback"] is True
    assert (
        plan.decision["error"].startswith("api_error: ")
        and "no answer within" in (plan.decision["error"])
    )
    assert all(t.reason.startswith("fallback (rule)") for t in plan.tasks)


@pytest.mark.parametrize("kind", ["refusal", "truncated", "schema", "unknown_host", "flood"])
async def test_unusable_answer_is_repaired_over_the_wire(wire: Wire, kind: str) -> None:
    bad = {
        "refusal": wire.refusal(),
        "truncated": wire.text('{"tasks": [{"host_id": "win', truncated=True),
        "schema": wire.plan({"tasks": [{"host": "win-01"}], "done": False, "note": ""}),
        "unknown_host": wire.plan(plan_answer(("sql-07", "windows.discover"))),
        "flood": wire.plan(plan_answer(*[("win-01", "windows.discover")] * 9)),
    }[kind]
    wire.server.push(wire.route, bad, wire.plan(GOOD))
    plan = await LLMPlanner(wire.client(), max_tasks_per_step=8).initial_tasks(demo_state())
    assert plan.decision["repairs"] == 1 and plan.decision["fallback"] is False
    assert len(plan.tasks) == 2
    _first, repair = wire.sent()
    roles = [m["role"] for m in repair["messages"] if m["role"] != "system"]
    assert roles == ["user", "assistant", "user"]
    assert "could not be used" in json.dumps(repair["messages"][-1])


async def test_repair_that_fails_again_falls_back(wire: Wire) -> None:
    wire.server.push(wire.route, wire.text("not json"), wire.text("still not json"))
    plan = await LLMPlanner(wire.client()).initial_tasks(demo_state())
    assert plan.decision["fallback"] is True and plan.decision["calls"] == 2
    assert plan.decision["error"].startswith("invalid_json: ")
