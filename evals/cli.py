"""`reaper eval ...`: run the suite, compare result sets, replay tapes against another planner.

    reaper eval [--planners rule,llm] [--scenarios evals/scenarios] [--trials 3]
                [--replay CASSETTE | --record CASSETTE] [--json] [--baseline FILE] [--out DIR]
    reaper eval compare OLD.jsonl NEW.jsonl [--all] [--json]
    reaper eval replay TAPE --planner P [--replay CASSETTE] [--json]
    reaper eval record --provider anthropic|openai|local [--model M] [--model-path GGUF] ...

Exit codes: 0 fine; 1 a regression (against --baseline, or found by compare); 2 bad input or a
run that errored (e.g. a cassette miss: the prompt or the call sequence changed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from evals.aggregate import aggregate
from evals.by_fault import fault_markdown, fault_rows
from evals.compare import Comparison, compare
from evals.generate import generate
from evals.harness import code_version, plan_jobs, run_suite
from evals.planners import (
    DEFAULT_FIXTURES,
    HYBRID_SPEC,
    LLMSource,
    build_planner,
    cassette_for,
    display_path,
    hybrid_available,
    import_object,
    replay_label,
    split_replay,
)
from evals.provenance import SCRIPTED
from evals.report import (
    comparison_table,
    divergence_table,
    read_results,
    scorecard_table,
    usage_table,
    write_markdown,
    write_results,
)
from evals.scenario import Scenario, load_scenarios
from evals.scorecard import RESULT_SCHEMA_VERSION
from evals.tapes import counterfactual, load_tape, recorded_max_tokens
from evals.variants import split_variant, variant_comparison, with_variant
from llm.errors import LLMError
from reaper.errors import ConfigError, ReaperError
from reaper.lab import LabFile

__all__ = ["main"]

log = logging.getLogger(__name__)

DEFAULT_SCENARIOS = Path(__file__).parent / "scenarios"
DEFAULT_TRIALS = 3


def _planners(text: str) -> list[tuple[str, str]]:
    """`rule,llm,fast=pkg.mod:Planner` → [(label, spec)]."""
    out = []
    for item in (p.strip() for p in text.split(",") if p.strip()):
        label, _, spec = item.partition("=")
        spec = spec or item
        base, replayed = split_replay(spec)
        if replayed is not None:
            label = replay_label(replayed, base) if label == spec else label
            out.append((label, spec))
            continue
        if spec == "hybrid" and not hybrid_available():
            sys.stderr.write(f"reaper eval: skipping hybrid: {HYBRID_SPEC} not importable\n")
            continue
        if spec not in ("rule", "llm", "hybrid") and split_variant(spec) is None:
            import_object(spec)  # a bad planner is one error before any run, not one per run
        out.append((label, spec))
    if not out:
        raise ConfigError("--planners needs at least one planner (rule, llm or module:attr)")
    return out


def _source(args: argparse.Namespace) -> LLMSource:
    if args.client:
        import_object(args.client)  # a bad factory is one error before any run
    if args.record:
        return LLMSource(
            mode="record",
            path=Path(args.record),
            provider=args.provider or "",
            model=args.model or "",
            synthetic=bool(args.client),
            client_factory=args.client or "",
        )
    if args.replay:
        path = Path(args.replay)
        if not path.exists():  # fail before running anything, not once per run
            raise ConfigError(f"--replay {path}: no such cassette file or fixtures folder")
        return LLMSource(mode="replay", path=path)
    if args.provider:
        return LLMSource(mode="live", provider=args.provider, model=args.model or "")
    if args.client:  # a scripted model, not recorded: its answers are synthetic
        return LLMSource(mode="live", client_factory=args.client, synthetic=True)
    return LLMSource(mode="replay", path=DEFAULT_FIXTURES)


def _llm_options(p: argparse.ArgumentParser) -> None:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--replay",
        metavar="CASSETTE",
        help=f"cassette file or directory (default {DEFAULT_FIXTURES.name}/ shipped with evals)",
    )
    mode.add_argument(
        "--record",
        metavar="CASSETTE",
        help="call the model and record to this "
        "file or directory (needs --provider/--model and the provider's key)",
    )
    p.add_argument("--provider", help="anthropic | openai | openai-compatible (live or record)")
    p.add_argument("--model")
    p.add_argument(
        "--client",
        metavar="MODULE:ATTR",
        help="a scripted LLMClient factory instead of a live provider (recorded as synthetic)",
    )


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reaper eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--planners",
        default="rule,llm",
        help="comma list: rule, llm, module:attr, or label=module:attr (default rule,llm)",
    )
    p.add_argument("--scenarios", default=str(DEFAULT_SCENARIOS), help="directory or file")
    p.add_argument(
        "--generated",
        metavar="SEED:COUNT",
        default="",
        help="held-out desired-state scenarios from the fault catalog (not --scenarios)",
    )
    p.add_argument("--only", default="", help="comma list of scenario names")
    p.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    _llm_options(p)
    p.add_argument("--json", action="store_true", help="print results and aggregates as JSON")
    p.add_argument(
        "--baseline",
        metavar="FILE",
        help="blessed results JSONL: exit 1 on a regression against it",
    )
    p.add_argument(
        "--out",
        default="eval-out",
        help="directory for results.jsonl, report.md and report.svg ('' to write nothing)",
    )
    p.add_argument("--tapes", metavar="DIR", help="save every mission's tape here")
    p.add_argument(
        "--prompts",
        metavar="DIR",
        help="a prompt variant: run llm with DIR's prompt files beside the shipped ones and "
        "compare them paired by seed (answers: --record, --provider or --client)",
    )
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPUs)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _console(*, stderr: bool = False) -> Console:
    # Scorecards are wide: when the output is not a terminal (CI logs), do not wrap at 80.
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=160)


def _setup_logging(verbose: bool) -> None:
    # Quiet unless verbose: the planner warns on every repaired answer, and that is what the
    # scorecard counts. Only the root level is set (never a library logger's own level,
    # which would outlive this command in an embedding process).
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _variant_doc(directory: str | None, variant: Comparison | None) -> dict[str, Any]:
    if variant is None:
        return {}
    findings = [f.model_dump(mode="json") for f in variant.findings]
    return {"prompt_variant": {"directory": directory, "findings": findings}}


def _print_variant(console: Console, directory: str | None, variant: Comparison | None) -> None:
    if variant is not None:
        table = comparison_table(variant, everything=True)
        table.title = f"Prompt variant {directory} − shipped prompts (paired by seed)"
        console.print(table)


def _scenarios(args: argparse.Namespace, only: set[str] | None) -> list[Scenario]:
    if not args.generated:
        return load_scenarios(args.scenarios, only)
    seed, _, count = args.generated.partition(":")
    if not (seed.isdigit() and count.isdigit() and int(count) > 0):
        raise ReaperError(f"--generated {args.generated!r}: expected SEED:COUNT, e.g. 7:30")
    return generate(int(seed), int(count))


def _scenario_source(args: argparse.Namespace) -> str:
    if args.generated:
        return f"generated (seed:count {args.generated}, held out)"
    return display_path(Path(args.scenarios))


def _run(argv: list[str]) -> int:
    args = _run_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if args.trials < 1:
        raise ReaperError("--trials must be at least 1")
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    scenarios = _scenarios(args, only)
    planners = _planners(args.planners)
    if args.prompts:
        planners = with_variant(planners, args.prompts)
    source = _source(args)
    version = code_version()
    if source.mode == "record":
        # A fresh recording: stale answers left in place would be served first on replay.
        for path in {cassette_for(source.path, s.name) for s in scenarios}:
            path.unlink(missing_ok=True)
    started = time.perf_counter()
    jobs = plan_jobs(
        scenarios,
        planners,
        trials=args.trials,
        source=source,
        tape_dir=Path(args.tapes) if args.tapes else None,
        version=version,
    )
    results = run_suite(jobs, processes=args.jobs)
    elapsed = time.perf_counter() - started
    aggs = aggregate(results)
    faults = fault_rows(results)
    console = _console(stderr=args.json)
    errors = [r for r in results if r.error]
    comparison = None
    if args.baseline:
        comparison = compare(read_results(Path(args.baseline)), results)
    variant = variant_comparison(results, planners, args.prompts) if args.prompts else None
    if args.out:
        out = Path(args.out)
        write_results(results, out / "results.jsonl")
        synthetic = any(r.provenance == SCRIPTED for r in results)
        meta = {
            "code version": version,
            "planners": ", ".join(label for label, _ in planners),
            "scenarios": f"{len(scenarios)} from {_scenario_source(args)}",
            "trials": str(args.trials),
            "LLM answers": source.describe(),
        }
        write_markdown(
            aggs, out / "report.md", meta=meta, synthetic=synthetic, sections=fault_markdown(faults)
        )
    if args.json:
        doc = {
            "schema_version": RESULT_SCHEMA_VERSION,
            "results": [r.model_dump(mode="json") for r in results],
            "aggregates": [a.model_dump(mode="json") for a in aggs],
            "faults": [f.model_dump(mode="json") for f in faults],
            "regressions": [f.model_dump(mode="json") for f in comparison.regressions]
            if comparison
            else [],
        }
        doc.update(_variant_doc(args.prompts, variant))
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        console.print(scorecard_table(aggs, title=f"Scorecard ({args.trials} trials)"))
        console.print(usage_table(aggs))
        console.print(
            f"{len(results)} runs in {elapsed:.1f}s"
            + (f"; results in {args.out}/" if args.out else "")
        )
        if comparison is not None:
            console.print(comparison_table(comparison))
        _print_variant(console, args.prompts, variant)
    if errors:
        sys.stderr.write(f"reaper eval: {len(errors)} run(s) failed\n")
        for r in errors[:5]:
            sys.stderr.write(f"  {r.planner}/{r.scenario} seed {r.seed}: {r.error}\n")
        return 2
    if comparison is not None and comparison.failed:
        sys.stderr.write(
            f"reaper eval: {len(comparison.regressions)} regression(s) against {args.baseline}\n"
        )
        return 1
    return 0


def _compare(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="reaper eval compare")
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--all", action="store_true", help="show unchanged metrics too")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    _setup_logging(False)
    result = compare(read_results(args.old), read_results(args.new))
    if args.json:
        sys.stdout.write(result.model_dump_json() + "\n")
    else:
        console = _console()
        console.print(comparison_table(result, everything=args.all))
        for label, items in (
            ("only in OLD", result.missing),
            ("only in NEW", result.added),
            ("scenario changed", result.changed_scenarios),
            ("errors in NEW", result.errors),
        ):
            if items:
                console.print(f"{label}: {', '.join(items)}")
        console.print(
            f"{len(result.regressions)} regression(s), {len(result.improvements)} improvement(s)"
        )
    return 1 if result.failed else 0


def _replay(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="reaper eval replay")
    p.add_argument("tape", type=Path)
    p.add_argument("--planner", required=True, help="rule | llm | module:attr")
    _llm_options(p)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    _setup_logging(False)
    tape = load_tape(args.tape)
    settings = tape.header.initial_state.get("settings", {})
    # Only the LLM planner's budget and temperature are read from the lab here.
    lab = LabFile.model_validate(
        {
            "hosts": [{"host_id": "tape", "os": "linux"}],
            "budget": settings.get("budget") or {},
            "planner": settings.get("planner") or "rule",
        }
    )
    seed = int(settings.get("seed", 0))
    planner = build_planner(
        args.planner,
        lab,
        seed=seed,
        scenario=str(tape.header.meta.get("scenario", "tape")),
        source=_source(args),
        max_tokens=recorded_max_tokens(tape),
    )
    divergence = asyncio.run(counterfactual(tape, planner))
    if args.json:
        doc = divergence.model_dump(mode="json")
        doc["first_divergent_step"] = divergence.first_divergent_step
        sys.stdout.write(json.dumps(doc) + "\n")
        return 0
    console = _console()
    console.print(divergence_table(divergence))
    first = divergence.first_divergent_step
    console.print(
        f"{len(divergence.steps)} decisions replayed; "
        + (
            "no divergence"
            if first is None
            else f"first divergence at step {first} ({divergence.divergent_steps} divergent steps)"
        )
    )
    return 0


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["compare"]:
            return _compare(argv[1:])
        if argv[:1] == ["replay"]:
            return _replay(argv[1:])
        if argv[:1] == ["record"]:
            from evals.record import main as record_main

            return record_main(argv[1:])
        return _run(argv)
    except (ReaperError, LLMError, ValueError) as exc:
        sys.stderr.write(f"reaper eval: {exc}\n")
        return 2
