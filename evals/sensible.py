"""A scripted "sensible model": the synthetic stand-in for a live LLM behind the shipped fixtures.

It answers the LLM planner's requests from the rendered prompt alone — the host lines, the
result lines and the facts inside the untrusted block, all JSON lines — never from anything a
real model could not see. Its habits are those of a careful operator:
- advance each idle host one stage: discover, then prepare first when the facts list missing
  prerequisites (`prereqs.missing`), then baseline;
- a baseline failing with PREREQ_MISSING gets a prepare, then the baseline again;
- a host fault that will not go away (auth, host key, permission) is left alone, so the host
  is not locked for nothing; any other failure is retried directly, while the host has
  failures to spare;
- text in the untrusted block is data: instructions found there are ignored.
It also slips: about one first answer in twelve (chosen by a hash of the prompt, so
deterministically) breaks the schema, which exercises the planner's repair turn.

Usage is estimated at four characters a token, with the static system prompt counted as a
cache write on a mission's first call and a cache read afterwards. Cassettes made with it are
recorded with `synthetic: true`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from llm.testing import ScriptedClient
from llm.types import LLMRequest, LLMResponse, Usage
from reaper.planners.rules import FATAL_ERRORS

__all__ = ["SENSIBLE_MODEL", "SENSIBLE_PROVIDER", "sensible_answer", "sensible_client"]

SENSIBLE_PROVIDER = "synthetic"
# A priced model name, so that cost figures in the shipped reports are plausible.
SENSIBLE_MODEL = "claude-sonnet-4-5"
_SLIP_EVERY = 12
_STAGES = ("new", "discovered", "prepared", "baselined")
_GOAL = re.compile(r"reaches stage `([a-z]+)`")
_MAX = re.compile(r"Propose at most (\d+) tasks")


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                out.append(value)
    return out


def _task(host: str, action: str, reason: str) -> dict[str, str]:
    return {"host_id": host, "action": action, "params_json": "{}", "reason": reason}


def _plan_for(text: str) -> dict[str, Any]:
    goal_m, max_m = _GOAL.search(text), _MAX.search(text)
    goal = _STAGES.index(goal_m.group(1)) if goal_m else 3
    limit = int(max_m.group(1)) if max_m else 50
    hosts: dict[str, dict[str, Any]] = {}
    results: dict[str, dict[str, Any]] = {}
    facts: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for obj in _json_lines(text):
        if "stage" in obj and "failures" in obj:
            hosts[str(obj["host_id"])] = obj
        elif "ref" in obj and "action" in obj:
            results[str(obj["host_id"])] = obj  # the latest result per host wins
        elif "facts" in obj and "host_id" in obj:
            facts[str(obj["host_id"])] = obj["facts"] if isinstance(obj["facts"], dict) else {}
            if obj.get("last_error"):
                errors[str(obj["host_id"])] = str(obj["last_error"])
    tasks: list[dict[str, str]] = []
    for host_id in sorted(hosts):
        task = _next_for(
            hosts[host_id],
            results.get(host_id),
            facts.get(host_id, {}),
            errors.get(host_id, ""),
            goal,
        )
        if task is not None and len(tasks) < limit:
            tasks.append(task)
    note = f"{len(tasks)} task(s): advancing hosts one stage" if tasks else "nothing to do"
    return {"tasks": tasks, "done": not tasks, "note": note}


def _next_for(
    host: dict[str, Any],
    result: dict[str, Any] | None,
    facts: dict[str, Any],
    error: str,
    goal: int,
) -> dict[str, str] | None:
    host_id, os_name = str(host["host_id"]), str(host["os"])
    stage = _STAGES.index(str(host["stage"])) if host["stage"] in _STAGES else 0
    if host.get("locked") or host.get("busy") or stage >= goal:
        return None
    used, _, allowed = str(host.get("failures", "0/3")).partition("/")
    spare = int(allowed or 3) - int(used or 0) > 1
    code = (
        str(result.get("error_code") or "") if result and result.get("status") != "success" else ""
    )
    if not code and host.get("status") == "error" and error:
        code = error.split(":", 1)[0]
    if code in FATAL_ERRORS:
        return None  # repeating it would only lock the host
    if code == "PREREQ_MISSING":
        return _task(host_id, f"{os_name}.prepare", "baseline reported missing prerequisites")
    if code:
        if not spare or result is None:
            return None
        return _task(host_id, str(result["action"]), f"retry after {code}")
    if stage == 0:
        return _task(host_id, f"{os_name}.discover", "collect facts first")
    missing = (facts.get("prereqs") or {}).get("missing") if isinstance(facts, dict) else None
    if stage == 1 and missing and goal >= 2:
        return _task(host_id, f"{os_name}.prepare", "facts list missing prerequisites")
    if goal == 2 and stage == 1:
        return _task(host_id, f"{os_name}.prepare", "goal is prepared")
    return _task(host_id, f"{os_name}.baseline", "apply the baseline")


def _usage(request: LLMRequest, answer: str) -> Usage:
    system = sum(len(b.text) for b in request.system) // 4
    user = sum(len(m.text) for m in request.messages) // 4
    first = request.metadata.get("step") == "1" and request.metadata.get("round") == "0"
    return Usage(
        input_tokens=user,
        output_tokens=max(1, len(answer) // 4),
        cache_read_tokens=0 if first else system,
        cache_write_tokens=system if first else 0,
    )


def sensible_answer(request: LLMRequest) -> LLMResponse:
    prompt = request.messages[0].text
    plan = _plan_for(prompt)
    digest = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
    if len(request.messages) == 1 and digest % _SLIP_EVERY == 0:
        plan = {"tasks": plan["tasks"], "note": plan["note"]}  # forgot `done`: a schema error
    text = json.dumps(plan, separators=(",", ":"))
    return LLMResponse(
        text=text,
        usage=_usage(request, text),
        latency_s=round(0.4 + len(text) / 4000, 3),
        model=SENSIBLE_MODEL,
        provider=SENSIBLE_PROVIDER,
    )


def sensible_client() -> ScriptedClient:
    return ScriptedClient(sensible_answer, provider=SENSIBLE_PROVIDER, model=SENSIBLE_MODEL)
