"""A scripted model for desired-state missions: answers the LLM planner's desired-state prompt
by reading it as a model would (the JSON lines of its sections), with simple, sensible rules.

It is *synthetic*: no model wrote its answers, and every cassette and scorecard row made with
it says so. It exists to exercise the LLM planner's whole path (prompt, schema, validation,
engine, policy) offline and as a baseline a real model should beat: it reads unknown
resources, ensures what is `todo` in the order shown, fixes the failure classes whose cause
is plain from the class alone (a full disk, a pending reboot, a held lock, a skewed clock, a
resolver declared on the host), diagnoses anything else once and then stops for that
resource, and reads back what changed.

Use: `reaper eval --planner llm --record DIR --client evals.scripted_desired:client` or in
tests `ScriptedClient(answer)`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from llm.testing import ScriptedClient
from llm.types import LLMRequest
from reaper.desired.kinds import resource_of

__all__ = ["answer", "client", "read_prompt"]

_SECTION = re.compile(r"^## (.+)$", re.M)
# failure class → the fix, as (verb, params) on the host's OS, before the resource is retried
_TIME_SERVICE = {"windows": "w32time", "linux": "chrony", "macos": "com.apple.timed"}
_DIAGNOSE_TOPIC = {
    "PORT_IN_USE": "network",
    "CONFIG_INVALID": "service",
    "PACKAGE_NOT_FOUND": "packages",
    "REPO_UNREACHABLE": "packages",
    "MISSING_DEPENDENCY": "packages",
    "DNS_MISCONFIGURED": "network",
}


@dataclass
class HostView:
    host: dict[str, Any]
    resources: list[dict[str, Any]] = field(default_factory=list)
    declared: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def _json_lines(text: str) -> list[tuple[str, Any]]:
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("{"):
            try:
                out.append((line, json.loads(stripped)))
            except json.JSONDecodeError:
                continue
    return out


def read_prompt(text: str) -> tuple[dict[str, HostView], bool]:
    """The hosts of a desired-state user message, and whether it is in check mode."""
    parts = _SECTION.split(text)
    sections = {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    hosts: dict[str, HostView] = {}
    current: HostView | None = None
    for raw, value in _json_lines(sections.get("Hosts", "")):
        if raw.startswith("  ") and current is not None:
            current.resources.append(value)
        elif "host_id" in value:
            current = hosts.setdefault(value["host_id"], HostView(host=value))
    for name, body in sections.items():
        if name.startswith("Declarations"):
            for _, value in _json_lines(body):
                view = hosts.get(value.get("host_id", ""))
                spec = value.get("resource") or {}
                rid = resource_of({"resource": spec}, {})
                if view is not None and rid is not None:
                    view.declared[rid] = spec
        elif name.startswith("History"):
            for _, value in _json_lines(body):
                view = hosts.get(value.get("host_id", ""))
                if view is not None:
                    view.history = list(value.get("tasks", []))
    return hosts, "in check mode" in text.split("\n", 1)[0]


def _task(host: str, action: str, params: dict[str, Any], reason: str) -> dict[str, str]:
    return {
        "host_id": host,
        "action": action,
        "params_json": json.dumps(params, sort_keys=True),
        "reason": reason,
    }


def _ensure(view: HostView, rid: str, check: bool, why: str) -> dict[str, str] | None:
    spec = view.declared.get(rid)
    if spec is None:
        return None
    os_name = view.host["os"]
    kind = rid.partition("/")[0]
    return _task(
        view.host["host_id"],
        f"{os_name}.ensure_{kind}",
        {"resource": spec, "check_mode": check},
        f"{why} {rid}",
    )


def _fix_for(view: HostView, code: str) -> tuple[str, dict[str, Any]] | None:
    os_name = view.host["os"]
    if code == "DISK_FULL":
        return f"{os_name}.cleanup", {}
    if code == "REBOOT_PENDING":
        return f"{os_name}.reboot", {"reason": "a restart is pending"}
    if code == "CLOCK_SKEW":
        name = _TIME_SERVICE[os_name]
        return f"{os_name}.ensure_service", {
            "resource": {"kind": "service", "name": name, "state": "running", "enabled": True}
        }
    return None


def _after(history: list[dict[str, Any]], rid: str) -> list[dict[str, Any]]:
    """The host's tasks since the resource's last failed ensure."""
    for i in range(len(history) - 1, -1, -1):
        if history[i].get("resource") == rid and history[i].get("status") == "failed":
            return history[i + 1 :]
    return []


def _for_failed(view: HostView, res: dict[str, Any], check: bool) -> dict[str, str] | None:
    rid, code = res["resource"], res.get("error_code", "")
    host = view.host["host_id"]
    since = _after(view.history, rid)
    if code in ("REFUSED", "NOT_CONVERGED") or any(t.get("resource") == rid for t in since):
        return None  # refused, or tried again after a fix already: it stays failed
    if code == "PM_LOCKED":
        return _ensure(view, rid, check, "the package manager lock may have cleared: retry")
    if code == "DNS_MISCONFIGURED":
        dns = next((r for r in view.declared if r.startswith("dns_client/")), None)
        if dns is not None and not any(t.get("resource") == dns for t in since):
            return _ensure(view, dns, check, "the join needs the DC as resolver: first")
        return _ensure(view, rid, check, "the resolver is set: join again") if since else None
    fix = _fix_for(view, code)
    if fix is not None:
        action, params = fix
        if any(t.get("action") == action and t.get("status") == "succeeded" for t in since):
            return _ensure(view, rid, check, f"{code} was fixed: ensure again")
        if any(t.get("action") == action for t in since):
            return None
        return _task(host, action, params, f"{rid} failed with {code}: fix the cause")
    if not any(t.get("action", "").endswith(".diagnose") for t in since):
        topic = _DIAGNOSE_TOPIC.get(code)
        return _task(
            host,
            f"{view.host['os']}.diagnose",
            {"topics": [topic]} if topic else {},
            f"{rid} failed with {code}: look before acting",
        )
    return None


def _for_host(view: HostView, check: bool) -> dict[str, str] | None:
    host = view.host
    if host.get("locked") or host.get("busy"):
        return None
    statuses = [r["status"] for r in view.resources]
    if "unknown" in statuses:
        return _task(host["host_id"], f"{host['os']}.discover", {}, "read the declared resources")
    for res in view.resources:
        if res["status"] == "failed":
            fix = _for_failed(view, res, check)
            if fix is not None:
                return fix
    for res in view.resources:
        if res["status"] == "todo":
            return _ensure(view, res["resource"], check, "converge")
    if "settled" in statuses:
        return _task(host["host_id"], f"{host['os']}.discover", {}, "read back what changed")
    return None


def answer(request: LLMRequest) -> dict[str, Any]:
    hosts, check = read_prompt(request.messages[0].text)
    tasks = [t for v in hosts.values() if (t := _for_host(v, check)) is not None]
    note = f"{len(tasks)} task(s)" if tasks else "nothing more can usefully be done"
    return {"tasks": tasks, "done": not tasks, "note": note}


def client() -> ScriptedClient:
    """The scripted model as an `LLMClient` (answers are synthetic)."""
    return ScriptedClient(answer, provider="scripted", model="scripted-desired")
