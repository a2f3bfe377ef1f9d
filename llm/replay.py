"""Record and replay model answers at the client level, as versioned JSONL cassettes.

A cassette's first line is a header (``schema_version``, ``synthetic``, ``created``,
``provider``, ``model`` and, from version 2, ``recorded``: the provenance of answers a live or
local model wrote: provider, model, the model file's sha256 when the client knows it (local
models), and the date; absent for scripted answers); each further line is one answered
request: its key, the scrubbed normalised request, a one-line summary and the
``LLMResponse`` (which carries usage and latency). Recording happens above the SDK, not at
HTTP level, so it is independent of streaming, retries and wire formats.

The key is the sha256 of the canonical JSON of what determines the answer: provider, model,
system texts, messages, json_schema, schema_name, max_tokens, temperature and seed. It never
includes timeouts, retries, keys, headers, metadata labels or the ``cache`` flags (turning
caching on must not invalidate recordings).

Replay order: entries with the same key (K trials of one request with one seed, or a repair
re-ask) are served in recorded order; once they are used up, a further identical request is a
``ReplayMissError``, never a repeat of the last answer, because a silent repeat would hide a
changed call count (e.g. an extra repair) from the researcher.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections import deque
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm.base import LLMClient
from llm.errors import LLMConfigError, ReplayMissError
from llm.redact import scrub
from llm.types import LLMRequest, LLMResponse

__all__ = [
    "CASSETTE_SCHEMA_VERSION",
    "Cassette",
    "CassetteEntry",
    "CassetteHeader",
    "Provenance",
    "RecordingClient",
    "ReplayClient",
    "describe_request",
    "load_cassette",
    "normalise_request",
    "request_key",
]

logger = logging.getLogger(__name__)

CASSETTE_SCHEMA_VERSION = 2
# Version 1 headers lack `recorded`; they read as version 2 with no provenance.
_READABLE_VERSIONS = (1, CASSETTE_SCHEMA_VERSION)
_KEY_FIELDS = (
    "system",
    "messages",
    "json_schema",
    "schema_name",
    "max_tokens",
    "temperature",
    "seed",
)


class Provenance(BaseModel):
    """Who wrote a cassette's answers: a live or local model, identified as far as known."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str
    # The weights file's digest (local models): a model name alone does not pin the weights.
    model_sha256: str | None = None
    date: date

    def label(self) -> str:
        digest = f", sha256 {self.model_sha256[:12]}" if self.model_sha256 else ""
        return f"recorded: {self.provider}/{self.model}{digest}, {self.date.isoformat()}"


class CassetteHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["header"] = "header"
    schema_version: int = CASSETTE_SCHEMA_VERSION
    # True when the answers did not come from a live model (e.g. a ScriptedClient).
    synthetic: bool
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    provider: str
    model: str
    recorded: Provenance | None = None

    def provenance(self) -> str:
        """``recorded: provider/model, sha256 …, date`` or ``scripted``."""
        if self.recorded is not None and not self.synthetic:
            return self.recorded.label()
        return "scripted" if self.synthetic else f"recorded: {self.provider}/{self.model}"


class CassetteEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["entry"] = "entry"
    key: str
    summary: str
    # Normalised and scrubbed: for diagnosing misses, not for recomputing the key.
    request: dict[str, Any]
    response: LLMResponse


class Cassette(BaseModel):
    header: CassetteHeader
    entries: list[CassetteEntry]


def normalise_request(request: LLMRequest, provider: str, model: str) -> dict[str, Any]:
    """The answer-determining part of a request, as plain JSON data."""
    data = request.model_dump(mode="json", include=set(_KEY_FIELDS))
    data["system"] = [block["text"] for block in data["system"]]
    return {"provider": provider, "model": model, **data}


def request_key(request: LLMRequest, provider: str, model: str) -> str:
    canonical = json.dumps(
        normalise_request(request, provider, model),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def describe_request(request: LLMRequest, limit: int = 80) -> str:
    """A one-line description a person can match to a prompt: schema, labels, seed, text."""
    parts = [f"schema={request.schema_name}"]
    parts += [f"{name}={value}" for name, value in sorted(request.metadata.items())]
    if request.seed is not None:
        parts.append(f"seed={request.seed}")
    text = " ".join(request.last_user_text().split())
    if len(text) > limit:
        text = text[:limit] + "…"
    parts.append(f"last user message: {text!r}")
    return ", ".join(parts)


# Cassettes are loaded whole: one past this size (compressed or not) is refused before it is
# read. A line's JSON nesting is bounded by the parsers (pydantic's, and the header line is
# checked for depth), so a hostile cassette is a one-line error, not a RecursionError.
MAX_CASSETTE_BYTES = 256 * 1024 * 1024
_MAX_HEADER_DEPTH = 8


def _read_text(path: Path) -> str:
    """A cassette file's text; `.gz` cassettes (large fixture sets) are read transparently."""
    try:
        if path.stat().st_size > MAX_CASSETTE_BYTES:
            raise LLMConfigError(f"cassette {path} is over the {MAX_CASSETTE_BYTES}-byte limit")
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read(MAX_CASSETTE_BYTES + 1)
        else:
            data = path.read_bytes()
        if len(data) > MAX_CASSETTE_BYTES:
            raise LLMConfigError(f"cassette {path} is over the {MAX_CASSETTE_BYTES}-byte limit")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise LLMConfigError(f"no cassette at {path}") from None
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise LLMConfigError(f"cannot read cassette {path}: {exc}") from None


def _line_error(path: Path, number: int, problem: str) -> LLMConfigError:
    return LLMConfigError(f"cassette {path} line {number}: {' '.join(problem.split())}")


def _header_line(path: Path, line: str) -> dict[str, Any]:
    if len(line) > 64 * 1024:
        raise _line_error(path, 1, "the header line is over 64 KiB")
    depth = 0
    for char in line:  # a header is a short flat object: refuse deep nesting before parsing
        depth += char in "[{"
        depth -= char in "]}"
        if depth > _MAX_HEADER_DEPTH:
            raise _line_error(path, 1, "the header is nested too deep")
    try:
        first = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise _line_error(path, 1, f"invalid JSON: {exc}") from None
    if not isinstance(first, dict) or first.get("type") != "header":
        raise LLMConfigError(f"cassette {path} has no header line")
    return first


def _entry_line(path: Path, number: int, line: str) -> CassetteEntry:
    try:
        return CassetteEntry.model_validate_json(line)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        raise _line_error(path, number, f"{where + ': ' if where else ''}{err['msg']}") from None


def load_cassette(path: Path) -> Cassette:
    lines = [line for line in _read_text(path).splitlines() if line.strip()]
    if not lines:
        raise LLMConfigError(f"cassette {path} is empty")
    first = _header_line(path, lines[0])
    if first.get("schema_version") not in _READABLE_VERSIONS:
        raise LLMConfigError(
            f"cassette {path} has schema_version {first.get('schema_version')!r}; "
            f"this version reads {' and '.join(map(str, _READABLE_VERSIONS))}: record it again"
        )
    try:
        header = CassetteHeader.model_validate(first)
    except ValidationError as exc:
        raise _line_error(path, 1, str(exc.errors()[0]["msg"])) from None
    entries = [_entry_line(path, n, line) for n, line in enumerate(lines[1:], start=2)]
    return Cassette(header=header, entries=entries)


class RecordingClient:
    """Wraps a client and appends each answered request to a cassette."""

    def __init__(
        self,
        inner: LLMClient,
        path: Path,
        *,
        synthetic: bool = False,
        secrets: Iterable[str] = (),
    ) -> None:
        self.inner = inner
        self.path = Path(path)
        self.synthetic = synthetic
        self._secrets = tuple(secrets)
        self._header_written = False
        if self.path.exists() and self.path.stat().st_size > 0:
            header = load_cassette(self.path).header
            if (header.provider, header.model) != (inner.provider, inner.model):
                raise LLMConfigError(
                    f"cassette {self.path} holds {header.provider}/{header.model}, "
                    f"not {inner.provider}/{inner.model}: record to another file"
                )
            self._header_written = True

    @property
    def provider(self) -> str:
        return self.inner.provider

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> LLMResponse:
        response = await self.inner.complete(request)
        entry = CassetteEntry(
            key=request_key(request, self.provider, self.model),
            summary=describe_request(request),
            request=normalise_request(request, self.provider, self.model),
            response=response,
        )
        self._append(entry)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _provenance(self) -> Provenance:
        # Clients that load a weights file (llm.local.LocalClient) expose its digest.
        digest = getattr(self.inner, "model_sha256", None)
        return Provenance(
            provider=self.provider,
            model=self.model,
            model_sha256=digest if isinstance(digest, str) else None,
            date=datetime.now(UTC).date(),
        )

    def _append(self, entry: CassetteEntry) -> None:
        # Small synchronous appends with no await in between: entries from concurrent calls
        # cannot interleave within a line.
        lines: list[str] = []
        if not self._header_written:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = CassetteHeader(
                synthetic=self.synthetic,
                provider=self.provider,
                model=self.model,
                recorded=None if self.synthetic else self._provenance(),
            )
            lines.append(json.dumps(header.model_dump(mode="json")))
            self._header_written = True
        data = scrub(entry.model_dump(mode="json"), self._secrets)
        lines.append(json.dumps(data, ensure_ascii=False))
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")


class ReplayClient:
    """Serves recorded answers: no network, no key, deterministic (see module docstring)."""

    def __init__(self, path: Path, *, cassette: Cassette | None = None) -> None:
        self.path = Path(path)
        cassette = cassette or load_cassette(self.path)
        self._cassette = cassette
        self.header = cassette.header
        self.provider = cassette.header.provider
        self.model = cassette.header.model
        self.synthetic = cassette.header.synthetic
        self._entries = cassette.entries
        self._queues: dict[str, deque[int]] = {}
        for index, entry in enumerate(cassette.entries):
            self._queues.setdefault(entry.key, deque()).append(index)
        self._served: set[int] = set()

    def fork(self) -> ReplayClient:
        """A fresh client on the same parsed cassette, every answer unserved (one per trial
        or run, without parsing the file again)."""
        return ReplayClient(self.path, cassette=self._cassette)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        key = request_key(request, self.provider, self.model)
        queue = self._queues.get(key)
        if queue:
            index = queue.popleft()
            self._served.add(index)
            return self._entries[index].response
        if queue is not None:
            count = sum(1 for e in self._entries if e.key == key)
            hint = f"all {count} recorded answers for this request were already served"
        else:
            hint = self._closest_hint(request)
        raise ReplayMissError(key, describe_request(request), hint=hint)

    async def aclose(self) -> None:
        return None

    def recorded_max_tokens(self) -> int | None:
        """The `max_tokens` every recorded request asked for (None: mixed, or none recorded):
        a replay must ask the same, or every key misses."""
        found = {e.request.get("max_tokens") for e in self._entries}
        value = found.pop() if len(found) == 1 else None
        return value if isinstance(value, int) else None

    def recorded_seeds(self) -> list[int]:
        """The seeds the recorded requests carried, ascending (a replay of another seed
        misses: the seed is part of every key)."""
        return sorted({s for e in self._entries if isinstance(s := e.request.get("seed"), int)})

    def unused(self) -> list[CassetteEntry]:
        """Recorded entries never served, in cassette order (stale or dropped calls)."""
        return [e for i, e in enumerate(self._entries) if i not in self._served]

    def _closest_hint(self, request: LLMRequest) -> str:
        if not self._entries:
            return "the cassette has no entries"
        wanted = scrub(normalise_request(request, self.provider, self.model))
        best = min(
            (
                [f for f in _KEY_FIELDS if entry.request.get(f) != wanted.get(f)]
                for entry in self._entries
            ),
            key=len,
        )
        if not best:
            # Same after scrubbing: the difference is in a masked secret-shaped string.
            return "closest recorded request differs only inside redacted text"
        return "closest recorded request differs in: " + ", ".join(best)
