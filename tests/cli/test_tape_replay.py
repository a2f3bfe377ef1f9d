"""A real mission's tape replays against its own cassette: the eval asks the model exactly
as the mission did (max_tokens from the tape), and a lockstep step is shown every result
its engine held for it."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from tests.cli.conftest import Run


def test_the_demo_missions_tape_replays_against_its_cassette(cli: Run, tmp_path: Path) -> None:
    tape = tmp_path / "demo.tape.jsonl"
    rc, _, err = cli("demo", "--planner", "llm", "--tape", str(tape), "--no-live", "--no-input")
    assert rc == 0, err
    cassette = str(resources.files("reaper.labs").joinpath("demo-llm.cassette.jsonl"))
    rc, out, err = cli("eval", "replay", str(tape), "--planner", "llm", "--replay", cassette,
                       "--json")  # fmt: skip
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["first_divergent_step"] is None and len(doc["steps"]) == 3
