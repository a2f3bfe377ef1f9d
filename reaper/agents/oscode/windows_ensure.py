"""`windows.ensure_<kind>` on a real host over WinRM: one PowerShell script per kind
(`windows_ensure_scripts`) reads the resource, changes only what differs, reads it again.

The result contract is Linux's and the sim world's (`oscode.linux_ensure`,
`transports.sim_ensure`):

    SUCCESS  {"resource": "KIND/NAME", "result": "changed" | "unchanged" | "would_change",
              "before": props | None, "after": props | None, "reboot_required": bool}
    ERROR    {"resource", "before"}, `error_code` a class of `reaper.actions.FAILURE_CLASSES`
             (or COMMAND_FAILED, UNSUPPORTED, INVALID_PARAMS, CREDENTIALS_MISSING).

A feature install, a DC promotion or a domain join that needs a restart is a SUCCESS with
`reboot_required: true`, and so is a second ensure before that restart: the host reads the
resource as declared with `restart_pending` (`windows_observe`), nothing runs again, and the
result is `changed` (`would_change` in check mode), not `unchanged`, since the resource is
not converged until the restart. A pending restart that blocks a change is REBOOT_PENDING. The
resource travels as a JSON data block (`data_block`); secrets (`*_env`, resolved here through
`reaper.secrets`, which then masks them in every result and log) and file content travel on
stdin (`stdin_payload`), never on the command line.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from reaper.actions import FAILURE_CLASSES
from reaper.agents.base import (
    ActionOutcome,
    Command,
    CommandResult,
    CommandRunner,
    ensure_done,
)
from reaper.agents.oscode.linux_ensure import FactsLoader, load_ensure, render_content
from reaper.agents.oscode.windows_ensure_scripts import SCRIPTS
from reaper.agents.oscode.windows_failures import classify
from reaper.desired.base import ResourceBase
from reaper.desired.compare import content_digest, merged_groups
from reaper.desired.diff import desired_properties, diff_resource, only_password
from reaper.desired.kinds import os_problem
from reaper.desired.system import File
from reaper.errors import ConfigError
from reaper.models import ResultStatus
from reaper.secrets import secret_lookup

__all__ = [
    "EnsureOutput",
    "FactsLoader",
    "argument_problem",
    "data_block",
    "ensure",
    "parse_output",
    "stdin_payload",
]

Props = dict[str, Any] | None
_TAIL = 2000

# Names handed to cmdlets whose -Name takes wildcards, or to choco.exe as an argument: no
# wildcard characters, and nothing a native tool would read as an option.
_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_SERVICE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@$-]*")
_ACCOUNT = re.compile(r"[^\s*?\[\]`\"/\\:;|=,+<>@]+( [^\s*?\[\]`\"/\\:;|=,+<>@]+)*")
_RULE = re.compile(r"[A-Za-z0-9._:/-]+")
_HIVES = {
    "HKLM": "HKEY_LOCAL_MACHINE",
    "HKCU": "HKEY_CURRENT_USER",
    "HKCR": "HKEY_CLASSES_ROOT",
    "HKU": "HKEY_USERS",
    "HKCC": "HKEY_CURRENT_CONFIG",
}
# kind → (the `*_env` field, the stdin name the script reads it by).
_SECRETS: dict[str, tuple[str, str]] = {
    "user": ("password_env", "password"),
    "ad_user": ("password_env", "password"),
    "ad_domain": ("safe_mode_password_env", "safe_mode_password"),
    "domain_membership": ("credentials_env", "password"),
}


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ErrorRecord(_Out):
    id: str = ""
    type: str = ""
    message: str = ""


class EnsureOutput(_Out):
    """The JSON an ensure script prints."""

    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    changed: bool = False
    reboot_required: bool = False
    error: ErrorRecord | None = None

    @field_validator("before", "after")
    @classmethod
    def _lists_stay_lists(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # Windows PowerShell writes a one-element array as the element.
        if value is not None:
            for key in ("groups", "servers", "search"):
                if isinstance(value.get(key), str):
                    value[key] = [value[key]]
        return value


def parse_output(stdout: str) -> EnsureOutput | str:
    """The script's JSON, or why it is not the expected document."""
    try:
        return EnsureOutput.model_validate(json.loads(stdout))
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at char {exc.pos})"
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"unexpected JSON: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def _bad(what: str, value: str | None, shape: re.Pattern[str]) -> str | None:
    if value is None or shape.fullmatch(value):
        return None
    return f"{what} {value!r}: not a plain name Windows tools take as a value"


def argument_problem(resource: ResourceBase) -> str | None:
    """Why `resource` cannot be handed to the Windows tools (None: it can)."""
    problem = os_problem(resource, "windows")
    if problem is not None:
        return problem
    r: Any = resource
    checks: list[tuple[str, str | None, re.Pattern[str]]] = []
    if resource.kind == "package":
        checks = [("name", r.name, _PACKAGE), ("version", r.version, _PACKAGE)]
    elif resource.kind == "service":
        checks = [("name", r.name, _SERVICE)]
    elif resource.kind in ("user", "group", "ad_user", "ad_group"):
        checks = [("name", r.name, _ACCOUNT)]
        checks += [("group", g, _ACCOUNT) for g in getattr(r, "groups", ())]
    elif resource.kind == "firewall":
        checks = [("name", resource.rid.name, _RULE)]
    elif resource.kind in ("file", "directory") and r.owner is not None:
        checks = [("owner", r.owner.split("\\")[-1], _ACCOUNT)]
    elif resource.kind == "dns_client" and r.servers_from:
        return "servers_from: not resolved on Windows hosts yet; declare servers"
    return next((p for c in checks if (p := _bad(*c)) is not None), None)


def _registry(name: str) -> tuple[str, str]:
    """`HKLM\\SOFTWARE\\Vendor\\Value` → (the key as a Registry:: path, the value's name)."""
    hive, _, rest = name.partition("\\")
    hive = _HIVES.get(hive.rstrip(":").upper(), hive.rstrip(":").upper())
    key, _, value = rest.rpartition("\\")
    return f"Registry::{hive}\\{key}", value


def data_block(resource: ResourceBase, text: str | None = None) -> dict[str, Any]:
    """`$R`: the resource as its script reads it (a file's content only as its digest)."""
    block = resource.model_dump(mode="json", exclude={"content", "template", "after", "notify"})
    block = {k: v for k, v in block.items() if not k.endswith("_env")}
    if isinstance(resource, File) and text is not None:
        block["content_sha256"] = content_digest(text)
    if resource.kind == "setting":
        block["key"], block["value_name"] = _registry(resource.rid.name)
    if resource.kind == "firewall":
        block["rule_name"] = f"reaper-{resource.rid.name}"
    if resource.kind in _SECRETS:
        block["has_password"] = getattr(resource, _SECRETS[resource.kind][0]) is not None
    return block


def stdin_payload(values: dict[str, str]) -> str:
    """`name=base64(UTF-8 value)` lines: ASCII whatever the values hold."""
    encoded = {k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in values.items()}
    return "".join(f"{k}={v}\n" for k, v in encoded.items())


def _secrets(resource: ResourceBase) -> dict[str, str] | str:
    """The resource's secrets by stdin name, or the one-line reason one is missing."""
    if resource.kind not in _SECRETS:
        return {}
    field, name = _SECRETS[resource.kind]
    ref = getattr(resource, field)
    if ref is None:
        return {}
    lookup = secret_lookup()  # remembers the value: redaction masks it from here on
    value = lookup.get(ref)
    if value is None:
        return f"{field}: variable {ref} is not set on this worker"
    return {name: value}


def _predicted(resource: ResourceBase, before: Props, text: str | None) -> Props:
    """What the resource shows once converged (a check's, or a pending restart's, `after`)."""
    if getattr(resource, "state", None) == "absent":
        return None
    want = desired_properties(resource)
    if text is not None:
        want.pop("content", None)
        want["sha256"] = content_digest(text)
    out = {**(before or {}), **want}
    if "groups" in want:
        out["groups"] = merged_groups(want["groups"], (before or {}).get("groups"))
    if "state" in out or getattr(resource, "state", None) == "present":
        out["state"] = "present" if resource.kind != "service" else out.get("state")
    return out


async def ensure(
    kind: str, params: dict[str, Any], shell: CommandRunner, *, host_id: str, facts: FactsLoader
) -> ActionOutcome:
    if kind not in SCRIPTS:
        return _refused("UNSUPPORTED", f"no windows.ensure_{kind}")
    loaded = load_ensure("windows", kind, params, argument_problem)
    if isinstance(loaded, ActionOutcome):
        return loaded
    spec, resource, check = loaded
    rid = str(resource.rid)
    secrets = _secrets(resource)
    if isinstance(secrets, str):
        return _refused("CREDENTIALS_MISSING", f"{rid}: {secrets}")
    rendered = await render_content(resource, facts)
    if isinstance(rendered, str):
        return _failed(rid, None, "CONFIG_INVALID", f"{rid}: {rendered}", "")
    text, host_facts = rendered
    stdin = {**secrets, **({"content": text} if text is not None else {})}
    command = Command(
        script=SCRIPTS[kind],
        params={"R": data_block(resource, text), "CheckMode": check},
        stdin=stdin_payload(stdin) if stdin else None,
        timeout_s=spec.timeout_s - 5.0,
    )
    result = await shell.run(command)
    return _outcome(kind, resource, check, result, text, host_facts, host_id)


def _outcome(
    kind: str,
    resource: ResourceBase,
    check: bool,
    result: CommandResult,
    text: str | None,
    host_facts: dict[str, Any],
    host_id: str,
) -> ActionOutcome:
    rid = str(resource.rid)
    out = parse_output(result.stdout) if result.exit_code == 0 else None
    if not isinstance(out, EnsureOutput):
        why = out or f"exit {result.exit_code}"
        code = classify(kind, "", "", result.stderr) if result.stderr else "COMMAND_FAILED"
        return _failed(rid, None, code, f"{rid}: ensure script: {why}", result.stderr)
    if out.error is not None:
        e = out.error
        code = classify(kind, e.id, e.type, e.message)
        detail = f"{e.id}: {e.message}".strip(": ")
        return _failed(rid, out.before, code, f"{rid}: {code}: {e.message}"[:300], detail)
    ref = resource.rid.on(host_id)
    try:
        wanted = diff_resource(ref, resource, out.before, facts=host_facts)
    except ConfigError as exc:
        return _failed(rid, out.before, "CONFIG_INVALID", str(exc), "")
    detail = ", ".join(str(c) for c in wanted.changes) or wanted.action
    if wanted.action == "ok" and not out.changed and _restart_pending(out.before):
        # Done by an earlier run, completed by a restart that has not happened: not run
        # again, and not converged either until the host restarts (the planner reboots it).
        out = out.model_copy(update={"reboot_required": True})
        label = "would_change" if check else "changed"
        why = f"{rid} is done and waits for a restart (not run again)"
        return _done(rid, label, out, out.before, why)
    if wanted.action == "ok" and not out.changed:
        return _done(rid, "unchanged", out, out.before, f"{rid} is already as declared")
    if check:
        after = _predicted(resource, out.before, text)
        return _done(rid, "would_change", out, after, f"{rid} would change: {detail}")
    again = diff_resource(ref, resource, out.after, facts=host_facts)
    if again.action == "ok" or only_password(again):  # a password set is not read back
        return _done(rid, "changed", out, out.after, f"{rid} changed: {detail}")
    if out.reboot_required:  # the change completes at the restart (a join, a promotion)
        after = _predicted(resource, out.before, text)
        return _done(rid, "changed", out, after, f"{rid} changed (restart needed): {detail}")
    still = ", ".join(str(c) for c in again.changes) or again.action
    return _failed(rid, out.before, "COMMAND_FAILED", f"{rid} still differs: {still}", "")


def _restart_pending(props: Props) -> bool:
    """Whether the host shows the resource done but completed only at a restart."""
    return props is not None and props.get("restart_pending") is True


def _done(rid: str, label: str, out: EnsureOutput, after: Props, summary: str) -> ActionOutcome:
    reboot = out.reboot_required and label != "unchanged"
    stdout = summary + ("; a restart completes it" if reboot else "")
    return ensure_done(rid, label, out.before, after, summary, reboot=reboot, stdout=stdout)


def _refused(code: str, summary: str) -> ActionOutcome:
    return ActionOutcome(
        status=ResultStatus.ERROR, summary=summary[:300], stderr_tail=summary, error_code=code
    )


def _failed(rid: str, before: Props, code: str, summary: str, output: str) -> ActionOutcome:
    return ActionOutcome(
        status=ResultStatus.ERROR,
        summary=summary[:300],
        data={"resource": rid, "before": before},
        stderr_tail=(output or summary)[-_TAIL:],
        error_code=code,
        retriable=FAILURE_CLASSES.get(code, (False, ""))[0],
    )
