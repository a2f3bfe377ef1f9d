"""What the SSH and local transports share: turning a `Command` into a safe command line, and
keeping each command's full output in a per-host log file (the result's `logs_ref`).

Quoting is the whole defence against command injection: argv elements are joined with
`shlex.join`, so every value reaches a remote shell as one single-quoted word. A POSIX transport
never builds a command line any other way.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from reaper.agents.base import Command, CommandResult

__all__ = ["CommandLog", "default_logs_dir", "log_name", "sudo_argv", "to_command_line"]

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_logs_dir() -> Path:
    """`$XDG_STATE_HOME/reaper/logs` (else `~/.local/state/reaper/logs`); the CLI may override."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "reaper" / "logs"


def log_name(host_id: str) -> str:
    """A file name for a host id that cannot escape the logs directory."""
    name = _SAFE_NAME.sub("_", host_id).strip("._") or "host"
    return f"{name}.log"


def sudo_argv(argv: Sequence[str], *, with_password: bool) -> list[str]:
    # -n never prompts (fails at once instead of hanging on a tty); -S reads the become password
    # from stdin with an empty prompt so the prompt never lands in stdout.
    prefix = ["sudo", "-S", "-p", "", "--"] if with_password else ["sudo", "-n", "--"]
    return [*prefix, *argv]


def to_command_line(
    command: Command, *, use_sudo: bool, become_password: str | None = None
) -> tuple[str, str | None]:
    """The command line for a remote shell and the stdin to send (None: close stdin at once)."""
    if command.script is not None:
        raise ValueError("POSIX transports run argv commands; `script` is for PowerShell")
    if not command.argv:
        raise ValueError("empty command")
    argv = list(command.argv)
    stdin = command.stdin
    if use_sudo:
        argv = sudo_argv(argv, with_password=become_password is not None)
        if become_password is not None:
            stdin = f"{become_password}\n{stdin or ''}"
    return shlex.join(argv), stdin


class CommandLog:
    """Appends every command's full stdout and stderr to one file per host.

    Stdin is never written (it may carry the become password)."""

    def __init__(self, logs_dir: Path | None) -> None:
        self._dir = logs_dir
        self._lock = threading.Lock()

    def path_for(self, host_id: str) -> Path | None:
        return None if self._dir is None else self._dir / log_name(host_id)

    def write(self, host_id: str, argv: Sequence[str], result: CommandResult) -> str | None:
        path = self.path_for(host_id)
        if path is None:
            return None
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        text = (
            f"=== {stamp} exit={result.exit_code} duration={result.duration_s:.3f}s\n"
            f"$ {shlex.join(argv)}\n"
            f"--- stdout\n{result.stdout}"
            f"{'' if result.stdout.endswith(chr(10)) or not result.stdout else chr(10)}"
            f"--- stderr\n{result.stderr}"
            f"{'' if result.stderr.endswith(chr(10)) or not result.stderr else chr(10)}"
        )
        try:
            with self._lock:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                with path.open("a", encoding="utf-8") as fh:
                    fh.write(text)
        except OSError as exc:  # a full disk must not fail the action itself
            log.warning("cannot write command log %s: %s", path, exc)
            return None
        return str(path)
