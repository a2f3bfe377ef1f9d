"""Masking of secrets in anything the LLM layer writes down (cassettes, logs)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["REDACTED", "SECRET_PATTERNS", "scrub", "scrub_text"]

REDACTED = "[REDACTED]"

# Shapes of common credentials. Ordered so the more specific sk-ant- wins over sk-.
SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?i)(x-api-key|api[_-]?key|authorization)([\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{8,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
)


def scrub_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secret values and credential-shaped strings replaced."""
    # Known values first, longest first, so a secret containing another is masked whole.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern in SECRET_PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def scrub(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value with every string (keys included) scrubbed."""
    known = tuple(secrets)
    if isinstance(value, str):
        return scrub_text(value, known)
    if isinstance(value, dict):
        return {scrub_text(str(k), known): scrub(v, known) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, known) for v in value]
    return value
