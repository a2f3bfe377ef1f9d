"""The `reaper` command line. Errors become one line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from rich.text import Text

from reaper import __version__, gc_policy
from reaper.cli.context import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Cli,
)
from reaper.errors import BadRequestError, ConfigError, MissionNotFoundError, ReaperError
from reaper.models import OS_NAMES

__all__ = ["build_parser", "main"]

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _os_list(text: str) -> list[str]:
    if text.strip() == "all":
        return list(OS_NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in OS_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected {', '.join(OS_NAMES)}, a comma-separated list of them, or all"
        )
    return list(dict.fromkeys(names))


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _non_negative_float(text: str) -> float:
    value = _float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        )
    return level


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend and logging")
    g.add_argument("--config", help="config file (default ./reaper.toml if present)")
    g.add_argument("--db", help="SQLite file for the default backend (env REAPER_DB)")
    g.add_argument("--backend", help="memory | sqlite:///FILE | redis+postgres | redis://… ")
    g.add_argument("--store", help="mission store URL (overrides --backend)")
    g.add_argument("--queue", help="task queue/event bus URL (overrides --backend)")
    g.add_argument("--bus", help="event bus URL, e.g. kafka://HOST:PORT (overrides --queue)")
    g.add_argument("--log-level", type=_log_level, help="DEBUG, INFO, WARNING (default), ERROR")
    g.add_argument("--log-file", help="also write JSON-lines logs to this file")
    g.add_argument("--json", action="store_true", help="print results as JSON")


def _planner_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("planner")
    g.add_argument("--planner", choices=("rule", "llm"), help="override the lab's planner")
    g.add_argument("--provider", help="anthropic | openai | openai-compatible")
    g.add_argument("--model", help="LLM model name")
    g.add_argument("--base-url", help="LLM API base URL (any server speaking the wire format)")
    g.add_argument("--replay", metavar="CASSETTE", help="serve LLM calls from a cassette")
    g.add_argument("--record", metavar="CASSETTE", help="record every LLM call to a cassette")
    g.add_argument("--max-tokens", type=_positive_int, help="LLM output token limit per call")
    g.add_argument("--temperature", type=float, help="LLM sampling temperature")


def _run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tape", metavar="FILE", help="record the planner's steps (for `reaper eval replay`)"
    )
    p.add_argument(
        "--concurrency", type=_positive_int, help="tasks in flight per agent type (default 32)"
    )
    p.add_argument("--no-live", action="store_true", help="no live dashboard, only the recap")
    p.add_argument(
        "--no-input",
        action="store_true",
        help="never prompt (approvals then come from `reaper approve`)",
    )
    p.add_argument(
        "--no-workers",
        action="store_true",
        help="run only the engine; workers run elsewhere (`reaper worker`)",
    )
    p.add_argument(
        "--stall-after", type=_positive_float, help="seconds without progress before stalled"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reaper", description="LLM-driven planning agent toolkit for lab orchestration."
    )
    parser.add_argument("--version", action="version", version=f"reaper {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="run the demo lab with a live dashboard")
    _common(p)
    _planner_flags(p)
    _run_flags(p)
    p.add_argument("--lab", help=argparse.SUPPRESS)

    p = sub.add_parser("run", help="run a mission from a lab file")
    p.add_argument("lab", nargs="?", help="lab file (YAML)")
    p.add_argument("--inventory", help="an Ansible inventory (INI or YAML) instead of a lab")
    p.add_argument("--mission-id", help="mission id (default: from the lab file, else made up)")
    p.add_argument(
        "--goal",
        choices=("discovered", "prepared", "baselined"),
        help="override the lab's goal (inventories default to baselined)",
    )
    p.add_argument(
        "--submit-only",
        action="store_true",
        help="only submit the mission; `reaper engine` processes run it, this follows it",
    )
    _common(p)
    _planner_flags(p)
    _run_flags(p)

    p = sub.add_parser("resume", help="resume a mission after a stop or crash")
    p.add_argument("mission")
    _common(p)
    _planner_flags(p)
    _run_flags(p)

    p = sub.add_parser("status", help="show missions, or one mission")
    p.add_argument("mission", nargs="?")
    _common(p)

    p = sub.add_parser("events", help="show a mission's event log (the decision ledger)")
    p.add_argument("mission")
    p.add_argument("--kind", action="append", help="only these kinds (e.g. task.refused)")
    p.add_argument("--limit", type=_positive_int, help="only the last N events")
    _common(p)

    for name, verb in (("approve", "approve"), ("reject", "reject")):
        p = sub.add_parser(name, help=f"{verb} a task waiting for approval")
        p.add_argument("mission")
        p.add_argument("task")
        p.add_argument("--note", default="", help="a note for the event log")
        p.add_argument("--by", default=os.environ.get("USER", "operator"))
        _common(p)

    p = sub.add_parser("bench", help="measure throughput (simulated hosts, or real SSH hosts)")
    p.add_argument(
        "target",
        nargs="?",
        default="sim",
        choices=("sim", "ssh"),
        help="sim: engine+workers on zero-latency simulated hosts; ssh: real sshd "
        "hosts in network namespaces, against Ansible",
    )
    p.add_argument("--hosts", default=None, help="comma-separated host counts")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes (memory, or --in-process: worker loops per agent type)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the workers in this process on every backend",
    )
    p.add_argument(
        "--max-in-flight",
        type=_positive_int,
        metavar="N",
        help="cap on the mission's dispatch window (default: the lab setting's default, 256)",
    )
    p.add_argument(
        "--latency-target",
        type=_non_negative_float,
        metavar="SECONDS",
        help="seconds results may wait on the engine before the window narrows "
        "(default: the lab setting's default, 0.025; 0: a fixed window)",
    )
    p.add_argument(
        "--repeat", type=_positive_int, default=3, help="runs per row; the best is reported"
    )
    p.add_argument("--concurrency", type=_positive_int, default=64, help="per worker")
    _common(p)

    p = sub.add_parser("worker", help="run agent workers for one or more OSes (a process)")
    p.add_argument(
        "--os",
        required=True,
        type=_os_list,
        help="windows, linux, macos, a comma-separated list of them, or all",
    )
    p.add_argument("--concurrency", type=_positive_int, help="tasks in flight per OS (default 32)")
    p.add_argument("--worker-id", help="a stable name for this worker")
    p.add_argument("--metrics-port", type=_positive_int, help="serve Prometheus metrics here")
    _common(p)

    p = sub.add_parser(
        "housekeep",
        help="drop what finished missions left in the queue and bus "
        "(every `reaper engine` does this on its own)",
    )
    p.add_argument(
        "--grace",
        type=_non_negative_float,
        default=60.0,
        help="only missions finished at least this many seconds ago (default 60)",
    )
    _common(p)

    p = sub.add_parser("engine", help="run mission engines (a separate process)")
    p.add_argument("--mission", action="append", help="only these missions (default: all)")
    p.add_argument("--metrics-port", type=_positive_int, help="serve Prometheus metrics here")
    _planner_flags(p)
    _common(p)

    p = sub.add_parser(
        "eval", help="compare planners offline on scenarios (see `reaper eval -h`)", add_help=False
    )
    p.add_argument("eval_args", nargs=argparse.REMAINDER)
    return parser


# command -> (module, function); modules are imported only when their command runs, so
# `reaper status` does not pay for the bench or the engine service.
_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("reaper.cli.missions", "cmd_demo"),
    "run": ("reaper.cli.missions", "cmd_run"),
    "resume": ("reaper.cli.missions", "cmd_resume"),
    "status": ("reaper.cli.missions", "cmd_status"),
    "events": ("reaper.cli.missions", "cmd_events"),
    "approve": ("reaper.cli.missions", "cmd_approve"),
    "reject": ("reaper.cli.missions", "cmd_reject"),
    "bench": ("reaper.cli.bench", "cmd_bench"),
    "worker": ("reaper.cli.processes", "cmd_worker"),
    "engine": ("reaper.cli.processes", "cmd_engine"),
    "housekeep": ("reaper.cli.processes", "cmd_housekeep"),
}


def _command(name: str) -> Callable[[Cli], Coroutine[Any, Any, int]]:
    module, function = _COMMANDS[name]
    command: Callable[[Cli], Coroutine[Any, Any, int]] = getattr(
        importlib.import_module(module), function
    )
    return command


def _tune_gc() -> None:
    """A mission holds many long-lived small objects (hosts, task records, events); with the
    default thresholds the collector rescans them every few hundred allocations, which made
    per-task cost grow with the lab's size. Collect young objects far less often instead: a
    young collection then scans up to ~300k objects (a pause of some ms) once per ~300k
    allocations; at 10k hosts that roughly halved the collector's ~20 µs per task (a higher
    threshold saves a little more but lengthens the pauses that show in p99 latency).
    Not in a worker process: it holds no mission, so the default's short pauses are better.
    The live state itself is kept out of collections altogether (`gc_policy`)."""
    gc.set_threshold(300_000, 20, 1000)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS), unless REAPER_EVENT_LOOP=asyncio: it
    halves the event loop's own cost per socket read and callback, which the engine and
    workers pay per message. None: asyncio's default loop."""
    if os.environ.get("REAPER_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["eval"]:
        # The eval harness has its own command line (researchers' loop).
        from evals.cli import main as eval_main

        return eval_main(argv[1:])
    args = parser.parse_args(argv)
    try:
        cli = Cli(args, dict(os.environ))
    except ReaperError as exc:
        sys.stderr.write(f"reaper: error: {exc}\n")
        return EXIT_BAD_INPUT
    from reaper.logs import setup_logging

    setup_logging(cli.config.log_level, json_file=cli.config.log_file, console=cli.err)
    if args.command != "worker":
        _tune_gc()
    gc_policy.enable()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_command(args.command)(cli))
    except KeyboardInterrupt:
        cli.err.print("interrupted")
        return EXIT_INTERRUPTED
    except (ConfigError, MissionNotFoundError, BadRequestError) as exc:
        _error_line(cli, exc)
        return EXIT_BAD_INPUT
    except ReaperError as exc:
        _error_line(cli, exc)
        return EXIT_ERROR
    except Exception as exc:  # the boundary: map known third-party failures to one line
        from llm.errors import LLMError

        if isinstance(exc, LLMError):
            _error_line(cli, exc)
            return EXIT_ERROR
        raise
    finally:
        gc_policy.disable()  # the process may go on (main called in-process, as tests do)


def _error_line(cli: Cli, exc: BaseException) -> None:
    # One line, never wrapped: scripts and people grep for it.
    message = " ".join(str(exc).split())
    cli.err.print(Text.assemble(("reaper: error: ", "red"), message), soft_wrap=True)
