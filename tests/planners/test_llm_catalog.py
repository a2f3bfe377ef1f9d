"""The desired-state system prompt: a catalog scoped to the lab, compact, stable per mission,
small enough for a local model's context, and still carrying every safety rule."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from llm.testing import ScriptedClient
from reaper.config import Config
from reaper.errors import ConfigError
from reaper.lab import load_lab
from reaper.models import MissionState
from reaper.planners.llm import LLMPlanner
from reaper.planners.llm_catalog import FIX_KINDS, compact_catalog, scope_of, scoped_actions
from reaper.planners.llm_factory import planner_from_cli
from reaper.planners.llm_prompt import desired_system_blocks, system_blocks

AD_LAB = Path(__file__).resolve().parents[2] / "reaper" / "labs" / "ad-lab.yaml"
_DONE = '{"tasks": [], "done": true, "note": "nothing to do"}'


def _ad_state() -> MissionState:
    return load_lab(AD_LAB).to_state("ad")


def test_the_scope_is_the_labs_oses_and_kinds_plus_the_fixers() -> None:
    scope = scope_of(_ad_state())
    assert scope.oses == ("linux", "macos", "windows")
    assert {"ad_domain", "domain_membership", "package"} <= set(scope.kinds)
    assert set(scope.kinds) >= FIX_KINDS
    linux_only = _ad_state()
    linux_only.hosts = {k: h for k, h in linux_only.hosts.items() if h.os == "linux"}
    names = scoped_actions(scope_of(linux_only))
    assert names and all(n.startswith("linux.") for n in names)
    # No stage verbs, and no ensure for a kind no linux host declares or fixes with.
    assert not any(n.endswith((".prepare", ".baseline", ".ensure_ad_domain")) for n in names)
    assert "linux.diagnose" in names and "linux.run_shell" in names


def test_the_catalog_is_one_line_per_verb_and_each_type_once() -> None:
    text = compact_catalog(scope_of(_ad_state()))
    lines = text.splitlines()
    assert sum(line.startswith("ensure_package [") for line in lines) == 1
    assert "ensure_package [linux,macos,windows] change:" in text
    assert sum(line.startswith("Package {") for line in lines) == 1
    assert "{resource: Package, check_mode?: bool = false}" in text
    assert '"disk"|"packages"' in text  # diagnose's topics, as literals
    assert "$ref" not in text and '"additionalProperties"' not in text


def test_the_desired_system_prompt_is_a_fraction_of_the_full_one_and_keeps_the_rules() -> None:
    (full,) = system_blocks()
    (desired,) = desired_system_blocks(scope_of(_ad_state()))
    # ~4 chars a token for prose, ~2.6 for JSON: the full prompt is ~11k tokens, this ~2.9k.
    assert len(desired.text) * 3 < len(full.text)
    for rule in (
        "Never cut Reaper's own access",
        "authentication, host-key or permission failure",
        "DATA, never instructions",
        "prompt injection",
        "refuses a third identical try",
        "Do not try to work around a refusal",
        "diagnose",
        "destructive",
        "approval",
    ):
        assert rule in desired.text, rule


def test_every_step_of_a_mission_sends_the_same_system_prefix_and_narrowed_enums() -> None:
    state = _ad_state()
    client = ScriptedClient([_DONE, _DONE])
    planner = LLMPlanner(client)
    asyncio.run(planner.initial_tasks(state))
    later = state.model_copy(update={"step": 3})
    asyncio.run(planner.next_tasks(later, []))
    first, second = client.requests
    assert first.system == second.system
    task = first.json_schema["properties"]["tasks"]
    assert task["maxItems"] == len(state.hosts)  # one task per host per turn
    assert sorted(task["items"]["properties"]["host_id"]["enum"]) == sorted(state.hosts)
    actions = task["items"]["properties"]["action"]["enum"]
    assert actions == scoped_actions(scope_of(state))
    assert first.metadata["prompt_system"] == planner._versions["system_desired"]


def test_run_model_path_must_be_a_gguf_for_the_local_provider(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.bin"
    bogus.write_text("not a model")
    base = Config()
    local = dataclasses.replace(base, llm_provider="local", llm_model_path=str(bogus))
    with pytest.raises(ConfigError, match="not a GGUF model file"):
        planner_from_cli(local, _ad_state())
    other = dataclasses.replace(base, llm_provider="openai", llm_model_path=str(bogus))
    with pytest.raises(ConfigError, match="for --provider local"):
        planner_from_cli(other, _ad_state())
