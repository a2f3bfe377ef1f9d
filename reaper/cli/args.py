"""The pieces of the `reaper` parser: argparse with one-line (or JSON) usage errors, the flag
types, and the flag groups commands share. The app assembles the commands from them."""

from __future__ import annotations

import argparse
import json
from typing import NoReturn

from reaper.cli.context import EXIT_BAD_INPUT, EXIT_CODES
from reaper.models import OS_NAMES

__all__ = [
    "Parser",
    "common_flags",
    "epilog",
    "json_error",
    "log_level",
    "non_negative_float",
    "number",
    "os_list",
    "planner_flags",
    "positive_float",
    "positive_int",
    "run_flags",
]


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other bad input;
    JSON on stderr when `--json` was asked for."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if Parser.json_errors:
            self.exit(EXIT_BAD_INPUT, json_error(f"{self.prog}: {message}", EXIT_BAD_INPUT))
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def json_error(message: str, code: int) -> str:
    return json.dumps({"error": " ".join(message.split()), "code": code}) + "\n"


def epilog() -> str:
    lines = ["exit codes:"]
    lines += [f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES]
    lines.append('With --json, an error is one JSON object on stderr: {"error": …, "code": N}.')
    return "\n".join(lines)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def os_list(text: str) -> list[str]:
    if text.strip() == "all":
        return list(OS_NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in OS_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected {', '.join(OS_NAMES)}, a comma-separated list of them, or all"
        )
    return list(dict.fromkeys(names))


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def non_negative_float(text: str) -> float:
    value = number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def positive_float(text: str) -> float:
    value = number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def log_level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
        )
    return level


def common_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend and logging")
    g.add_argument("--config", help="config file (default ./reaper.toml if present)")
    g.add_argument("--db", help="SQLite file for the default backend (env REAPER_DB)")
    g.add_argument(
        "--backend",
        help="memory | sqlite (the default file) | sqlite:///FILE | redis+postgres | postgresql://…",
    )
    g.add_argument("--store", help="mission store URL (overrides --backend)")
    g.add_argument("--queue", help="task queue/event bus URL (overrides --backend)")
    g.add_argument("--bus", help="event bus URL, e.g. kafka://HOST:PORT (overrides --queue)")
    g.add_argument("--log-level", type=log_level, help="DEBUG, INFO, WARNING (default), ERROR")
    g.add_argument(
        "--log-file", help="also write JSON-lines logs (Reaper's, at --log-level) to this file"
    )
    g.add_argument("--json", action="store_true", help="print results as JSON")


def planner_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("planner")
    g.add_argument(
        "--planner", choices=("rule", "llm", "hybrid"), help="override the lab's planner"
    )
    g.add_argument("--provider", help="anthropic | openai | openai-compatible | local")
    g.add_argument("--model", help="LLM model name")
    g.add_argument(
        "--model-path", metavar="FILE.gguf", help="provider local: the GGUF model to serve"
    )
    g.add_argument("--base-url", help="LLM API base URL (any server speaking the wire format)")
    g.add_argument("--replay", metavar="CASSETTE", help="serve LLM calls from a cassette")
    g.add_argument("--record", metavar="CASSETTE", help="record every LLM call to a cassette")
    g.add_argument("--max-tokens", type=positive_int, help="LLM output token limit per call")
    g.add_argument("--temperature", type=float, help="LLM sampling temperature")


def run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tape", metavar="FILE", help="record the planner's steps (for `reaper eval replay`)"
    )
    p.add_argument(
        "--concurrency", type=positive_int, help="tasks in flight per agent type (default 32)"
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
        "--stall-after", type=positive_float, help="seconds without progress before stalled"
    )
