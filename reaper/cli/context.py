"""What every command shares: the `Cli` context (parsed flags, config, consoles, JSON output),
the backend it opens, and the exit codes. A leaf: it imports no command module, so the app and
every command group can import it."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rich.console import Console

from reaper.config import Config, load_config
from reaper.errors import ConfigError
from reaper.infra.base import Backend
from reaper.infra.factory import open_backend

__all__ = [
    "EXIT_BACKEND",
    "EXIT_BAD_INPUT",
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "Cli",
    "cli_backend",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_INCOMPLETE = 3
EXIT_BACKEND = 4
EXIT_INTERRUPTED = 130

# What each exit code means: `reaper --help` prints this, the README documents it.
EXIT_CODES = (
    (EXIT_OK, "success (a mission: completed with its goal reached)"),
    (EXIT_ERROR, "an error while working (a backend call, the LLM, a transport)"),
    (EXIT_BAD_INPUT, "bad input: a flag, lab, policy or config file, an unknown or taken id"),
    (EXIT_INCOMPLETE, "the mission ended without reaching its goal (failed, cancelled, …)"),
    (EXIT_BACKEND, "the backend's server (PostgreSQL, Redis) cannot be reached"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C, SIGTERM); `reaper resume` continues"),
)


class Cli:
    """Holds what every command needs: config, console, and the output mode."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.args = args
        self.env = env
        self.out = Console(highlight=False, soft_wrap=False)
        self.err = Console(stderr=True, highlight=False)
        self.config = self._config()

    def _config(self) -> Config:
        a = self.args
        cfg = load_config(getattr(a, "config", None), self.env)
        flags: dict[str, Any] = {
            "backend": getattr(a, "backend", None),
            "store": getattr(a, "store", None),
            "queue": getattr(a, "queue", None),
            "bus": getattr(a, "bus", None),
            "log_level": getattr(a, "log_level", None),
            "log_file": getattr(a, "log_file", None),
            "concurrency": getattr(a, "concurrency", None),
            "stall_after_s": getattr(a, "stall_after", None),
            "llm_provider": getattr(a, "provider", None),
            "llm_model": getattr(a, "model", None),
            "llm_base_url": getattr(a, "base_url", None),
            "llm_model_path": getattr(a, "model_path", None),
            "llm_max_tokens": getattr(a, "max_tokens", None),
            "llm_temperature": getattr(a, "temperature", None),
        }
        if getattr(a, "db", None):
            flags["db"] = Path(a.db).expanduser()
        return cfg.with_flags(**flags)

    def print_json(self, data: Any) -> None:
        # Plain stdout: JSON must not be wrapped or styled by the console.
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextlib.asynccontextmanager
async def cli_backend(cli: Cli, *, spec: str | None = None) -> AsyncIterator[Backend]:
    """The backend the flags and config name, closed on the way out."""
    cfg = cli.config
    try:
        cfg.db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {cfg.db.parent}: {exc.strerror}") from None
    backend = open_backend(
        spec or cfg.backend, store=cfg.store, queue=cfg.queue, bus=cfg.bus, default_db=cfg.db
    )
    try:
        yield backend
    finally:
        await backend.close()
