"""`linux.ensure_<kind>` on a real host: read the resource back, converge it with its kind's
fixed script (`linux_scripts`), read it back again.

The same contract as the sim world (`reaper.agents.transports.sim_ensure`):

    SUCCESS  {"resource": "KIND/NAME", "result": "changed" | "unchanged" | "would_change",
              "before": props | None, "after": props | None, "reboot_required": False}
    ERROR    {"resource", "before"}, `error_code` a class of `reaper.actions.FAILURE_CLASSES`
             (or COMMAND_FAILED, UNSUPPORTED), the tool's own output in `stderr_tail`.

Nothing runs when the diff says the resource is as declared; check mode only reads. Values
travel as arguments (file content on stdin), each checked first for a shape the tools take
as a value and never as an option (`argument_problem`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from reaper.actions import FAILURE_CLASSES, ensure_action, get_action
from reaper.agents.base import ActionOutcome, Command, CommandResult, CommandRunner
from reaper.agents.oscode import posix
from reaper.agents.oscode.linux_failures import classify
from reaper.agents.oscode.linux_observe import OBSERVE_SCRIPT, observe_args, parse_observed
from reaper.agents.oscode.linux_scripts import SCRIPTS, UNAVAILABLE
from reaper.desired.base import ResourceBase
from reaper.desired.compare import content_digest, merged_groups
from reaper.desired.diff import ResourceDiff, desired_properties, diff_resource, reported_fields
from reaper.desired.identity import parse_ref
from reaper.desired.system import (
    DnsClient,
    File,
    Firewall,
    PackageRepository,
)
from reaper.desired.template import TemplateProblem, render_template
from reaper.errors import ConfigError
from reaper.models import ResultStatus

__all__ = ["FactsLoader", "argument_problem", "ensure", "observe", "script_args"]

FactsLoader = Callable[[], Awaitable[dict[str, Any]]]
Props = dict[str, Any] | None

_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._:~-]*")
_SERVICE = re.compile(r"[A-Za-z0-9@_][A-Za-z0-9@._:-]*")
_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?|[0-9]+")
_WORD = re.compile(r"[^\s\[\]#]+")
_RULE_NAME = re.compile(r"[A-Za-z0-9._:/-]+")
_DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_SYSCTL = re.compile(r"[a-z0-9_-]+(\.[A-Za-z0-9_*-]+)+")
_EXIT_CODES = {78: "CONFIG_INVALID", 75: "REPO_UNREACHABLE", 5: "MISSING_DEPENDENCY"}


def _bad(what: str, value: str | None, shape: re.Pattern[str]) -> str | None:
    if value is None or (shape.fullmatch(value) and value not in (".", "..")):
        return None
    return f"{what} {value!r}: not a plain name the tools would take as a value"


def _checks(resource: ResourceBase) -> list[tuple[str, str | None, re.Pattern[str]]]:
    r: Any = resource
    kind = resource.kind
    if kind == "package":
        return [("name", r.name, _PACKAGE), ("version", r.version, _PACKAGE)]
    if kind == "service":
        return [("name", r.name, _SERVICE)]
    if kind == "user":
        return [("name", r.name, _ACCOUNT), *(("group", g, _ACCOUNT) for g in r.groups)]
    if kind == "group":
        return [("name", r.name, _ACCOUNT)]
    if kind == "firewall":
        return [("name", resource.rid.name, _RULE_NAME)]
    if kind == "dns_client":
        return [("search", d, _DOMAIN) for d in r.search]
    if kind == "package_repository":
        words = [("url", r.url), ("suite", r.suite), ("key_url", r.key_url)]
        words += [("component", c) for c in r.components]
        return [(what, value, _WORD) for what, value in words]
    if kind in ("file", "directory"):
        return [("owner", r.owner, _ACCOUNT), ("group", r.group, _ACCOUNT)]
    return []


def _text_problem(resource: ResourceBase) -> str | None:
    r: Any = resource
    kind = resource.kind
    if kind in ("file", "directory") and ("\n" in r.path or r.path.rstrip("/") == ""):
        return f"path {r.path!r}: not a path Reaper writes"
    for field in ("shell", "home") if kind == "user" else ():
        value = getattr(r, field)
        if value is not None and (not value.startswith("/") or "\n" in value):
            return f"{field} {value!r}: must be an absolute path"
    if kind in ("setting", "sshd_option") and ("\n" in r.value or not r.value.strip()):
        return "value: one non-empty line"
    if kind == "setting" and not _SYSCTL.fullmatch(r.name):
        return f"name {r.name!r}: a sysctl key like net.ipv4.ip_forward"
    return None


def argument_problem(resource: ResourceBase) -> str | None:
    """Why a value of `resource` cannot be handed to the Linux tools as an argument."""
    problem = _text_problem(resource)
    if problem is not None:
        return problem
    return next((p for c in _checks(resource) if (p := _bad(*c)) is not None), None)


def _flag(value: bool | None) -> str:
    return "" if value is None else ("1" if value else "0")


def _nft_words(rule: Firewall) -> list[str]:
    words: list[str] = []
    if rule.source and rule.source != "any":
        words += ["ip6" if ":" in rule.source else "ip", "saddr", rule.source]
    if rule.proto in ("tcp", "udp"):
        words += [rule.proto] + (["dport", str(rule.port)] if rule.port is not None else [])
    elif rule.proto == "icmp":
        words += ["meta", "l4proto", "icmp"]
    words.append({"allow": "accept", "deny": "reject", "drop": "drop"}[rule.action])
    return words


def _apt_source(repo: PackageRepository) -> str:
    key = "@KEYRING@"  # the script puts the key file's path (.asc or .gpg) here
    line = " ".join(["deb", repo.url, repo.suite or "", *repo.components])
    if repo.key_url:
        line = line.replace("deb ", f"deb [signed-by={key}] ", 1)
    return (
        f"# reaper: package_repository/{repo.name} key_url={repo.key_url or ''}\n"
        + (line if repo.enabled else f"# {line}")
        + "\n"
    )


def _dnf_repo(repo: PackageRepository) -> str:
    lines = [f"[{repo.name}]", f"name={repo.name}", f"baseurl={repo.url}",
             f"enabled={int(repo.enabled)}", f"gpgcheck={int(repo.gpgcheck)}"]  # fmt: skip
    if repo.key_url:
        lines.append(f"gpgkey={repo.key_url}")
    return "\n".join(lines) + "\n"


def script_args(resource: ResourceBase, before: Props, text: str | None) -> tuple[list[str], str]:
    """The converging script's arguments and stdin (`text`: a file's rendered content)."""
    r: Any = resource
    kind = resource.kind
    if kind == "package":
        return [r.name, r.state, r.version or ""], ""
    if kind == "service":
        return [r.name, r.state, _flag(r.enabled)], ""
    if kind in ("file", "directory"):
        write = text is not None and (
            before is None or before.get("sha256") != content_digest(text)
        )
        args = [r.path, r.state, r.mode or "", r.owner or "", r.group or "", "1" if write else "0"]
        return [*args, kind], (text or "") if write else ""
    if kind == "user":
        groups = ",".join(r.groups)
        uid = "" if r.uid is None else str(r.uid)
        return [r.name, r.state, uid, groups, r.shell or "", r.home or "", _flag(r.enabled)], ""
    if kind == "group":
        return [r.name, r.state, "" if r.gid is None else str(r.gid)], ""
    if kind in ("setting", "sshd_option"):
        return [r.name, r.value], ""
    if kind == "firewall":
        return [resource.rid.name, r.state, *_nft_words(r)], ""
    if kind == "dns_client":
        return [" ".join(r.search), *r.servers], ""
    if kind == "package_repository":
        body = _apt_source(r) if r.format == "apt" else _dnf_repo(r)
        return [r.name, r.format, r.state, r.key_url or ""], body
    raise ValueError(f"no Linux script for {kind}")


async def observe(shell: CommandRunner, resources: list[ResourceBase]) -> dict[str, Props]:
    """The observed properties of each resource, in one round trip."""
    argv = ["sh", "-c", OBSERVE_SCRIPT, "sh"]
    for resource in resources:
        argv += observe_args(resource)
    result = await shell.run(Command(argv=argv, sudo=True))
    return parse_observed(result.stdout, resources)


def _predicted(resource: ResourceBase, before: Props, text: str | None) -> Props:
    """What the resource would show once converged (for a check mode's `after`)."""
    if getattr(resource, "state", None) == "absent":
        return None
    want = desired_properties(resource)
    if text is not None:
        want["content"] = content_digest(text)
    if "content" in want:
        want["sha256"] = want.pop("content")
    out = {**(before or {}), **want}
    if isinstance(resource, DnsClient):
        out["search"] = list(resource.search) or (before or {}).get("search", [])
    if "groups" in want:
        out["groups"] = merged_groups(want["groups"], (before or {}).get("groups"))
    if "state" in reported_fields(resource.kind) and resource.kind != "service":
        out["state"] = "present"
    return out


async def ensure(
    kind: str,
    params: dict[str, Any],
    shell: CommandRunner,
    *,
    host_id: str,
    facts: FactsLoader,
) -> ActionOutcome:
    spec = get_action(ensure_action("linux", kind))
    if spec is None:
        return posix.invalid_params(f"no linux.ensure_{kind}")
    p = posix.load_params(spec.params_model, params)
    if isinstance(p, str):
        return posix.invalid_params(p)
    resource: ResourceBase = getattr(p, "resource")  # noqa: B009  (a created model's field)
    check: bool = getattr(p, "check_mode")  # noqa: B009
    problem = argument_problem(resource)
    if problem is not None:
        return posix.invalid_params(f"{resource.rid}: {problem}")
    rid = str(resource.rid)
    before = (await observe(shell, [resource]))[rid]
    rendered = await _content(resource, facts)
    if isinstance(rendered, str):
        return _failed(rid, before, "CONFIG_INVALID", rendered, "")
    text, host_facts = rendered
    try:
        wanted = diff_resource(resource.rid.on(host_id), resource, before, facts=host_facts)
    except ConfigError as exc:
        return _failed(rid, before, "CONFIG_INVALID", str(exc), "")
    if wanted.action == "ok":
        return _done(rid, "unchanged", before, before, f"{rid} is already as declared")
    detail = ", ".join(str(c) for c in wanted.changes) or wanted.action
    if check:
        after = _predicted(resource, before, text)
        return _done(rid, "would_change", before, after, f"{rid} would change: {detail}")
    argv, stdin = script_args(resource, before, text)
    timeout = spec.timeout_s - 5.0
    command = Command(
        argv=["sh", "-c", SCRIPTS[kind], "sh", *argv], stdin=stdin, sudo=True, timeout_s=timeout
    )
    result = await shell.run(command)
    if result.exit_code != 0:
        return _from_result(kind, rid, before, result)
    after = (await observe(shell, [resource]))[rid]
    notes = [] if not isinstance(resource, File) else await _notify(shell, resource, host_id)
    again = diff_resource(resource.rid.on(host_id), resource, after, facts=host_facts)
    if again.action != "ok":
        return _still_differs(kind, rid, before, again, result)
    out = posix.tail("\n".join([result.stdout.strip(), *notes]).strip())
    return _done(rid, "changed", before, after, f"{rid} changed: {detail}", out)


async def _content(
    resource: ResourceBase, facts: FactsLoader
) -> tuple[str | None, dict[str, Any]] | str:
    """A file's text (its template rendered over the host's facts) and those facts, or why
    the template does not render."""
    if not isinstance(resource, File):
        return None, {}
    if resource.template is None:
        return resource.content, {}
    host_facts = await facts()
    try:
        return render_template(resource.template, host_facts), host_facts
    except TemplateProblem as exc:
        return f"template: {exc}"


def _still_differs(
    kind: str, rid: str, before: Props, again: ResourceDiff, result: CommandResult
) -> ActionOutcome:
    still = ", ".join(str(c) for c in again.changes) or again.action
    if kind == "sshd_option":  # sshd takes a directive's first value
        still += " (an earlier line of /etc/ssh/sshd_config, such as the baseline's block, wins)"
    output = result.stdout + result.stderr
    return _failed(rid, before, "COMMAND_FAILED", f"{rid} still differs: {still}", output)


async def _notify(shell: CommandRunner, resource: File, host_id: str) -> list[str]:
    """Restart the running services the changed file notifies (on this host)."""
    names = [
        ref.name
        for text in resource.notify
        if (ref := parse_ref(text, host=host_id)).host == host_id and _SERVICE.fullmatch(ref.name)
    ]
    notes: list[str] = []
    for name in names:
        argv = ["sh", "-c", SCRIPTS["service"], "sh", name, "restarted", ""]
        done = await shell.run(Command(argv=argv, sudo=True, timeout_s=120.0))
        notes.append(f"restart {name}: exit {done.exit_code}")
    return notes


def _from_result(kind: str, rid: str, before: Props, result: CommandResult) -> ActionOutcome:
    sections = posix.split_sections(result.stdout)
    step = sections.get("install", sections.get("update", result.stdout))
    output = "\n".join(t for t in (step.strip(), result.stderr.strip()) if t)
    if result.exit_code == UNAVAILABLE:
        code = "UNSUPPORTED"
    else:
        update = sections.get("update", "")
        code = _EXIT_CODES.get(result.exit_code) or classify(kind, output, update=update)
    return _failed(rid, before, code, "", output, exit_code=result.exit_code)


def _done(
    rid: str, result: str, before: Props, after: Props, summary: str, stdout: str = ""
) -> ActionOutcome:
    return ActionOutcome(
        status=ResultStatus.SUCCESS,
        summary=summary[:300],
        data={
            "resource": rid,
            "result": result,
            "before": before,
            "after": after,
            "reboot_required": False,
        },
        stdout_tail=stdout or summary,
    )


def _failed(
    rid: str, before: Props, code: str, summary: str, output: str, *, exit_code: int | None = None
) -> ActionOutcome:
    lines = output.strip().splitlines()
    first = next((ln for ln in reversed(lines) if ln.startswith(("E:", "Error"))), None)
    first = first or (lines[-1] if lines else code)
    how = f" (exit {exit_code})" if exit_code is not None else ""
    return ActionOutcome(
        status=ResultStatus.ERROR,
        summary=(summary or f"{rid}: {code}{how}: {first}")[:300],
        data={"resource": rid, "before": before},
        stderr_tail=posix.tail(output or summary),
        error_code=code,
        retriable=FAILURE_CLASSES.get(code, (False, ""))[0],
    )
