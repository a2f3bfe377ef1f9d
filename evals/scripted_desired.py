"""A scripted model for desired-state missions: answers the LLM planner's desired-state prompt
by reading it as a model would (the JSON lines of its sections), with simple, sensible rules.

It is *synthetic*: no model wrote its answers, and every cassette and scorecard row made with
it says so. It exists to exercise the LLM planner's whole path (prompt, schema, validation,
engine, policy) offline and as a baseline a real model should beat: it reads unknown
resources, ensures what is `todo` in the order shown; for a failed resource it diagnoses
first, then acts on what diagnose printed (the report and findings in the untrusted data: the
full disk, the lock holder, the unreachable mirror, the port's holder, the file the config
test names, the unresolved domain, the stopped time service, a pending reboot) and ensures the
resource again; when it knows no fix, or the fix did not help, it stops with `done` and a note
naming what it cannot fix, rather than looping. It reads back what changed. It sees only the
request it is sent: never the scenario or the world.

Use: `reaper eval --planner llm --record DIR --client evals.scripted_desired:client` or in
tests `ScriptedClient(answer)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
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
    facts: dict[str, Any] = field(default_factory=dict)
    diagnose: dict[str, Any] = field(default_factory=dict)  # the last diagnose's data
    failures: dict[str, str] = field(default_factory=dict)  # resource → its error and tail


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


def _read_untrusted(hosts: dict[str, HostView], body: str) -> None:
    """What the hosts reported (read as data): facts with the last diagnose, and each failed
    resource's error and the tool's output."""
    for _, value in _json_lines(body):
        view = hosts.get(value.get("host_id", ""))
        if view is None or not isinstance(value.get("facts"), dict):
            continue
        view.facts = value["facts"]
        view.diagnose = dict(view.facts.get("diagnose") or {})
        for rid, info in (value.get("resources") or {}).items():
            if isinstance(info, dict):
                view.failures[rid] = f"{info.get('error', '')}\n{info.get('output_tail', '')}"


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
        elif name.startswith("Untrusted"):
            _read_untrusted(hosts, body)
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


_SUITES = {"12": "bookworm", "11": "bullseye"}
_MAJOR = re.compile(r"\b(\d+)\b")
_PORT = re.compile(r"0\.0\.0\.0:(\d+) failed|port (\d+)")
_BAD_FILE = re.compile(r" in (/\S+?):\d+")
_NTP = re.compile(r"NTP service: inactive \((\S+)\)")
_UNIT = re.compile(r"Unit (\S+?)\.service not found")
_MAX_FAILURES = 3  # failed ensures of one resource in the history before it is given up


def _diagnose_params(view: HostView, rid: str, code: str) -> dict[str, Any]:
    params: dict[str, Any] = {"topics": [_DIAGNOSE_TOPIC.get(code, "disk")]}
    if code in ("CONFIG_INVALID", "PORT_IN_USE"):
        kind, _, name = rid.partition("/")
        spec = view.declared.get(rid, {})
        notify = [str(n).partition("/")[2] or str(n) for n in spec.get("notify", ())]
        service = name if kind == "service" else (notify[0] if notify else "")
        if service:
            params = {"topics": ["service", "network"], "service": service}
    if code == "DNS_MISCONFIGURED":
        domain = view.declared.get(rid, {}).get("domain")
        params = {"topics": ["network"], **({"target": domain} if domain else {})}
    if code == "CLOCK_SKEW":
        params = {"topics": ["time"]}
    if code in ("REBOOT_PENDING", "DISK_FULL", "PM_LOCKED"):
        params = {"topics": ["disk", "packages"]}
    return params


def _ensure_spec(view: HostView, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return f"{view.host['os']}.ensure_{spec['kind']}", {"resource": spec}


Fixer = Callable[["HostView", str, int], "tuple[str, dict[str, Any]] | None"]


def _report(view: HostView, topic: str) -> str:
    return str((view.diagnose.get("report") or {}).get(topic, ""))


def _fix_disk(view: HostView, rid: str, failures: int) -> tuple[str, dict[str, Any]] | None:
    full = any("full" in str(f) for f in view.diagnose.get("findings", ()))
    return (f"{view.host['os']}.cleanup", {}) if full else None


def _fix_reboot(view: HostView, rid: str, failures: int) -> tuple[str, dict[str, Any]] | None:
    pending = any("reboot is pending" in str(f) for f in view.diagnose.get("findings", ()))
    return (f"{view.host['os']}.reboot", {"reason": "a restart is pending"}) if pending else None


def _fix_lock(view: HostView, rid: str, failures: int) -> tuple[str, dict[str, Any]] | None:
    # The holder may finish by itself (None: one more try); a holder that stays is killed.
    if failures < 2:
        return None
    return f"{view.host['os']}.reboot", {"reason": "the package manager's lock holder stays"}


def _distro(os_fact: object) -> tuple[str, str]:
    """(id, major version) from the OS fact the prompt shows: a mapping, or its pretty name
    such as "Debian GNU/Linux 12 (bookworm)"."""
    if isinstance(os_fact, dict):
        return str(os_fact.get("id", "")), str(os_fact.get("version", ""))
    text = str(os_fact or "")
    major = _MAJOR.search(text)
    return text.split(" ", 1)[0].lower(), major.group(1) if major else ""


def _fix_repo(view: HostView, rid: str, failures: int) -> tuple[str, dict[str, Any]] | None:
    distro, version = _distro(view.facts.get("os"))
    if "unreachable" not in _report(view, "packages") or distro != "debian":
        return None
    if version not in _SUITES:
        return None
    mirror = {
        "kind": "package_repository",
        "name": "lab-mirror",
        "format": "apt",
        "url": "http://mirror.lab.internal/debian",
        "suite": _SUITES[version],
        "components": ["main"],
        "key_url": "http://mirror.lab.internal/debian/archive-key.asc",
    }
    return _ensure_spec(view, mirror)


def _fix_port(view: HostView, rid: str, failures: int) -> tuple[str, dict[str, Any]] | None:
    m = _PORT.search(view.failures.get(rid, ""))
    port = (m.group(1) or m.group(2)) if m else ""
    holder = re.search(rf':{port} .*users:\(\("([^"]+)"', _report(view, "network"))
    if not port or holder is None:
        return None
    stop = {"kind": "service", "name": holder.group(1), "state": "stopped", "enabled": False}
    return _ensure_spec(view, stop)


def _fix_config(view: HostView, rid: str, failures: int) -> tuple[str, dict[str, Any]] | None:
    m = _BAD_FILE.search(_report(view, "service") + "\n" + view.failures.get(rid, ""))
    if m is None:
        return None
    declared = next((d for d in view.declared.values() if d.get("path") == m.group(1)), None)
    return _ensure_spec(view, declared or {"kind": "file", "path": m.group(1), "state": "absent"})


def _fix_dns(view: HostView, rid: str, failures: int) -> tuple[str, dict[str, Any]] | None:
    if not any("does not resolve" in str(f) for f in view.diagnose.get("findings", ())):
        return None
    dns = next((d for r, d in view.declared.items() if r.startswith("dns_client/")), None)
    after = view.declared.get(rid, {}).get("after", ())
    dcs = [str(a).partition(":")[0] for a in after if ":ad_domain/" in str(a)]
    spec = dns or ({"kind": "dns_client", "servers_from": dcs} if dcs else None)
    return _ensure_spec(view, spec) if spec is not None else None


def _fix_clock(view: HostView, rid: str, failures: int) -> tuple[str, dict[str, Any]] | None:
    m = _NTP.search(_report(view, "time"))
    if m is None:
        return None
    return _ensure_spec(
        view, {"kind": "service", "name": m.group(1), "state": "running", "enabled": True}
    )


def _fix_missing(view: HostView, rid: str, failures: int) -> tuple[str, dict[str, Any]] | None:
    m = _UNIT.search(view.failures.get(rid, ""))
    return _ensure_spec(view, {"kind": "package", "name": m.group(1)}) if m else None


# failure class → reads the diagnose report (and the failure's own text) for the fix
_FIXERS: dict[str, Fixer] = {
    "DISK_FULL": _fix_disk,
    "REBOOT_PENDING": _fix_reboot,
    "PM_LOCKED": _fix_lock,
    "REPO_UNREACHABLE": _fix_repo,
    "PORT_IN_USE": _fix_port,
    "CONFIG_INVALID": _fix_config,
    "DNS_MISCONFIGURED": _fix_dns,
    "CLOCK_SKEW": _fix_clock,
    "MISSING_DEPENDENCY": _fix_missing,
}


def _fix_from(
    view: HostView, rid: str, code: str, failures: int
) -> tuple[str, dict[str, Any]] | None:
    """The fix what diagnose printed points at, or None. A pending reboot the report shows
    comes first, whatever the failure."""
    fixer = _FIXERS.get(code)
    found = fixer(view, rid, failures) if fixer is not None else None
    return found or _fix_reboot(view, rid, failures)


def _after(history: list[dict[str, Any]], rid: str) -> list[dict[str, Any]]:
    """The host's tasks since the resource's last failed ensure."""
    for i in range(len(history) - 1, -1, -1):
        if history[i].get("resource") == rid and history[i].get("status") == "failed":
            return history[i + 1 :]
    return []


def _for_failed(view: HostView, res: dict[str, Any], check: bool) -> dict[str, str] | None:
    """Diagnose, then act on what diagnose printed, then ensure again; give up (None) when
    the fix is unknown, failed, or the resource keeps failing."""
    rid, code = res["resource"], res.get("error_code", "")
    host = view.host["host_id"]
    since = _after(view.history, rid)
    # distinct tasks: the history lists an engine-retried task once per attempt
    failures = len(
        {
            t.get("step")
            for t in view.history
            if t.get("resource") == rid and t.get("status") == "failed"
        }
    )
    if code in ("REFUSED", "NOT_CONVERGED", "PACKAGE_NOT_FOUND") or failures >= _MAX_FAILURES:
        return None
    if any(t.get("resource") == rid for t in since):
        return None  # tried again after a fix already, and it is still failed
    looked = any(t.get("action", "").endswith(".diagnose") for t in since)
    if not looked:
        return _task(
            host,
            f"{view.host['os']}.diagnose",
            _diagnose_params(view, rid, code),
            f"{rid} failed with {code}: look before acting",
        )
    acted = [t for t in since if not t.get("action", "").endswith((".diagnose", ".discover"))]
    if acted:
        if acted[-1].get("status") != "succeeded":
            return None  # the fix did not go through: the resource stays failed
        return _ensure(view, rid, check, f"{code} was fixed: ensure again")
    fix = _fix_from(view, rid, code, failures)
    if fix is None:
        if code == "PM_LOCKED":
            return _ensure(view, rid, check, "the lock holder may be done: retry")
        return None  # diagnose showed nothing this model knows how to fix
    action, params = fix
    return _task(host, action, params, f"{rid} failed with {code}: the fix diagnose points at")


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
    if any(r.get("restart") for r in view.resources):
        return _task(host["host_id"], f"{host['os']}.reboot", {}, "a change waits for a restart")
    return None


def answer(request: LLMRequest) -> dict[str, Any]:
    hosts, check = read_prompt(request.messages[0].text)
    tasks = [t for v in hosts.values() if (t := _for_host(v, check)) is not None]
    if tasks:
        return {"tasks": tasks, "done": False, "note": f"{len(tasks)} task(s)"}
    failed = sorted(
        f"{h}:{r['resource']} ({r.get('error_code', 'failed')})"
        for h, v in hosts.items()
        for r in v.resources
        if r["status"] == "failed"
    )
    note = "nothing more can usefully be done" + (
        f"; cannot fix {', '.join(failed[:5])}" if failed else ""
    )
    return {"tasks": [], "done": True, "note": note[:300]}


def client() -> ScriptedClient:
    """The scripted model as an `LLMClient` (answers are synthetic)."""
    return ScriptedClient(answer, provider="scripted", model="scripted-desired")
