"""`reaper run --planner llm` end to end through the CLI: the real SDK found through
ANTHROPIC_BASE_URL / OPENAI_BASE_URL, recording a cassette, then replaying it with no key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llm.testing import FakeProviderServer, anthropic_message, openai_completion
from reaper.cli import main
from tests.planners.support import plan_answer

ANTHROPIC_ROUTE = "/v1/messages"
OPENAI_ROUTE = "/v1/chat/completions"

LAB = {
    "schema_version": 1,
    "mission_id": "llm-cli",
    "lab_type": "llm-cli-lab",
    "goal": "baselined",
    "planner": "llm",
    "defaults": {"transport": "sim"},
    "hosts": [{"host_id": "web-01", "os": "linux"}, {"host_id": "dc-01", "os": "windows"}],
}
STEPS = [
    plan_answer(("dc-01", "windows.discover"), ("web-01", "linux.discover")),
    plan_answer(("dc-01", "windows.baseline"), ("web-01", "linux.baseline")),
    plan_answer(done=True, note="every host is baselined"),
]


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REAPER_DB", str(tmp_path / "reaper.db"))
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(LAB))
    return path


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_live_run_through_the_base_url_records_and_replays_without_a_key(
    provider: str,
    lab: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cassette = tmp_path / "run.cassette.jsonl"
    key = "sk-ant-api03-cli0123456789abcdef" if provider == "anthropic" else "sk-proj-cli0123456789"
    with FakeProviderServer() as server:
        if provider == "anthropic":
            monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
            monkeypatch.setenv("ANTHROPIC_API_KEY", key)
            server.push(
                ANTHROPIC_ROUTE, *(anthropic_message(tool_input=s, tool_name="plan") for s in STEPS)
            )
            model = "claude-haiku-4-5"
        else:
            monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
            monkeypatch.setenv("OPENAI_API_KEY", key)
            server.push(OPENAI_ROUTE, *(openai_completion(content=json.dumps(s)) for s in STEPS))
            model = "gpt-4o-mini"
        code = main(
            [
                "run",
                str(lab),
                "--provider",
                provider,
                "--model",
                model,
                "--record",
                str(cassette),
                "--json",
                "--no-input",
            ]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        report = json.loads(out)
        assert report["status"] == "completed" and report["goal_reached"]
        assert report["llm_usage"]["calls"] == 3
        assert len(server.requests) == 3
    text = cassette.read_text()
    assert key not in text  # never recorded
    # Replay: no server, no key, a fresh mission id; the same plan and the same outcome.
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main(
        [
            "run",
            str(lab),
            "--mission-id",
            "llm-cli-replay",
            "--replay",
            str(cassette),
            "--json",
            "--no-input",
        ]
    )
    replay = json.loads(capsys.readouterr().out)
    assert code == 0 and replay["status"] == "completed" and replay["goal_reached"]
    assert replay["llm_usage"]["calls"] == 3


def test_missing_key_is_one_line_naming_the_variable(
    lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            str(lab),
            "--provider",
            "anthropic",
            "--model",
            "claude-haiku-4-5",
            "--no-live",
            "--no-input",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and "ANTHROPIC_API_KEY" in err[0]
