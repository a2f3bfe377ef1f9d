"""The shipped synthetic cassette replays the demo lab with no key and no network."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from llm.replay import load_cassette
from reaper.models import MissionStatus

ROOT = Path(__file__).resolve().parents[2]
CASSETTE = ROOT / "reaper/labs/demo-llm.cassette.jsonl"
LAB = ROOT / "reaper/labs/demo.yaml"


def _script() -> object:
    spec = importlib.util.spec_from_file_location(
        "make_demo_cassette", ROOT / "benchmarks/make_demo_cassette.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cassette_is_labelled_synthetic() -> None:
    cassette = load_cassette(CASSETTE)
    assert cassette.header.synthetic is True and cassette.header.provider == "synthetic"
    assert all(e.response.text for e in cassette.entries)


@pytest.mark.slow
async def test_demo_replays_from_the_shipped_cassette() -> None:
    # The demo lab has real (seeded) latencies: this takes a few seconds of wall time.
    final = await _script().run_demo(LAB, replay=CASSETTE)  # type: ignore[attr-defined]
    assert final.status is MissionStatus.COMPLETED and final.goal_reached
