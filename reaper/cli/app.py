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
from typing import Any

from rich.text import Text

from reaper import __version__, gc_policy
from reaper.cli.args import (
    Parser,
    common_flags,
    epilog,
    json_error,
    non_negative_float,
    os_list,
    planner_flags,
    positive_float,
    positive_int,
    run_flags,
)
from reaper.cli.context import (
    EXIT_BACKEND,
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Cli,
)
from reaper.errors import (
    BackendUnavailableError,
    BadRequestError,
    ConfigError,
    MissionExistsError,
    MissionNotFoundError,
    ReaperError,
)
from reaper.models import OS_NAMES

__all__ = ["build_parser", "main"]

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="reaper",
        description="LLM-driven planning agent toolkit for lab orchestration.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"reaper {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="run the demo lab with a live dashboard")
    common_flags(p)
    planner_flags(p)
    run_flags(p)
    p.add_argument(
        "--lab",
        metavar="NAME|FILE",
        help="baseline (default), ad (an Active Directory lab as desired state), lockout "
        "(a role that would lock Reaper out), or a lab file",
    )

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
        "--check",
        action="store_true",
        help="desired state: run every ensure in check mode (report, change nothing)",
    )
    p.add_argument(
        "--submit-only",
        action="store_true",
        help="only submit the mission; `reaper engine` processes run it, this follows it",
    )
    common_flags(p)
    planner_flags(p)
    run_flags(p)

    p = sub.add_parser(
        "plan", help="desired state: discover read-only and show what a run would change"
    )
    p.add_argument("lab", help="lab file (YAML, schema 2)")
    p.add_argument("--graph", action="store_true", help="also print the dependency graph")
    common_flags(p)

    p = sub.add_parser("resume", help="resume a mission after a stop or crash")
    p.add_argument("mission")
    g = p.add_argument_group("raise an exhausted LLM budget (the lab's `budget`)")
    g.add_argument("--budget-calls", type=positive_int, metavar="N", help="LLM calls in all")
    g.add_argument("--budget-tokens", type=positive_int, metavar="N", help="tokens in all")
    g.add_argument("--budget-usd", type=positive_float, metavar="USD", help="dollars in all")
    common_flags(p)
    planner_flags(p)
    run_flags(p)

    p = sub.add_parser("status", help="show missions, or one mission")
    p.add_argument("mission", nargs="?")
    common_flags(p)

    p = sub.add_parser("events", help="show a mission's event log (the decision ledger)")
    p.add_argument("mission")
    p.add_argument("--kind", action="append", help="only these kinds (e.g. task.refused)")
    p.add_argument("--limit", type=positive_int, help="only the last N events")
    common_flags(p)

    for name, verb in (("approve", "approve"), ("reject", "reject")):
        p = sub.add_parser(name, help=f"{verb} tasks waiting for approval (one, or a selection)")
        p.add_argument("mission")
        p.add_argument("task", nargs="?", help="the task (or select with --all/--host/--action)")
        p.add_argument("--all", action="store_true", help=f"{verb} every task waiting")
        p.add_argument("--host", action="append", help="only the tasks of this host (repeatable)")
        p.add_argument("--action", action="append", help="only this action (e.g. linux.reboot)")
        p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
        p.add_argument("--note", default="", help="a note for the event log")
        p.add_argument("--by", default=os.environ.get("USER", "operator"))
        common_flags(p)

    p = sub.add_parser("cancel", help="cancel a mission (wherever its engine runs)")
    p.add_argument("mission")
    p.add_argument("--note", default="", help="a note for the event log")
    p.add_argument("--by", default=os.environ.get("USER", "operator"))
    p.add_argument(
        "--wait",
        type=non_negative_float,
        default=10.0,
        help="seconds to wait for a running engine to apply it (default 10)",
    )
    common_flags(p)

    p = sub.add_parser("unlock", help="clear a host's lock (recorded in the event log)")
    p.add_argument("mission")
    p.add_argument("host")
    p.add_argument("--note", default="", help="a note for the event log")
    p.add_argument("--by", default=os.environ.get("USER", "operator"))
    common_flags(p)

    p = sub.add_parser("prune", help="delete finished missions with their events and tasks")
    p.add_argument(
        "--older-than",
        default="30d",
        help="only missions not updated for this long: 30d (default), 12h, 90m, 0",
    )
    p.add_argument(
        "--status",
        action="append",
        choices=("completed", "failed", "cancelled", "stopped", "interrupted", "stalled"),
        help="only missions in this status (repeatable; default completed, failed, cancelled)",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would go, delete nothing")
    common_flags(p)

    p = sub.add_parser("sim", help="the simulated hosts' stored worlds")
    sim = p.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)
    p = sim.add_parser(
        "reset", help="forget stored sim worlds (all, a lab's, a host's): the next run rebuilds"
    )
    p.add_argument("lab", nargs="?", help="lab name (its lab_type) or lab file (default: all)")
    p.add_argument("--host", help="only this host of the lab")
    common_flags(p)
    p = sim.add_parser(
        "drift",
        help="change a declared resource on a sim host by hand (a service stopped, a file "
        "edited, a package removed): the next plan shows it, the next run fixes it",
    )
    p.add_argument("lab", help="the lab file")
    p.add_argument("host", help="a simulated host of the lab")
    p.add_argument("resource", help="a resource the host declares, as KIND/NAME (service/nginx)")
    common_flags(p)

    p = sub.add_parser("facts", help="the facts gathered per host (like Ansible's setup)")
    p.add_argument("mission")
    p.add_argument("host", nargs="?")
    common_flags(p)

    p = sub.add_parser("actions", help="list the action catalog (what planners may propose)")
    p.add_argument("--os", choices=OS_NAMES, help="only this OS's actions")
    p.add_argument(
        "--policy", default="standard", help="show this preset's decisions (default standard)"
    )
    p.add_argument("--json", action="store_true", help="print the catalog as JSON")

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
        type=positive_int,
        default=1,
        help="worker processes (memory, or --in-process: worker loops per agent type)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run the workers in this process on every backend",
    )
    p.add_argument(
        "--desired",
        action="store_true",
        help="desired state: 10 resources per Linux host, converged (workers in this process)",
    )
    p.add_argument(
        "--max-in-flight",
        type=positive_int,
        metavar="N",
        help="cap on the mission's dispatch window (default: the lab setting's default, 256)",
    )
    p.add_argument(
        "--latency-target",
        type=non_negative_float,
        metavar="SECONDS",
        help="seconds results may wait on the engine before the window narrows "
        "(default: the lab setting's default, 0.025; 0: a fixed window)",
    )
    p.add_argument(
        "--repeat", type=positive_int, default=3, help="runs per row; the best is reported"
    )
    p.add_argument("--concurrency", type=positive_int, default=64, help="per worker")
    common_flags(p)

    p = sub.add_parser("worker", help="run agent workers for one or more OSes (a process)")
    p.add_argument(
        "--os",
        required=True,
        type=os_list,
        help="windows, linux, macos, a comma-separated list of them, or all",
    )
    p.add_argument("--concurrency", type=positive_int, help="tasks in flight per OS (default 32)")
    p.add_argument("--worker-id", help="a stable name for this worker")
    p.add_argument("--metrics-port", type=positive_int, help="serve Prometheus metrics here")
    common_flags(p)

    p = sub.add_parser(
        "housekeep",
        help="drop what finished missions left in the queue and bus "
        "(every `reaper engine` does this on its own)",
    )
    p.add_argument(
        "--grace",
        type=non_negative_float,
        default=60.0,
        help="only missions finished at least this many seconds ago (default 60)",
    )
    common_flags(p)

    p = sub.add_parser("engine", help="run mission engines (a separate process)")
    p.add_argument("--mission", action="append", help="only these missions (default: all)")
    p.add_argument("--metrics-port", type=positive_int, help="serve Prometheus metrics here")
    planner_flags(p)
    common_flags(p)

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
    "plan": ("reaper.cli.plan", "cmd_plan"),
    "status": ("reaper.cli.missions", "cmd_status"),
    "events": ("reaper.cli.missions", "cmd_events"),
    "approve": ("reaper.cli.missions", "cmd_approve"),
    "reject": ("reaper.cli.missions", "cmd_reject"),
    "actions": ("reaper.cli.catalog", "cmd_actions"),
    "cancel": ("reaper.cli.lifecycle", "cmd_cancel"),
    "unlock": ("reaper.cli.lifecycle", "cmd_unlock"),
    "prune": ("reaper.cli.lifecycle", "cmd_prune"),
    "facts": ("reaper.cli.lifecycle", "cmd_facts"),
    "sim": ("reaper.cli.sim", "cmd_sim"),
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
    Parser.json_errors = "--json" in argv
    args = parser.parse_args(argv)
    try:
        cli = Cli(args, dict(os.environ))
    except ReaperError as exc:
        if getattr(args, "json", False):
            sys.stderr.write(json_error(str(exc), EXIT_BAD_INPUT))
        else:
            sys.stderr.write(f"reaper: error: {' '.join(str(exc).split())}\n")
        return EXIT_BAD_INPUT
    from reaper.logs import setup_logging

    setup_logging(
        cli.config.log_level,
        json_file=cli.config.log_file,
        console=cli.err,
        third_party=cli.env.get("REAPER_LOG_THIRD_PARTY"),
    )
    if args.command != "worker":
        _tune_gc()
    gc_policy.enable()
    try:
        return _run(cli)
    finally:
        gc_policy.disable()  # the process may go on (main called in-process, as tests do)


def _run(cli: Cli) -> int:
    """Run the command; map what it raises to a line on stderr and an exit code (the
    boundary: `EXIT_CODES` says what each means)."""
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(_command(cli.args.command)(cli))
    except KeyboardInterrupt:
        return _error_line(cli, "interrupted", EXIT_INTERRUPTED)
    except MissionExistsError as exc:
        mid = exc.mission_id
        return _error_line(
            cli,
            f"{exc}: pick another id with --mission-id, or continue it with `reaper resume {mid}`",
            EXIT_BAD_INPUT,
        )
    except (ConfigError, MissionNotFoundError, BadRequestError) as exc:
        return _error_line(cli, exc, EXIT_BAD_INPUT)
    except BackendUnavailableError as exc:
        return _error_line(cli, exc, EXIT_BACKEND)
    except ReaperError as exc:
        return _error_line(cli, exc, EXIT_ERROR)
    except Exception as exc:  # map known third-party failures to one line
        from llm.errors import LLMConfigError, LLMError

        if isinstance(exc, LLMConfigError):  # a missing key, SDK or cassette: bad input
            return _error_line(cli, exc, EXIT_BAD_INPUT)
        if isinstance(exc, LLMError):
            return _error_line(cli, exc, EXIT_ERROR)
        raise


def _error_line(cli: Cli, exc: BaseException | str, code: int) -> int:
    """Report an error on stderr and return its exit code: one line, never wrapped (scripts
    and people grep for it), or one JSON object under --json."""
    message = " ".join(str(exc).split())
    if getattr(cli.args, "json", False):
        sys.stderr.write(json_error(message, code))
    else:
        cli.err.print(Text.assemble(("reaper: error: ", "red"), message), soft_wrap=True)
    return code
