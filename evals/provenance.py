"""Where a run's LLM answers came from, for every scorecard row: `scripted` (no model wrote
them: a scripted client, or a cassette recorded from one), `recorded: MODEL, DIGEST, DATE`
(a cassette of a live model's answers), `live: PROVIDER/MODEL`, or "" for a planner that
asks no model. Reports say "synthetic" wherever it is `scripted`."""

from __future__ import annotations

import gzip
import hashlib
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from evals.planners import LLMSource, cassette_for
from llm.replay import CassetteHeader

__all__ = ["SCRIPTED", "provenance"]

SCRIPTED = "scripted"


def provenance(source: LLMSource, scenario: str) -> str:
    if source.synthetic or source.client_factory:
        return SCRIPTED
    if source.mode == "live":
        return f"live: {source.provider}/{source.model}"
    return _cassette(cassette_for(source.path, scenario))


@cache  # one read per cassette per process, not one per run
def _cassette(path: Path) -> str:
    if not path.exists():
        return ""  # the run records a cassette miss; there is no answer to attribute
    data = path.read_bytes()
    text = gzip.decompress(data) if path.suffix == ".gz" else data
    try:
        header = CassetteHeader.model_validate_json(text.split(b"\n", 1)[0])
    except ValidationError:
        return ""  # the replay client reports the malformed cassette itself
    if header.synthetic or header.recorded is not None:
        return header.provenance()  # the recorder's own provenance (cassette version 2)
    # A version 1 header names only the model: the file's digest and date stand for the rest.
    digest = hashlib.sha256(data).hexdigest()[:12]
    return f"recorded: {header.model}, {digest}, {header.created.date().isoformat()}"
