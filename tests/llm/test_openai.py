from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from llm.errors import LLMAPIError, LLMConfigError, LLMTimeoutError
from llm.openai import OpenAIClient
from llm.pricing import estimate
from llm.testing import (
    OPENAI_ROUTE,
    FakeProviderServer,
    FakeReply,
    openai_completion,
    openai_error,
)
from llm.types import LLMRequest

PLAN = {"tasks": [{"host": "web-1", "action": "linux.discover"}]}


_open_clients: list[OpenAIClient] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _open_clients:
        await _open_clients.pop().aclose()


def make_client(server: FakeProviderServer, **kwargs: object) -> OpenAIClient:
    options: dict[str, object] = {"timeout": 5.0, "max_retries": 2, **kwargs}
    client = OpenAIClient("gpt-4o", base_url=server.openai_base_url, **options)  # type: ignore[arg-type]
    _open_clients.append(client)
    return client


async def test_structured_answer_with_json_schema(
    fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    fake_server.push(OPENAI_ROUTE, openai_completion(content=json.dumps(PLAN)))
    client = make_client(fake_server)
    response = await client.complete(plan_request)
    await client.aclose()

    assert json.loads(response.text) == PLAN
    assert response.stop_reason == "end"
    assert response.provider == "openai"
    assert response.model == "gpt-4o-2024-08-06"
    assert response.request_id == "req_fake"

    (sent,) = fake_server.requests_to(OPENAI_ROUTE)
    assert sent.headers["authorization"] == "Bearer sk-proj-test0123456789abcdefghij"
    body = sent.body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "plan", "schema": plan_request.json_schema, "strict": True},
    }
    assert body["seed"] == 7
    assert body["temperature"] == 0.0
    assert body["max_completion_tokens"] == 512
    # Static system text first, so OpenAI's automatic prefix caching can apply.
    assert body["messages"][0] == {
        "role": "system",
        "content": "You plan lab tasks. Answer with the plan schema.\n\nMission m-1, step 3.",
    }
    assert body["messages"][1]["role"] == "user"


@pytest.mark.parametrize(
    "first",
    [
        FakeReply(429, {"error": {"message": "slow down"}}, {"retry-after": "0.01"}),
        openai_error(503),
    ],
    ids=["429-retry-after", "503"],
)
async def test_sdk_retries_then_succeeds(
    fake_server: FakeProviderServer, plan_request: LLMRequest, first: FakeReply
) -> None:
    fake_server.push(OPENAI_ROUTE, first, openai_completion(content=json.dumps(PLAN)))
    response = await make_client(fake_server).complete(plan_request)
    assert json.loads(response.text) == PLAN
    assert len(fake_server.requests) == 2


async def test_persistent_500_raises_after_sdk_retries(
    fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    fake_server.push(OPENAI_ROUTE, *[openai_error(500)] * 2)
    with pytest.raises(LLMAPIError) as info:
        await make_client(fake_server, max_retries=1).complete(plan_request)
    assert info.value.status_code == 500
    assert info.value.retriable is True
    assert len(fake_server.requests) == 2


async def test_timeout(fake_server: FakeProviderServer, plan_request: LLMRequest) -> None:
    fake_server.push(OPENAI_ROUTE, FakeReply(body=openai_completion(content="{}"), delay_s=5))
    with pytest.raises(LLMTimeoutError):
        await make_client(fake_server, timeout=0.3, max_retries=0).complete(plan_request)


async def test_refusal_with_http_200(
    fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    fake_server.push(OPENAI_ROUTE, openai_completion(refusal="I can't help with that."))
    response = await make_client(fake_server).complete(plan_request)
    assert response.stop_reason == "refusal"
    assert response.refusal == "I can't help with that."
    assert response.raw_stop_reason == "stop"
    assert response.text == ""


async def test_truncated_output(fake_server: FakeProviderServer, plan_request: LLMRequest) -> None:
    fake_server.push(OPENAI_ROUTE, openai_completion(content='{"tasks": [', finish_reason="length"))
    response = await make_client(fake_server).complete(plan_request)
    assert response.stop_reason == "max_tokens"
    assert response.text == '{"tasks": ['


@pytest.mark.parametrize("finish", ["length", "abort", ""])
async def test_any_finish_but_stop_is_a_truncated_answer(
    fake_server: FakeProviderServer, plan_request: LLMRequest, finish: str
) -> None:
    # A compatible server's own reason (or none) must not let a partial answer be parsed.
    fake_server.push(OPENAI_ROUTE, openai_completion(content='{"tasks": [', finish_reason=finish))
    response = await make_client(fake_server).complete(plan_request)
    assert response.stop_reason == "max_tokens"
    assert response.raw_stop_reason == finish


async def test_stop_is_a_complete_answer(
    fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    fake_server.push(OPENAI_ROUTE, openai_completion(content=json.dumps(PLAN)))
    response = await make_client(fake_server).complete(plan_request)
    assert response.stop_reason == "end" and json.loads(response.text) == PLAN


async def test_extra_body_fields_are_sent(
    fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    fake_server.push(OPENAI_ROUTE, openai_completion(content=json.dumps(PLAN)))
    await make_client(fake_server, extra_body={"cache_prompt": True}).complete(plan_request)
    body = fake_server.requests_to(OPENAI_ROUTE)[0].body
    assert body["cache_prompt"] is True
    assert body["response_format"]["json_schema"]["schema"] == plan_request.json_schema


async def test_cached_tokens_and_cost(
    fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    fake_server.push(
        OPENAI_ROUTE,
        openai_completion(
            content="{}", prompt_tokens=3000, completion_tokens=100, cached_tokens=2048
        ),
    )
    response = await make_client(fake_server).complete(plan_request)
    usage = response.usage
    # prompt_tokens includes the cached ones; Usage counts them once, in cache_read.
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (952, 2048, 100)
    result = estimate(response.model, usage)
    assert result.priced and result.price_key == "gpt-4o"
    assert result.usd == pytest.approx((952 * 2.5 + 2048 * 1.25 + 100 * 10.0) / 1e6)


def test_missing_key_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        OpenAIClient("gpt-4o")


async def test_compatible_server_needs_no_key(
    monkeypatch: pytest.MonkeyPatch, fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    fake_server.push(OPENAI_ROUTE, openai_completion(content="{}", model="llama3.1:8b"))
    client = OpenAIClient(
        "llama3.1:8b", provider="openai-compatible", base_url=fake_server.openai_base_url
    )
    response = await client.complete(plan_request)
    await client.aclose()
    assert response.provider == "openai-compatible"
    body = fake_server.requests[0].body
    # Older compatible servers know max_tokens, not max_completion_tokens.
    assert body["max_tokens"] == 512 and "max_completion_tokens" not in body
    assert response.usage.input_tokens == 100
