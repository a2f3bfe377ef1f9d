from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm.anthropic import AnthropicClient
from llm.errors import LLMConfigError, ReplayMissError
from llm.replay import (
    CASSETTE_SCHEMA_VERSION,
    RecordingClient,
    ReplayClient,
    load_cassette,
    request_key,
)
from llm.testing import ANTHROPIC_ROUTE, FakeProviderServer, ScriptedClient, anthropic_message
from llm.types import LLMRequest, Message, SystemBlock

from .conftest import ANTHROPIC_TEST_KEY

PLAN = {"tasks": [{"host": "web-1", "action": "linux.discover"}]}


def with_user(request: LLMRequest, text: str) -> LLMRequest:
    return request.model_copy(update={"messages": [Message(role="user", text=text)]})


async def test_record_then_replay_without_network(
    tmp_path: Path, fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    cassette = tmp_path / "run.jsonl"
    fake_server.push(
        ANTHROPIC_ROUTE,
        anthropic_message(tool_input=PLAN, tool_name="plan", input_tokens=321),
        anthropic_message(tool_input={"tasks": []}, tool_name="plan"),
    )
    live = AnthropicClient("claude-haiku-4-5", base_url=fake_server.anthropic_base_url)
    recorder = RecordingClient(live, cassette, secrets=[ANTHROPIC_TEST_KEY])
    second_request = with_user(plan_request, "Hosts: web-1 discovered.")
    recorded = [await recorder.complete(plan_request), await recorder.complete(second_request)]
    await recorder.aclose()
    fake_server.stop()  # replay must not need it

    loaded = load_cassette(cassette)
    assert loaded.header.schema_version == CASSETTE_SCHEMA_VERSION
    assert loaded.header.synthetic is False
    assert (loaded.header.provider, loaded.header.model) == ("anthropic", "claude-haiku-4-5")
    assert "prompt_hash=abc123" in loaded.entries[0].summary

    replay = ReplayClient(cassette)
    assert (replay.provider, replay.model) == ("anthropic", "claude-haiku-4-5")
    replayed = [await replay.complete(plan_request), await replay.complete(second_request)]
    assert replayed == recorded
    assert replayed[0].usage.input_tokens == 321
    assert replay.unused() == []


async def test_same_key_served_in_order_then_miss(tmp_path: Path, plan_request: LLMRequest) -> None:
    cassette = tmp_path / "k.jsonl"
    recorder = RecordingClient(ScriptedClient(["first", "second"]), cassette, synthetic=True)
    await recorder.complete(plan_request)
    await recorder.complete(plan_request)

    replay = ReplayClient(cassette)
    assert replay.synthetic is True
    assert (await replay.complete(plan_request)).text == "first"
    assert (await replay.complete(plan_request)).text == "second"
    with pytest.raises(ReplayMissError, match="already served"):
        await replay.complete(plan_request)


async def test_miss_names_key_and_describes_request(
    tmp_path: Path, plan_request: LLMRequest
) -> None:
    cassette = tmp_path / "m.jsonl"
    await RecordingClient(ScriptedClient(["x"]), cassette).complete(plan_request)
    replay = ReplayClient(cassette)

    edited = plan_request.model_copy(
        update={
            "system": [SystemBlock(text="You plan lab tasks, carefully.", cache=True)],
            "metadata": {"prompt_hash": "def456"},
        }
    )
    with pytest.raises(ReplayMissError) as info:
        await replay.complete(edited)
    error = info.value
    assert error.key == request_key(edited, "scripted", "scripted")
    message = str(error)
    assert error.key[:16] in message
    assert "schema=plan" in message and "prompt_hash=def456" in message
    assert "Hosts: web-1" in message
    assert "differs in: system" in message
    assert len(replay.unused()) == 1


async def test_unused_entries_reported(tmp_path: Path, plan_request: LLMRequest) -> None:
    cassette = tmp_path / "u.jsonl"
    recorder = RecordingClient(ScriptedClient(["a", "b"]), cassette)
    await recorder.complete(plan_request)
    await recorder.complete(with_user(plan_request, "a step that no longer happens"))

    replay = ReplayClient(cassette)
    await replay.complete(plan_request)
    (unused,) = replay.unused()
    assert "no longer happens" in unused.summary


async def test_secrets_scrubbed_from_cassette(tmp_path: Path, plan_request: LLMRequest) -> None:
    cassette = tmp_path / "s.jsonl"
    leaky = with_user(
        plan_request,
        "env: OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx "
        "Authorization: Bearer eyJhbGciOi.payload.sig token=hunter2-lab-password",
    )
    recorder = RecordingClient(
        ScriptedClient(["saw sk-ant-api03-zzzzzzzzzzzzzzzzzzzz"]),
        cassette,
        secrets=["hunter2-lab-password"],
    )
    await recorder.complete(leaky)
    text = cassette.read_text()
    for secret in ("sk-proj-abcdef", "eyJhbGciOi", "hunter2-lab-password", "sk-ant-api03"):
        assert secret not in text
    assert "[REDACTED]" in text


def test_key_ignores_transport_and_labels(plan_request: LLMRequest) -> None:
    key = request_key(plan_request, "anthropic", "claude-haiku-4-5")
    relabelled = plan_request.model_copy(
        update={
            "metadata": {"prompt_hash": "other"},
            "system": [b.model_copy(update={"cache": False}) for b in plan_request.system],
        }
    )
    assert request_key(relabelled, "anthropic", "claude-haiku-4-5") == key
    assert (
        request_key(plan_request.model_copy(update={"seed": 8}), "anthropic", "claude-haiku-4-5")
        != key
    )
    assert request_key(plan_request, "anthropic", "claude-opus-4-5") != key


async def test_key_independent_of_timeout_and_retries(
    tmp_path: Path, fake_server: FakeProviderServer, plan_request: LLMRequest
) -> None:
    keys = []
    for index, (timeout, retries) in enumerate([(5.0, 0), (30.0, 4)]):
        fake_server.push(ANTHROPIC_ROUTE, anthropic_message(tool_input=PLAN, tool_name="plan"))
        client = AnthropicClient(
            "claude-haiku-4-5",
            base_url=fake_server.anthropic_base_url,
            timeout=timeout,
            max_retries=retries,
        )
        cassette = tmp_path / f"t{index}.jsonl"
        recorder = RecordingClient(client, cassette)
        await recorder.complete(plan_request)
        await recorder.aclose()
        keys.append(load_cassette(cassette).entries[0].key)
    assert keys[0] == keys[1]


async def test_recorder_refuses_other_model_cassette(
    tmp_path: Path, plan_request: LLMRequest
) -> None:
    cassette = tmp_path / "c.jsonl"
    await RecordingClient(ScriptedClient(["x"], model="a"), cassette).complete(plan_request)
    # Appending to the same model is fine; another model is a config error.
    RecordingClient(ScriptedClient(["y"], model="a"), cassette)
    with pytest.raises(LLMConfigError, match="record to another file"):
        RecordingClient(ScriptedClient(["y"], model="b"), cassette)


def test_unknown_schema_version_is_rejected(tmp_path: Path) -> None:
    cassette = tmp_path / "old.jsonl"
    header = {
        "type": "header",
        "schema_version": 99,
        "synthetic": True,
        "provider": "p",
        "model": "m",
        "created": "2025-01-01T00:00:00Z",
    }
    cassette.write_text(json.dumps(header) + "\n")
    with pytest.raises(LLMConfigError, match="schema_version"):
        ReplayClient(cassette)
