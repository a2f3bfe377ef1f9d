"""`reaper eval record`: record a user's own cassettes from a live or local model.

    reaper eval record --provider anthropic|openai|local [--model M] [--model-path GGUF]
                       [--base-url URL] [--out DIR] [--scenarios DIR] [--only A,B] [--trials N]

Runs the LLM planner on every scenario through a `RecordingClient`, one cassette per scenario
in `--out`, replayable with `reaper eval --replay DIR`. Each cassette's header carries its
provenance (`recorded`: provider, model, date, and for `local` the GGUF's sha256). For `local`
without `--base-url`, one llama-server is started for the whole recording and stopped after.
Keys come from the provider's usual variable (ANTHROPIC_API_KEY, OPENAI_API_KEY).
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack
from pathlib import Path

from evals.harness import code_version, plan_jobs, run_suite
from evals.make_fixtures import pack
from evals.planners import REPLAYABLE, LLMSource, cassette_for
from evals.scenario import load_scenarios
from llm.errors import LLMConfigError
from llm.gguf import check_gguf
from llm.llama_server import LlamaServer, default_binary, default_model
from reaper.errors import ConfigError

__all__ = ["RECORD_PROVIDERS", "main"]

log = logging.getLogger(__name__)

RECORD_PROVIDERS = ("anthropic", "openai", "local")
# A plan for the suite's largest lab (5 hosts, one task each) is ~400 tokens; a small model
# that rambles is cut off here (a truncated answer, repaired once) instead of at 2048, which
# at ~25 tokens/s on a shared CPU is over a minute a call.
LOCAL_MAX_TOKENS = 1024
_SCENARIOS = Path(__file__).parent / "scenarios"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reaper eval record", description=__doc__.splitlines()[0])
    p.add_argument("--provider", required=True, choices=RECORD_PROVIDERS)
    p.add_argument("--model", default="", help="model name (local: defaults to the GGUF's name)")
    p.add_argument("--model-path", type=Path, help="local: a GGUF (default: the cached SmolLM2)")
    p.add_argument("--base-url", default="", help="an already running server to record from")
    p.add_argument("--out", type=Path, default=Path("eval-out/cassettes"))
    p.add_argument("--scenarios", default=str(_SCENARIOS))
    p.add_argument("--only", default="", help="comma-separated scenario names")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help=f"answer budget per call (default: local {LOCAL_MAX_TOKENS}, else the planner's)",
    )
    p.add_argument(
        "--ctx-size",
        type=int,
        default=None,
        help="local: the server's context in tokens (default: the model's, at most 8192)",
    )
    p.add_argument(
        "--planners",
        default="llm",
        help="llm, hybrid or llm,hybrid: whose calls to record (one cassette per scenario)",
    )
    p.add_argument("--pack", action="store_true", help="gzip each cassette (as shipped)")
    return p


def _planners(args: argparse.Namespace) -> list[str]:
    return list(dict.fromkeys(p.strip() for p in args.planners.split(",") if p.strip()))


def _check(args: argparse.Namespace) -> None:
    if args.trials < 1:
        raise ConfigError("--trials must be at least 1")
    planners = _planners(args)
    if not planners or set(planners) - set(REPLAYABLE):
        wanted = ", ".join(REPLAYABLE)
        raise ConfigError(f"--planners: one or more of {wanted}, not {args.planners!r}")
    if args.provider != "local" and not args.model:
        raise ConfigError(f"--provider {args.provider} needs --model")
    if args.model_path is not None and args.provider != "local":
        raise ConfigError("--model-path is for --provider local only")
    if args.model_path is not None:
        try:
            check_gguf(args.model_path)
        except LLMConfigError as exc:
            raise ConfigError(str(exc)) from exc
    if args.max_tokens is not None and args.max_tokens < 1:
        raise ConfigError("--max-tokens must be at least 1")
    if args.ctx_size is not None and args.provider != "local":
        raise ConfigError("--ctx-size is for --provider local only")


def record(args: argparse.Namespace) -> list[str]:
    """Record every scenario afresh; return the runs that errored."""
    _check(args)
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    scenarios = load_scenarios(args.scenarios, only)
    for scenario in scenarios:
        # Stale answers left in place would be served first on replay.
        for suffix in (".jsonl", ".jsonl.gz"):
            (args.out / f"{scenario.name}{suffix}").unlink(missing_ok=True)
    with ExitStack() as stack:
        base_url = args.base_url
        model_path = args.model_path
        if args.provider == "local":
            model_path = model_path or default_model()
            if not base_url:
                # One server for every scenario: each would otherwise load the model again.
                try:
                    server = LlamaServer(default_binary(), model_path, ctx_size=args.ctx_size)
                except LLMConfigError as exc:
                    raise ConfigError(str(exc)) from exc
                base_url = server.start()
                stack.callback(server.stop)
        source = LLMSource(
            mode="record",
            path=args.out,
            provider=args.provider,
            model=args.model,
            base_url=base_url,
            model_path=str(model_path) if model_path else "",
            max_tokens=args.max_tokens or (LOCAL_MAX_TOKENS if args.provider == "local" else None),
        )
        jobs = plan_jobs(
            scenarios,
            [(p, p) for p in _planners(args)],
            trials=args.trials,
            source=source,
            version=code_version(),
        )
        results = run_suite(jobs, processes=1)
    problems = [f"{r.scenario} seed {r.seed}: {r.error}" for r in results if r.error]
    if args.pack:
        for scenario in scenarios:
            plain = args.out / f"{scenario.name}.jsonl"
            if plain.exists():
                pack(plain)
    # A failed LLM call falls back to the rules, so a run can succeed with nothing recorded.
    problems += [
        f"{s.name}: no answer recorded (every LLM call failed; see the warnings above)"
        for s in scenarios
        if not cassette_for(args.out, s.name).exists()
    ]
    return problems


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    problems = record(args)
    for problem in problems:
        sys.stderr.write(f"reaper eval record: {problem}\n")
    sys.stdout.write(
        f"recorded {args.provider} answers to {args.out}/"
        + (f" ({len(problems)} run(s) failed)" if problems else "")
        + "\n"
    )
    return 2 if problems else 0
