"""`reaper eval record` records a provider's answers with provenance, and refuses bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evals.cli import main
from llm.replay import load_cassette
from llm.testing import OPENAI_ROUTE, FakeProviderServer, network_guard, openai_completion

_DONE = json.dumps({"tasks": [], "done": True, "note": "nothing to do"})


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProviderServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-test0123456789abcdefghij")
    with network_guard(), FakeProviderServer() as server:
        yield server


def test_records_a_live_provider_with_provenance(
    tmp_path: Path, fake_openai: FakeProviderServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_openai.push(OPENAI_ROUTE, *[openai_completion(content=_DONE) for _ in range(10)])
    argv = ["record", "--provider", "openai", "--model", "gpt-test", "--only", "happy-path"]
    argv += ["--trials", "1", "--out", str(tmp_path), "--base-url", fake_openai.openai_base_url]
    assert main(argv) == 0, capsys.readouterr().err
    cassette = load_cassette(tmp_path / "happy-path.jsonl")
    assert cassette.header.synthetic is False and cassette.entries
    recorded = cassette.header.recorded
    assert recorded is not None and (recorded.provider, recorded.model) == ("openai", "gpt-test")
    assert recorded.date == datetime.now(UTC).date() and recorded.model_sha256 is None
    assert len(fake_openai.requests_to(OPENAI_ROUTE)) == len(cassette.entries)


def test_nothing_recorded_is_a_failure(
    tmp_path: Path, fake_openai: FakeProviderServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # The fake server answers 500 to everything: the planner falls back, nothing is recorded.
    argv = ["record", "--provider", "openai", "--model", "gpt-test", "--only", "happy-path"]
    argv += ["--trials", "1", "--out", str(tmp_path), "--base-url", fake_openai.openai_base_url]
    assert main(argv) == 2
    assert "happy-path: no answer recorded" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--provider", "openai"], "needs --model"),
        (["--provider", "anthropic", "--model", "m", "--model-path", "x.gguf"], "local only"),
        (["--provider", "local", "--model-path", "absent.gguf"], "no such GGUF"),
        (["--provider", "local", "--trials", "0"], "at least 1"),
        (["--provider", "local", "--planners", "llm,rule"], "one or more of llm, hybrid"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["record", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_records_the_hybrids_calls_beside_the_llm_planners_and_both_replay(
    tmp_path: Path, fake_openai: FakeProviderServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # A clock skew is outside the rules' known failures: the hybrid asks the model about it.
    fake_openai.push(OPENAI_ROUTE, *[openai_completion(content=_DONE) for _ in range(40)])
    scenario = ["--scenarios", "evals/scenarios/desired", "--only", "ds-clock-skew-5"]
    argv = ["record", "--provider", "openai", "--model", "gpt-test", *scenario, "--trials", "1"]
    argv += ["--base-url", fake_openai.openai_base_url, "--planners"]
    assert main([*argv, "llm", "--out", str(tmp_path / "llm")]) == 0, capsys.readouterr().err
    assert main([*argv, "llm,hybrid", "--out", str(tmp_path / "both")]) == 0
    alone = load_cassette(tmp_path / "llm" / "ds-clock-skew-5.jsonl").entries
    both = load_cassette(tmp_path / "both" / "ds-clock-skew-5.jsonl").entries
    assert len(both) > len(alone)
    capsys.readouterr()
    planners = f"llm+{tmp_path / 'both'},hybrid+{tmp_path / 'both'}"
    replay = [*scenario, "--trials", "1", "--planners", planners, "--json", "--out", ""]
    assert main(replay) == 0
    runs = json.loads(capsys.readouterr().out)["results"]
    assert sorted(r["planner"] for r in runs) == [
        "hybrid (openai: gpt-test)", "llm (openai: gpt-test)"
    ]  # fmt: skip
    assert all(r["error"] is None for r in runs)
