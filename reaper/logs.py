"""Logging set-up, done once by the CLI: rich on the terminal, JSON lines to a file. Every
handler masks known secrets and `password=…`-shaped pairs (`reaper.secrets.RedactSecrets`)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from rich.console import Console
from rich.logging import RichHandler

from reaper.secrets import RedactSecrets

__all__ = ["JsonLinesFormatter", "setup_logging"]


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


def setup_logging(level: str, *, json_file: str | None, console: Console) -> None:
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.DEBUG if json_file else level.upper())
    rich_handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    rich_handler.setLevel(level.upper())
    root.addHandler(rich_handler)
    if json_file:
        handler = logging.FileHandler(json_file, encoding="utf-8")
        handler.setFormatter(JsonLinesFormatter())
        handler.setLevel(logging.DEBUG)
        root.addHandler(handler)
    redactor = RedactSecrets()
    for h in root.handlers:
        h.addFilter(redactor)
    for noisy in ("paramiko", "httpx", "httpcore", "anthropic", "openai", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
