"""Regenerate the shipped LLM cassettes (`evals/fixtures/<scenario>.jsonl`), synthetically.

The answers come from `evals.sensible` (a scripted model), recorded through
`llm.replay.RecordingClient(synthetic=True)`, so every cassette header says `synthetic: true`.
Run it after editing a prompt, the planner or a scenario, then commit the cassettes:

    python -m evals.make_fixtures [--scenarios evals/scenarios] [--trials 3] [--out DIR]

To record a live model instead: `reaper eval --planners llm --record DIR` with a provider key.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import shutil
import sys
from pathlib import Path

from evals.harness import code_version, plan_jobs, run_suite
from evals.planners import DEFAULT_FIXTURES, LLMSource, cassette_for
from evals.scenario import load_scenarios

__all__ = ["DEFAULT_TRIALS", "main", "make_fixtures", "pack"]

log = logging.getLogger(__name__)

DEFAULT_TRIALS = 3
SCENARIOS = Path(__file__).parent / "scenarios"


def make_fixtures(scenarios_dir: Path, out: Path, trials: int) -> list[str]:
    """Record every scenario afresh; return the problems found (runs that errored)."""
    scenarios = load_scenarios(scenarios_dir)
    out.mkdir(parents=True, exist_ok=True)
    for scenario in scenarios:
        for suffix in (".jsonl", ".jsonl.gz"):
            (out / f"{scenario.name}{suffix}").unlink(missing_ok=True)
    source = LLMSource(
        mode="record", path=out, synthetic=True, client_factory="evals.sensible:sensible_client"
    )
    jobs = plan_jobs(
        scenarios, [("llm", "llm")], trials=trials, source=source, version=code_version()
    )
    results = run_suite(jobs, processes=1)
    for scenario in scenarios:
        pack(cassette_for(out, scenario.name))
    return [f"{r.scenario} seed {r.seed}: {r.error}" for r in results if r.error]


def pack(path: Path) -> Path:
    """Gzip a cassette in place (`.jsonl` → `.jsonl.gz`): the prompts repeat from entry to
    entry, so this is ~18x smaller. mtime 0 keeps the bytes a function of the content."""
    packed = path.with_name(path.name + ".gz")
    with path.open("rb") as src, gzip.GzipFile(packed, "wb", compresslevel=9, mtime=0) as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return packed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.make_fixtures", description=__doc__)
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS)
    parser.add_argument("--out", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    problems = make_fixtures(args.scenarios, args.out, args.trials)
    for problem in problems:
        log.error("%s", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
