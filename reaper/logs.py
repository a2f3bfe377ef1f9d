"""Logging set-up, done once by the CLI: rich on the terminal, JSON lines to a file. Every
handler masks known secrets and `password=…`-shaped pairs (`reaper.secrets.RedactSecrets`)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from rich.console import Console
from rich.logging import RichHandler

from reaper.secrets import RedactSecrets

__all__ = ["THIRD_PARTY", "JsonLinesFormatter", "setup_logging"]


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:  # set (and masked) by RedactSecrets
            entry["exc"] = record.exc_text
        elif record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# Libraries whose DEBUG/INFO lines would drown Reaper's own (wire dumps, every poll, every
# connection): WARNING unless `third_party` (REAPER_LOG_THIRD_PARTY) asks for more.
THIRD_PARTY = (
    "asyncio",
    "paramiko",
    "urllib3",
    "requests",
    "requests_ntlm",
    "spnego",
    "winrm",
    "httpx",
    "httpcore",
    "anthropic",
    "openai",
    "redis",
    "psycopg",
    "psycopg.pool",
    "hpack",
    "markdown_it",
)


def setup_logging(
    level: str, *, json_file: str | None, console: Console, third_party: str | None = None
) -> None:
    """Reaper's lines at `level` on the terminal and, with `json_file`, as JSON lines there
    too; third-party loggers at WARNING (or `third_party`), whatever `level` is."""
    chosen = logging.getLevelName(level.upper())
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(chosen)
    rich_handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    rich_handler.setLevel(chosen)
    root.addHandler(rich_handler)
    if json_file:
        handler = logging.FileHandler(json_file, encoding="utf-8")
        handler.setFormatter(JsonLinesFormatter())
        handler.setLevel(chosen)
        root.addHandler(handler)
    redactor = RedactSecrets()
    for h in root.handlers:
        h.addFilter(redactor)
    libraries = logging.getLevelName(third_party.upper()) if third_party else logging.WARNING
    if not isinstance(libraries, int):
        libraries = logging.WARNING
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(max(libraries, chosen))
