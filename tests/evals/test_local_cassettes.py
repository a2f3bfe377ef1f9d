"""The shipped cassettes recorded from a real local model (SmolLM2-135M under llama-server,
`evals/fixtures/desired-local/`) replay offline, with no server, bit-identically: every run
finds its answers, and two replays give the same results. Their headers carry provenance."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from evals.harness import plan_jobs, run_suite
from evals.planners import replay_label
from evals.scenario import load_scenarios
from llm.replay import CassetteHeader

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "evals" / "fixtures" / "desired-local"
DESIRED = ROOT / "evals" / "scenarios" / "desired"
CASSETTES = sorted(LOCAL.glob("*.jsonl.gz"))
# Wall-clock fields: the only ones a replay may change.
_TIMING = {"wall_s", "latency_s", "llm_latency_s"}


@pytest.mark.parametrize("path", CASSETTES, ids=lambda p: p.name.split(".")[0])
def test_each_header_names_the_model_its_file_and_the_date(path: Path) -> None:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        header = CassetteHeader.model_validate_json(handle.readline())
    assert not header.synthetic and header.provider == "local"
    assert header.recorded is not None
    assert header.recorded.model.startswith("SmolLM2-135M")
    assert re.fullmatch(r"[0-9a-f]{64}", header.recorded.model_sha256 or "")
    assert header.provenance().startswith("recorded: ")


@pytest.mark.parametrize("path", CASSETTES[:1], ids=lambda p: p.name.split(".")[0])
def test_the_scorecard_label_says_local_and_the_model(path: Path) -> None:
    assert replay_label(LOCAL).startswith("llm (local: SmolLM2-135M")


def _replay() -> list[dict[str, object]]:
    names = {p.name.removesuffix(".jsonl.gz") for p in CASSETTES}
    scenarios = load_scenarios(DESIRED, names)
    assert {s.name for s in scenarios} == names, "a cassette without its scenario"
    # One seed was recorded per scenario: a second trial replays it again.
    results = run_suite(plan_jobs(scenarios, [("local", f"llm+{LOCAL}")], trials=2), processes=1)
    return [r.model_dump(exclude=_TIMING) for r in results]


# A change to the prompts, the catalog or the sim world makes them stale: re-record (see the
# folder's README). With none shipped, pytest reports the tests below skipped.
@pytest.mark.parametrize("path", CASSETTES[:1], ids=lambda p: p.name.split(".")[0])
def test_they_replay_offline_and_identically(path: Path) -> None:
    first = _replay()
    assert all(r["error"] is None for r in first), [r["error"] for r in first if r["error"]]
    assert all(str(r["provenance"]).startswith("recorded: local/") for r in first)
    assert first == _replay()
