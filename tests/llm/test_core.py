"""Types, pricing, the scripted client, the network guard and the factory."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

import llm
from llm.errors import LLMConfigError, LLMError
from llm.factory import build_client
from llm.pricing import DEFAULT_PRICES, ModelPrice, cost, estimate
from llm.replay import RecordingClient, ReplayClient
from llm.testing import NetworkBlockedError, ScriptedClient, network_guard
from llm.types import LLMRequest, LLMResponse, Message, Usage


def test_usage_adds_and_sums() -> None:
    a = Usage(input_tokens=1, output_tokens=2, cache_read_tokens=3, cache_write_tokens=4)
    total = a + a
    assert total == Usage(
        input_tokens=2, output_tokens=4, cache_read_tokens=6, cache_write_tokens=8
    )
    assert sum([a, a, a], Usage()).output_tokens == 6
    assert sum([a, a]) == a + a  # __radd__ lets sum() start from 0


def test_request_validation() -> None:
    with pytest.raises(ValidationError):
        LLMRequest(messages=[])
    with pytest.raises(ValidationError):
        LLMRequest(messages=[Message(role="user", text="x")], schema_name="has spaces")
    request = LLMRequest(
        messages=[Message(role="user", text="a"), Message(role="assistant", text="b")]
    )
    assert request.last_user_text() == "a"


def test_unknown_model_costs_zero_unpriced() -> None:
    usage = Usage(input_tokens=1_000_000)
    result = estimate("some-local-model", usage)
    assert (result.usd, result.priced) == (0.0, False)
    assert cost("some-local-model", usage) == 0.0


def test_dated_snapshot_priced_by_longest_prefix() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert estimate("gpt-4o-mini-2024-07-18", usage).price_key == "gpt-4o-mini"
    assert cost("gpt-4o-mini-2024-07-18", usage) == pytest.approx(0.15 + 0.60)


def test_price_overrides_from_config() -> None:
    table = DEFAULT_PRICES.with_overrides(
        {"llama3.1": {"input": 0.0, "output": 0.0}, "gpt-4o": ModelPrice(input=1, output=2)}
    )
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert table.estimate("llama3.1", usage).priced is True
    assert table.cost("gpt-4o", usage) == pytest.approx(3.0)
    assert DEFAULT_PRICES.cost("gpt-4o", usage) == pytest.approx(12.5)  # original untouched


async def test_scripted_client_list_and_function() -> None:
    request = LLMRequest(messages=[Message(role="user", text="plan")])
    scripted = ScriptedClient([{"tasks": []}, "raw", LLMResponse(text="t", stop_reason="refusal")])
    assert (await scripted.complete(request)).text == '{"tasks": []}'
    assert (await scripted.complete(request)).text == "raw"
    third = await scripted.complete(request)
    assert (third.stop_reason, third.provider) == ("refusal", "scripted")
    with pytest.raises(LLMError, match="only 3 answers"):
        await scripted.complete(request)
    assert len(scripted.requests) == 4

    echo = ScriptedClient(lambda r: {"echo": r.last_user_text()}, model="echo-1")
    response = await echo.complete(request)
    assert (response.text, response.model) == ('{"echo": "plan"}', "echo-1")


def test_clients_satisfy_protocol(tmp_path: Path) -> None:
    scripted = ScriptedClient(["x"])
    assert isinstance(scripted, llm.LLMClient)
    assert isinstance(RecordingClient(scripted, tmp_path / "c.jsonl"), llm.LLMClient)


def test_network_guard_blocks_remote_allows_loopback() -> None:
    with network_guard(), socket.socket() as sock, pytest.raises(NetworkBlockedError):
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1, never routed
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with network_guard():
            client.connect(server.getsockname())


def test_factory_builds_each_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_client("anthropic", "claude-haiku-4-5").provider == "anthropic"
    assert build_client("openai", "gpt-4o").provider == "openai"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert build_client("ollama", "llama3.1").provider == "openai-compatible"
    recorder = build_client(
        "openai-compatible",
        "m",
        base_url="http://127.0.0.1:1/v1",
        cassette=tmp_path / "r.jsonl",
        record=True,
    )
    assert isinstance(recorder, RecordingClient)


async def test_factory_replay_needs_no_key_or_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cassette = tmp_path / "r.jsonl"
    request = LLMRequest(messages=[Message(role="user", text="go")])
    await RecordingClient(
        ScriptedClient(["ok"], provider="anthropic", model="m"), cassette, synthetic=True
    ).complete(request)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setitem(sys.modules, "anthropic", None)  # as if not installed
    client = build_client("replay", cassette=cassette)
    assert isinstance(client, ReplayClient) and client.provider == "anthropic"
    assert (await client.complete(request)).text == "ok"


def test_factory_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LLMConfigError, match="unknown LLM provider"):
        build_client("gemini", "x")
    with pytest.raises(LLMConfigError, match="cassette"):
        build_client("replay")
    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(LLMConfigError, match="pip install 'anthropic"):
        build_client("anthropic", "claude-haiku-4-5")
