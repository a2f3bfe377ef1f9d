"""Rendering the LLM planner's prompt: a static, cacheable system part and a bounded user part.

The system part (role, rules, goal semantics, the action catalog rendered from
``reaper.actions.CATALOG``) is the same for every mission and step, so provider prompt caches
hit on it. The user part carries the mission, the hosts and the new results. Everything that
comes from a host (facts, command output, summaries, error texts) is untrusted: it is
redacted (secret-looking keys, credential shapes and known secret values), shrunk to a
per-host / per-result budget, JSON-encoded with ``<`` and ``>`` escaped (so no tag can be
forged inside it) and wrapped in one ``<untrusted-data-ID>`` block whose ID is a hash of the
block's content: stable across runs (replay keys match) yet not guessable by the data itself.
Connection settings (``HostState.connection``) are never rendered.

Rendering is deterministic: hosts and results are sorted, JSON keys are sorted, and nothing
time- or randomness-dependent is included.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from llm.redact import REDACTED, SECRET_KEY, scrub_text
from llm.types import SystemBlock
from prompts import (
    PLANNER_SYSTEM,
    PLANNER_SYSTEM_DESIRED,
    PLANNER_USER,
    PLANNER_USER_DESIRED,
    load_prompt,
)
from reaper.actions import CATALOG
from reaper.models import HostState, MissionState, ResultEvent
from reaper.planners.llm_catalog import CatalogScope, compact_catalog

__all__ = [
    "PromptLimits",
    "RenderedUser",
    "catalog_text",
    "cut_text",
    "desired_system_blocks",
    "dumps_line",
    "prompt_versions",
    "redact_value",
    "render_user",
    "result_line",
    "result_output",
    "shrink_json",
    "system_blocks",
    "untrusted_block",
]


@dataclass(frozen=True, slots=True)
class PromptLimits:
    """Budgets that keep the user message bounded whatever the lab's size."""

    facts_chars: int = 2000  # per host, JSON-encoded
    tail_chars: int = 600  # per stdout / stderr tail (the end is kept)
    text_chars: int = 300  # per summary / error text
    max_detail_hosts: int = 20  # hosts shown in detail besides those in the batch
    max_results: int = 100  # results shown in detail; the rest are counted


@dataclass(frozen=True, slots=True)
class RenderedUser:
    text: str
    batch_hosts: list[str]  # hosts named by the new results, sorted
    detail_hosts: list[str]  # every host shown in detail, sorted


def dumps_line(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _compact(value: Any) -> Any:
    """A resource model's JSON schema, shorter and equivalent for a reader: no `title`s (they
    repeat the field names), no `after` (wiring a planner never writes), `anyOf` of plain
    types as one `type` list, and a null default left implicit."""
    if isinstance(value, list):
        return [_compact(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _compact(v) for k, v in value.items() if k != "title"}
    props = out.get("properties")
    if isinstance(props, dict):
        props.pop("after", None)
    options = out.get("anyOf")
    if isinstance(options, list) and all(
        isinstance(o, dict) and set(o) == {"type"} for o in options
    ):
        del out["anyOf"]
        out["type"] = [o["type"] for o in options]
    if "default" in out and out["default"] is None:
        del out["default"]
    return out


def catalog_text() -> str:
    """One line per action; the resource models the `ensure_*` actions take (`$ref`) are
    defined once each, after the actions, instead of inside every OS's copy of the action."""
    lines = []
    defs: dict[str, Any] = {}
    for name in sorted(CATALOG):
        spec = CATALOG[name]
        schema = spec.params_schema()
        schema.pop("title", None)
        if "$defs" in schema:
            defs.update(schema.pop("$defs"))
            schema.pop("description", None)  # said once, in the prompt's catalog header
        lines.append(
            dumps_line(
                {
                    "name": name,
                    "os": spec.os,
                    "risk": spec.risk.value,
                    "description": spec.description,
                    "params": schema,
                }
            )
        )
    for def_name in sorted(defs):
        lines.append(dumps_line({"$defs": {def_name: _compact(defs[def_name])}}))
    return "\n".join(lines)


@cache
def system_blocks(prompts: str | None = None) -> tuple[SystemBlock, ...]:
    """`prompts`: a variant directory (`prompts.load_prompt`), None for the shipped ones."""
    text = load_prompt(PLANNER_SYSTEM, prompts).render(catalog=catalog_text())
    return (SystemBlock(text=text, cache=True),)


@cache
def desired_system_blocks(
    scope: CatalogScope, prompts: str | None = None
) -> tuple[SystemBlock, ...]:
    """A desired-state mission's system part: its lab's scoped, compact catalog. The scope is
    the lab's, so the text is the same at every step of the mission (a stable prefix)."""
    text = load_prompt(PLANNER_SYSTEM_DESIRED, prompts).render(catalog=compact_catalog(scope))
    return (SystemBlock(text=text, cache=True),)


def prompt_versions(prompts: str | None = None) -> dict[str, str]:
    """Template hashes plus the rendered catalog's: what a decision records as prompt_hash.
    (A desired-state catalog is a function of the code and the lab, both versioned already.)"""
    return {
        "system": load_prompt(PLANNER_SYSTEM, prompts).sha,
        "system_desired": load_prompt(PLANNER_SYSTEM_DESIRED, prompts).sha,
        "user": load_prompt(PLANNER_USER, prompts).sha,
        "user_desired": load_prompt(PLANNER_USER_DESIRED, prompts).sha,
        "catalog": hashlib.sha256(catalog_text().encode()).hexdigest()[:12],
    }


def redact_value(value: Any, secrets: Sequence[str] = ()) -> Any:
    """A copy with secret-named keys masked and every string scrubbed (``llm.redact``)."""
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if SECRET_KEY.search(str(k)) else redact_value(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v, secrets) for v in value]
    return value


def cut_text(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    dropped = len(text) - limit
    if keep_end:
        return f"…[truncated {dropped} chars]" + text[-limit:]
    return text[:limit] + f"…[truncated {dropped} chars]"


def _shrink(value: Any, str_limit: int, list_limit: int) -> Any:
    if isinstance(value, str):
        return cut_text(value, str_limit)
    if isinstance(value, dict):
        return {k: _shrink(v, str_limit, list_limit) for k, v in value.items()}
    if isinstance(value, list):
        items = [_shrink(v, str_limit, list_limit) for v in value[:list_limit]]
        if len(value) > list_limit:
            items.append(f"…[{len(value) - list_limit} more]")
        return items
    return value


def shrink_json(value: dict[str, Any], limit: int) -> dict[str, Any]:
    """``value`` cut down until its JSON fits ``limit`` chars, staying valid JSON: long strings
    and lists are shortened first, then top-level keys dropped (last in sort order first) and
    named in ``_truncated``."""
    if len(dumps_line(value)) <= limit:
        return value
    shrunk: dict[str, Any] = _shrink(value, max(limit // 8, 40), 10)
    dropped: list[str] = []
    keys = sorted(shrunk)
    while keys and len(dumps_line({**shrunk, "_truncated": dropped})) > limit:
        key = keys.pop()
        dropped.insert(0, key)
        del shrunk[key]
    return {**shrunk, "_truncated": dropped} if dropped else shrunk


def untrusted_block(lines: Iterable[Any]) -> str:
    """One delimited block of JSON lines, with ``<`` and ``>`` escaped inside the JSON."""
    escaped = (dumps_line(line).replace("<", "\\u003c").replace(">", "\\u003e") for line in lines)
    body = "\n".join(escaped)
    nonce = hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]
    return f"<untrusted-data-{nonce}>\n{body}\n</untrusted-data-{nonce}>"


def result_line(index: int, r: ResultEvent) -> dict[str, Any]:
    """A result as the engine knows it (no host text): `ref` ties it to its output."""
    return {
        "ref": index,
        "host_id": r.host_id,
        "action": r.action,
        "attempt": r.attempt,
        "status": r.status.value,
        "error_code": r.error_code,
        "retriable": r.retriable,
    }


def result_output(
    index: int, r: ResultEvent, limits: PromptLimits, secrets: Sequence[str]
) -> dict[str, Any]:
    """What a result's host printed, for the untrusted block: scrubbed before it is cut, so
    a secret is never left half-visible at a cut."""
    return {
        "result_ref": index,
        "summary": cut_text(scrub_text(r.summary, secrets), limits.text_chars),
        "stdout_tail": _tail(r.stdout_tail, limits, secrets),
        "stderr_tail": _tail(r.stderr_tail, limits, secrets),
    }


def _tail(text: str, limits: PromptLimits, secrets: Sequence[str]) -> str:
    return cut_text(scrub_text(text, secrets), limits.tail_chars, keep_end=True)


def _host_line(host: HostState) -> dict[str, Any]:
    # Engine-controlled fields only; nothing from host.connection.
    return {
        "host_id": host.host_id,
        "os": host.os,
        "stage": host.stage.value,
        "status": host.last_status.value,
        "failures": f"{host.failure_count}/{host.max_failures}",
        "locked": host.locked,
        "busy": host.current_action,
    }


def _pick_others(state: MissionState, exclude: set[str], limit: int) -> list[str]:
    goal = state.goal.rank

    def key(h: HostState) -> tuple[bool, int, str]:
        actionable = not h.locked and h.current_action is None and h.stage.rank < goal
        return (not actionable, h.stage.rank, h.host_id)

    others = [h for h in state.hosts.values() if h.host_id not in exclude]
    others.sort(key=key)
    return [h.host_id for h in others[:limit]]


def _summary(state: MissionState, shown: int) -> str:
    stages = Counter(h.stage.value for h in state.hosts.values())
    locked = sum(1 for h in state.hosts.values() if h.locked)
    busy = sum(1 for h in state.hosts.values() if h.current_action is not None)
    by_stage = ", ".join(f"{n} {stage}" for stage, n in sorted(stages.items()))
    hidden = len(state.hosts) - shown
    return (
        f"by stage: {by_stage}; {locked} locked; {busy} busy; {shown} shown in detail"
        + (f", {hidden} not shown (ask about them in a later step)" if hidden else "")
        + "."
    )


def render_user(
    state: MissionState,
    results: Sequence[ResultEvent],
    *,
    max_tasks: int,
    limits: PromptLimits,
    secrets: Sequence[str] = (),
    prompts: str | None = None,
) -> RenderedUser:
    ordered = sorted(results, key=lambda r: (r.host_id, r.task_id, r.attempt))
    shown_results = ordered[: limits.max_results]
    batch = sorted({r.host_id for r in shown_results if r.host_id in state.hosts})
    others = _pick_others(state, set(batch), limits.max_detail_hosts)
    detail = sorted({*batch, *others})
    hosts = [state.hosts[h] for h in detail]

    untrusted: list[dict[str, Any]] = []
    for host in hosts:
        facts = shrink_json(redact_value(host.facts, secrets), limits.facts_chars)
        entry: dict[str, Any] = {"host_id": host.host_id, "facts": facts}
        if host.last_error:
            entry["last_error"] = cut_text(scrub_text(host.last_error, secrets), limits.text_chars)
        untrusted.append(entry)
    result_lines = []
    for index, r in enumerate(shown_results, start=1):
        result_lines.append(dumps_line(result_line(index, r)))
        untrusted.append(result_output(index, r, limits, secrets))
    if len(ordered) > len(shown_results):
        rest = Counter(f"{r.action} {r.status.value}" for r in ordered[len(shown_results) :])
        counts = ", ".join(f"{n}x {what}" for what, n in sorted(rest.items()))
        result_lines.append(f"... and {len(ordered) - len(shown_results)} more: {counts}")
    text = load_prompt(PLANNER_USER, prompts).render(
        lab_type=state.lab_type,
        step=str(state.step + 1),
        goal=state.goal.value,
        max_tasks=str(max_tasks),
        host_count=str(len(state.hosts)),
        summary=_summary(state, len(detail)),
        hosts="\n".join(dumps_line(_host_line(h)) for h in hosts) or "(none)",
        results="\n".join(result_lines)
        or ("(none: this is the first step)" if state.step == 0 else "(none)"),
        untrusted=untrusted_block(untrusted),
    )
    return RenderedUser(text=text, batch_hosts=batch, detail_hosts=detail)
