"""Prompt variants: `reaper eval --prompts DIR` runs the LLM planner with the prompt files in
DIR (any of `prompts.PROMPT_FILES`; the others stay the shipped ones) beside the shipped
prompts, on the same scenarios and seeds, and compares the two run by run.

A variant is the planner spec `llm@DIR`, labelled `llm@<dir name>`. Its answers cannot come
from the shipped cassettes (a prompt change changes every replay key): record them
(`--record DIR --provider ...`), run live, or use a scripted model (`--client`). The pairing
is `evals.compare`'s, by (scenario, seed): each metric's paired difference with a 95%
bootstrap interval, per scenario, so what changed is visible scenario by scenario. Every
result row carries its prompt hash, so the two sides are never mixed up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evals.compare import Comparison, compare
from evals.scorecard import RunResult
from prompts import variant_files
from reaper.errors import ConfigError

__all__ = ["VARIANT_PREFIX", "split_variant", "variant_comparison", "with_variant"]

VARIANT_PREFIX = "llm@"


def split_variant(spec: str) -> str | None:
    """The prompt directory of a `llm@DIR` spec, or None for any other planner."""
    return spec[len(VARIANT_PREFIX) :] if spec.startswith(VARIANT_PREFIX) else None


def with_variant(planners: Sequence[tuple[str, str]], directory: str) -> list[tuple[str, str]]:
    """The planners plus, after each `llm`, its variant on `directory`'s prompts."""
    try:
        variant_files(directory)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not any(spec == "llm" for _, spec in planners):
        raise ConfigError("--prompts compares LLM prompts: add llm to --planners")
    out: list[tuple[str, str]] = []
    for label, spec in planners:
        out.append((label, spec))
        if spec == "llm":
            out.append((variant_label(label, directory), f"{VARIANT_PREFIX}{directory}"))
    return out


def variant_label(base: str, directory: str) -> str:
    return f"{base}@{Path(directory).resolve().name}"


def variant_comparison(
    results: Sequence[RunResult], planners: Sequence[tuple[str, str]], directory: str
) -> Comparison:
    """Variant (NEW) against shipped (OLD), paired by scenario and seed, per base planner."""
    old: list[RunResult] = []
    new: list[RunResult] = []
    for label, spec in planners:
        if spec != "llm":
            continue
        variant = variant_label(label, directory)
        old += [r for r in results if r.planner == label]
        # Relabelled so that compare() pairs each variant run with its shipped twin.
        new += [r.model_copy(update={"planner": label}) for r in results if r.planner == variant]
    return compare(old, new)
