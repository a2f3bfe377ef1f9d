"""The `local` provider against a real llama-server running SmolLM2-135M (from .ci/llama-setup).

A 135M model answers nonsense, but llama-server decodes under the schema's grammar, so the
answer must still parse against the planner's schema. One server serves the session; one test
starts and stops its own to check the lifecycle.
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm.errors import LLMConfigError
from llm.factory import build_client
from llm.llama_server import LlamaServer
from llm.local import LOCAL_API_KEY, LocalClient, file_sha256
from llm.testing import ScriptedClient
from llm.types import LLMRequest
from reaper.planners.llm import LLMPlanner
from reaper.planners.llm_schema import LLMPlan, plan_json_schema
from tests.needs import require_llama
from tests.planners.support import demo_state

pytestmark = pytest.mark.llama

_SYSTEM_CHARS = 4500
_DONE = '{"tasks": [], "done": true, "note": "nothing to do"}'


@pytest.fixture(scope="session")
def llama() -> Iterator[tuple[str, Path]]:
    binary, model = require_llama()
    server = LlamaServer(binary, model, ctx_size=4096)
    url = server.start()
    yield url, model
    server.stop()


@pytest.fixture(scope="module")
def planning_request() -> LLMRequest:
    # The request the LLM planner sends for the demo lab, its system prompt (the whole catalog:
    # ~11k tokens) cut to ~1.5k tokens so that a cold call stays a few seconds on two cores.
    scripted = ScriptedClient([_DONE])
    asyncio.run(LLMPlanner(scripted).initial_tasks(demo_state()))
    request = scripted.requests[0]
    system = [b.model_copy(update={"text": b.text[:_SYSTEM_CHARS]}) for b in request.system]
    # The plan schema with the tasks array bounded tighter, so the answer fits in a few seconds
    # of decoding (a tiny model fills every array up to its bound).
    schema = copy.deepcopy(plan_json_schema())
    schema["properties"]["tasks"]["maxItems"] = 1
    return request.model_copy(update={"system": system, "json_schema": schema, "max_tokens": 300})


async def _local(url: str, model: Path) -> LocalClient:
    client = build_client("local", base_url=url, model_path=model)
    assert isinstance(client, LocalClient)
    return client


async def test_planning_answer_parses_against_the_schema(
    llama: tuple[str, Path], planning_request: LLMRequest
) -> None:
    client = await _local(*llama)
    try:
        response = await client.complete(planning_request)
    finally:
        await client.aclose()
    assert response.stop_reason == "end", response.text
    plan = LLMPlan.model_validate_json(response.text)
    assert len(plan.tasks) <= 1
    assert (response.provider, response.model) == ("local", llama[1].stem)
    assert response.usage.output_tokens > 0


async def test_the_server_enforces_string_bounds(
    llama: tuple[str, Path], planning_request: LLMRequest
) -> None:
    # What the planner's bounded schema relies on: the grammar closes a string at maxLength
    # (bounds tighter than the planner's, so the call stays short).
    schema = copy.deepcopy(plan_json_schema(bounded=True))
    schema["properties"]["tasks"]["maxItems"] = 1
    task = schema["properties"]["tasks"]["items"]["properties"]
    for props in (task, schema["properties"]):
        for name in ("params_json", "reason", "note"):
            if name in props:
                props[name]["maxLength"] = 12
    client = await _local(*llama)
    try:
        response = await client.complete(
            planning_request.model_copy(update={"json_schema": schema})
        )
    finally:
        await client.aclose()
    assert response.stop_reason == "end", response.text
    plan = LLMPlan.model_validate_json(response.text)
    strings = [plan.note, *(s for t in plan.tasks for s in (t.params_json, t.reason))]
    assert all(len(s) <= 12 for s in strings), strings


async def test_tiny_max_tokens_is_a_truncated_answer(
    llama: tuple[str, Path], planning_request: LLMRequest
) -> None:
    client = await _local(*llama)
    try:
        response = await client.complete(planning_request.model_copy(update={"max_tokens": 3}))
    finally:
        await client.aclose()
    assert response.stop_reason == "max_tokens" and response.raw_stop_reason == "length"


async def test_repeat_call_reuses_the_cached_prefix(
    llama: tuple[str, Path], planning_request: LLMRequest
) -> None:
    client = await _local(*llama)
    short = planning_request.model_copy(update={"max_tokens": 8})
    try:
        await client.complete(short)
        again = await client.complete(short)
    finally:
        await client.aclose()
    # llama-server reports the reused KV prefix as OpenAI's cached_tokens.
    assert again.usage.cache_read_tokens > again.usage.input_tokens


async def test_started_server_stops_on_close(llama: tuple[str, Path]) -> None:
    _, model = llama
    client = build_client("local", model_path=model)
    assert isinstance(client, LocalClient)
    server = client._server
    assert server is not None and server._process is not None
    process: subprocess.Popen[bytes] = server._process
    assert client.model_sha256 == file_sha256(model)
    await client.aclose()
    assert process.wait(timeout=10) is not None


def test_missing_binary_names_the_setup_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Needs no server: runs everywhere, under the same marker for locality.
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setenv("REAPER_LLAMA_SERVER", str(tmp_path / "absent"))
    with pytest.raises(LLMConfigError, match=r"\.ci/llama-setup"):
        build_client("local", model_path=model)


def test_missing_model_is_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(LLMConfigError, match="no GGUF model"):
        build_client("local", model_path=tmp_path / "absent.gguf")


def test_a_users_openai_key_is_not_sent_to_the_local_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Needs no server: the client is built against a URL it never calls.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-users-own-key")
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    client = LocalClient(model_path=model, base_url="http://127.0.0.1:9")
    assert client._inner._client.api_key == LOCAL_API_KEY
    asyncio.run(client.aclose())


def test_a_model_path_that_is_not_gguf_is_one_config_error(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.bin"
    bogus.write_text("safetensors?")
    with pytest.raises(LLMConfigError, match="not a GGUF model file"):
        build_client("local", model_path=bogus, base_url="http://127.0.0.1:9")
