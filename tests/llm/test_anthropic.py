from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from llm.anthropic import AnthropicClient
from llm.errors import LLMAPIError, LLMConfigError, LLMTimeoutError
from llm.pricing import estimate
from llm.testing import (
    ANTHROPIC_ROUTE,
    FakeProviderServer,
    FakeReply,
    anthropic_error,
    anthropic_message,
)
from llm.types import LLMRequest

PLAN = {"tasks": [{"host": "web-1", "action": "linux.discover"}]}


_open_clients: list[AnthropicClient] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _open_clients:
        await _open_clients.pop().aclose()


def make_client(server: FakeProviderServer, **kwargs: object) -> AnthropicClient:
    options: dict[str, object] = {"timeout": 5.0, "max_retries": 2, **kwargs}
    client = AnthropicClient(
        "claude-haiku-4-5",
        base_url=server.anthropic_base_url,
        **options,  # type: ignore[arg-type]
    )
    _open_clients.append(client)
    return client


async def test_structured_answer_via_forced_tool(
    fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    fake_server.push(
        ANTHROPIC_ROUTE,
        anthropic_message(tool_input=PLAN, tool_name="plan", cache_read=900, cache_write=50),
    )
    client = make_client(fake_server)
    response = await client.complete(plan_request)
    await client.aclose()

    assert json.loads(response.text) == PLAN
    assert response.stop_reason == "end"
    assert response.provider == "anthropic"
    assert response.model == "claude-haiku-4-5-20251001"
    assert response.request_id == "req_fake"
    assert response.usage.cache_read_tokens == 900
    assert response.usage.cache_write_tokens == 50

    (sent,) = fake_server.requests_to(ANTHROPIC_ROUTE)
    assert "sk-ant-" in sent.headers["authorization"]
    body = sent.body
    assert body["tools"][0]["name"] == "plan"
    assert body["tools"][0]["input_schema"] == plan_request.json_schema
    assert body["tool_choice"] == {"type": "tool", "name": "plan"}
    assert body["max_tokens"] == 512
    assert "seed" not in body  # the Messages API has none
    # The static block carries the cache breakpoint; the dynamic one does not.
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in body["system"][1]


async def test_native_json_schema_output(
    fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    fake_server.push(ANTHROPIC_ROUTE, anthropic_message(text=json.dumps(PLAN)))
    client = make_client(fake_server, structured_output="native")
    response = await client.complete(plan_request)

    assert json.loads(response.text) == PLAN
    body = fake_server.requests[0].body
    assert body["output_config"]["format"] == {
        "type": "json_schema",
        "schema": plan_request.json_schema,
    }
    assert "tools" not in body


@pytest.mark.parametrize(
    ("first", "label"),
    [
        (
            FakeReply(
                429,
                {"type": "error", "error": {"type": "rate_limit_error", "message": "x"}},
                {"retry-after": "0.01"},
            ),
            "429 retry-after",
        ),
        (anthropic_error(529, "overloaded_error"), "529 overloaded"),
        (anthropic_error(503), "503"),
    ],
)
async def test_sdk_retries_then_succeeds(
    fake_server: FakeProviderServer, plan_request: LLMRequest, first: FakeReply, label: str
) -> None:
    fake_server.push(ANTHROPIC_ROUTE, first, anthropic_message(tool_input=PLAN, tool_name="plan"))
    response = await make_client(fake_server).complete(plan_request)
    assert json.loads(response.text) == PLAN, label
    assert len(fake_server.requests) == 2


async def test_persistent_500_raises_after_sdk_retries(
    fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    fake_server.push(ANTHROPIC_ROUTE, *[anthropic_error(500)] * 3)
    with pytest.raises(LLMAPIError) as info:
        await make_client(fake_server, max_retries=2).complete(plan_request)
    assert info.value.status_code == 500
    assert info.value.retriable is True
    assert info.value.__cause__ is not None  # mapped with `raise ... from exc`
    assert len(fake_server.requests) == 3


async def test_client_error_is_not_retriable(
    fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    fake_server.push(ANTHROPIC_ROUTE, anthropic_error(400, "invalid_request_error", "bad schema"))
    with pytest.raises(LLMAPIError) as info:
        await make_client(fake_server).complete(plan_request)
    assert info.value.status_code == 400
    assert info.value.retriable is False
    assert "bad schema" in str(info.value)
    assert len(fake_server.requests) == 1


async def test_timeout(fake_server: FakeProviderServer, plan_request: LLMRequest) -> None:
    fake_server.push(ANTHROPIC_ROUTE, FakeReply(body=anthropic_message(text="late"), delay_s=5))
    client = make_client(fake_server, timeout=0.3, max_retries=0)
    with pytest.raises(LLMTimeoutError) as info:
        await client.complete(plan_request)
    assert info.value.timeout_s == 0.3
    assert isinstance(info.value, LLMAPIError)


async def test_refusal(fake_server: FakeProviderServer, plan_request: LLMRequest) -> None:
    fake_server.push(
        ANTHROPIC_ROUTE,
        anthropic_message(
            stop_reason="refusal",
            stop_details={"type": "refusal", "category": "cyber", "explanation": "Not allowed."},
        ),
    )
    response = await make_client(fake_server).complete(plan_request)
    assert response.stop_reason == "refusal"
    assert response.refusal == "Not allowed."
    assert response.text == ""


async def test_truncated_output(fake_server: FakeProviderServer, plan_request: LLMRequest) -> None:
    fake_server.push(
        ANTHROPIC_ROUTE,
        anthropic_message(tool_input={}, tool_name="plan", stop_reason="max_tokens"),
    )
    response = await make_client(fake_server).complete(plan_request)
    assert response.stop_reason == "max_tokens"
    assert response.raw_stop_reason == "max_tokens"


@pytest.mark.parametrize("stop", ["model_context_window_exceeded", "pause_turn"])
async def test_any_unfinished_stop_is_a_truncated_answer(
    fake_server: FakeProviderServer, plan_request: LLMRequest, stop: str
) -> None:
    fake_server.push(
        ANTHROPIC_ROUTE, anthropic_message(tool_input={}, tool_name="plan", stop_reason=stop)
    )
    response = await make_client(fake_server).complete(plan_request)
    assert response.stop_reason == "max_tokens" and response.raw_stop_reason == stop


async def test_usage_and_cost(fake_server: FakeProviderServer, plan_request: LLMRequest) -> None:
    fake_server.push(
        ANTHROPIC_ROUTE,
        anthropic_message(
            tool_input=PLAN,
            tool_name="plan",
            input_tokens=1000,
            output_tokens=200,
            cache_read=10_000,
            cache_write=0,
        ),
    )
    response = await make_client(fake_server).complete(plan_request)
    result = estimate(response.model, response.usage)
    assert result.priced and result.price_key == "claude-haiku-4-5"
    # 1000 x $1 + 200 x $5 + 10000 x $0.10, per million tokens.
    assert result.usd == pytest.approx((1000 + 1000 + 1000) / 1e6)


def test_missing_key_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(LLMConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicClient("claude-haiku-4-5")
