"""Cassette headers say who wrote the answers: a live or local model (and its file), or a script."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from llm.replay import RecordingClient, ReplayClient, load_cassette
from llm.testing import ScriptedClient
from llm.types import LLMRequest


class _WeightsClient(ScriptedClient):
    """A scripted stand-in for a client that loads a weights file (as llm.local does)."""

    def __init__(self, answers: list[str], digest: str) -> None:
        super().__init__(answers, model="tiny-q4")
        self.model_sha256 = digest


async def test_live_recording_carries_model_file_digest_and_date(
    tmp_path: Path, plan_request: LLMRequest
) -> None:
    digest = hashlib.sha256(b"weights").hexdigest()
    cassette = tmp_path / "local.jsonl"
    recorder = RecordingClient(_WeightsClient(["{}"], digest), cassette)
    await recorder.complete(plan_request)

    header = load_cassette(cassette).header
    assert header.recorded is not None and header.synthetic is False
    assert header.recorded.model_sha256 == digest
    assert header.recorded.date == datetime.now(UTC).date()
    label = header.provenance()
    assert label.startswith("recorded: ") and digest[:12] in label and "tiny-q4" in label


async def test_scripted_recording_has_no_provenance(
    tmp_path: Path, plan_request: LLMRequest
) -> None:
    cassette = tmp_path / "scripted.jsonl"
    recorder = RecordingClient(ScriptedClient(["{}"]), cassette, synthetic=True)
    await recorder.complete(plan_request)
    header = load_cassette(cassette).header
    assert header.recorded is None and header.provenance() == "scripted"


async def test_version_1_cassette_still_replays(tmp_path: Path, plan_request: LLMRequest) -> None:
    cassette = tmp_path / "v2.jsonl"
    recorder = RecordingClient(ScriptedClient(["{}"]), cassette, synthetic=True)
    answer = await recorder.complete(plan_request)
    lines = cassette.read_text().splitlines()
    header = json.loads(lines[0])
    header["schema_version"] = 1
    del header["recorded"]
    old = tmp_path / "v1.jsonl"
    old.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")

    replay = ReplayClient(old)
    assert await replay.complete(plan_request) == answer
    assert replay.header.recorded is None
