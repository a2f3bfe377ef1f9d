"""`linux.ensure_<kind>` on a real host: read the resource back, converge it with its kind's
fixed script (`linux_scripts`), read it back again.

The same contract as the sim world (`reaper.agents.transports.sim_ensure`):

    SUCCESS  {"resource": "KIND/NAME", "result": "changed" | "unchanged" | "would_change",
              "before": props | None, "after": props | None, "reboot_required": False}
    ERROR    {"resource", "before"}, `error_code` a class of `reaper.actions.FAILURE_CLASSES`
             (or COMMAND_FAILED, UNSUPPORTED), the tool's own output in `stderr_tail`.

Nothing runs when the diff says the resource is as declared; check mode only reads. Values
travel as arguments (file content, and a user's password resolved from its `password_env`,
on stdin), each checked first for a shape the tools take as a value and never as an option
(`linux_args`). A password is set at creation, or on every run with `update_password:
always` (then always a change: it cannot be read back to compare). A file's template is
rendered here, over the host's facts (one more read-only round trip), before its text travels.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reaper.actions import FAILURE_CLASSES, ActionSpec, ensure_action, get_action
from reaper.agents.base import (
    ActionOutcome,
    Command,
    CommandResult,
    CommandRunner,
    ensure_done,
)
from reaper.agents.oscode import posix
from reaper.agents.oscode.linux_args import argument_problem, script_args
from reaper.agents.oscode.linux_failures import classify
from reaper.agents.oscode.linux_observe import OBSERVE_SCRIPT, observe_args, parse_observed
from reaper.agents.oscode.linux_scripts import SCRIPTS, UNAVAILABLE
from reaper.agents.oscode.readable import observe_argv
from reaper.desired.base import ResourceBase
from reaper.desired.compare import content_digest, merged_groups
from reaper.desired.diff import (
    ResourceDiff,
    desired_properties,
    diff_resource,
    only_password,
    reported_fields,
)
from reaper.desired.identity import parse_ref
from reaper.desired.parse import parse_resource
from reaper.desired.system import (
    DnsClient,
    File,
)
from reaper.desired.template import TemplateProblem, render_template
from reaper.errors import ConfigError
from reaper.models import ResultStatus
from reaper.secrets import secret_lookup

__all__ = [
    "FactsLoader",
    "PosixTools",
    "converge",
    "decide",
    "ensure",
    "load_ensure",
    "observe",
    "render_content",
]

FactsLoader = Callable[[], Awaitable[dict[str, Any]]]
Props = dict[str, Any] | None

_EXIT_CODES = {78: "CONFIG_INVALID", 75: "REPO_UNREACHABLE", 5: "MISSING_DEPENDENCY"}


async def observe(shell: CommandRunner, resources: list[ResourceBase]) -> dict[str, Props]:
    """The observed properties of each resource, in one round trip."""
    argv = observe_argv(OBSERVE_SCRIPT, resources, observe_args)
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


@dataclass(frozen=True, slots=True)
class PosixTools:
    """What one POSIX OS brings to `converge`: its scripts, how it reads resources back, its
    argument check and arguments, and how its tools' failures map to failure classes."""

    os: str
    scripts: Mapping[str, str]
    problem_of: Callable[[ResourceBase], str | None]
    observe: Callable[[CommandRunner, list[ResourceBase]], Awaitable[dict[str, Props]]]
    script_args: Callable[[ResourceBase, Props, str | None, str | None], tuple[list[str], str]]
    from_result: Callable[[str, str, Props, CommandResult], ActionOutcome]
    notify: bool = False  # restart the services a changed file notifies
    passwords: bool = False  # set a user's password from its password_env (on stdin)


async def ensure(
    kind: str,
    params: dict[str, Any],
    shell: CommandRunner,
    *,
    host_id: str,
    facts: FactsLoader,
) -> ActionOutcome:
    return await converge(_LINUX, kind, params, shell, host_id=host_id, facts=facts)


async def converge(
    tools: PosixTools,
    kind: str,
    params: dict[str, Any],
    shell: CommandRunner,
    *,
    host_id: str,
    facts: FactsLoader,
) -> ActionOutcome:
    """Read back, diff, run the kind's script when it differs (not in check mode), read back."""
    loaded = load_ensure(tools.os, kind, params, tools.problem_of)
    if isinstance(loaded, ActionOutcome):
        return loaded
    spec, resource, check = loaded
    rid = str(resource.rid)
    password = _password(resource) if tools.passwords else None
    if isinstance(password, ActionOutcome):
        return password
    before = (await tools.observe(shell, [resource]))[rid]
    rendered = await render_content(resource, facts)
    if isinstance(rendered, str):
        return _failed(rid, before, "CONFIG_INVALID", rendered, "")
    text, host_facts = rendered
    detail = decide(resource, before, host_id=host_id, check=check, text=text, facts=host_facts)
    if isinstance(detail, ActionOutcome):
        return detail
    argv, stdin = tools.script_args(resource, before, text, password)
    timeout = spec.timeout_s - 5.0
    script = tools.scripts[kind]
    command = Command(
        argv=["sh", "-c", script, "sh", *argv], stdin=stdin, sudo=True, timeout_s=timeout
    )
    result = await shell.run(command)
    if result.exit_code != 0:
        return tools.from_result(kind, rid, before, result)
    after = (await tools.observe(shell, [resource]))[rid]
    notify = tools.notify and isinstance(resource, File)
    notes = await _notify(tools, shell, resource, host_id) if notify else []
    again = diff_resource(resource.rid.on(host_id), resource, after, facts=host_facts)
    if again.action != "ok" and not only_password(again):  # a password set is not read back
        return _still_differs(kind, rid, before, again, result)
    out = posix.tail("\n".join([result.stdout.strip(), *notes]).strip())
    return ensure_done(rid, "changed", before, after, f"{rid} changed: {detail}", stdout=out)


def _password(resource: ResourceBase) -> str | ActionOutcome | None:
    """A user's password from its `password_env` (None: it declares none), or why it cannot
    be set. Resolved through `reaper.secrets`, which masks it in every result and log."""
    ref = resource.__dict__.get("password_env") if resource.kind == "user" else None
    if ref is None or resource.__dict__.get("state") == "absent":
        return None
    value = secret_lookup().get(ref)
    rid = resource.rid
    if value is None:
        why = f"{rid}: password_env: variable {ref} is not set on this worker"
        return ActionOutcome(
            status=ResultStatus.ERROR,
            summary=why,
            stderr_tail=why,
            error_code="CREDENTIALS_MISSING",
        )
    if "\n" in value or "\r" in value:
        return posix.invalid_params(f"{rid}: password_env: {ref} holds more than one line")
    return value


def load_ensure(
    os: str, kind: str, params: dict[str, Any], problem_of: Callable[[ResourceBase], str | None]
) -> tuple[ActionSpec, ResourceBase, bool] | ActionOutcome:
    """An ensure's catalog entry, its declared resource and check mode, or INVALID_PARAMS
    (unknown action, params that do not validate, a value the tools would misread)."""
    spec = get_action(ensure_action(os, kind))
    if spec is None:
        return posix.invalid_params(f"no {os}.ensure_{kind}")
    p = posix.load_params(spec.params_model, params)
    if isinstance(p, str):
        return posix.invalid_params(p)
    resource: ResourceBase = getattr(p, "resource")  # noqa: B009  (a created model's field)
    check: bool = getattr(p, "check_mode")  # noqa: B009
    problem = problem_of(resource)
    if problem is not None:
        return posix.invalid_params(f"{resource.rid}: {problem}")
    return spec, resource, check


def decide(
    resource: ResourceBase,
    before: Props,
    *,
    host_id: str,
    check: bool,
    text: str | None = None,
    facts: dict[str, Any] | None = None,
) -> ActionOutcome | str:
    """The outcome when nothing must run (already as declared, check mode, a declaration the
    diff refuses), else what the change is, for its summary. Shared by macOS."""
    rid = str(resource.rid)
    try:
        wanted = diff_resource(resource.rid.on(host_id), resource, before, facts=facts)
    except ConfigError as exc:
        return _failed(rid, before, "CONFIG_INVALID", str(exc), "")
    if wanted.action == "ok":
        return ensure_done(rid, "unchanged", before, before, f"{rid} is already as declared")
    detail = ", ".join(str(c) for c in wanted.changes) or wanted.action
    if check:
        after = _predicted(resource, before, text)
        return ensure_done(rid, "would_change", before, after, f"{rid} would change: {detail}")
    return detail


async def render_content(
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


async def _notify(
    tools: PosixTools, shell: CommandRunner, resource: ResourceBase, host_id: str
) -> list[str]:
    """Restart the running services the changed file notifies (on this host), with the OS's
    own service script; a name its argument check refuses is skipped, and said so."""
    notes: list[str] = []
    for text in getattr(resource, "notify", ()):
        ref = parse_ref(text, host=host_id)
        if ref.host != host_id:
            continue
        try:
            service = parse_resource({"kind": "service", "name": ref.name}, "notify")
            problem = tools.problem_of(service)
        except ConfigError as exc:
            problem = str(exc)
        if problem is not None:
            notes.append(f"restart {ref.name}: skipped ({problem})")
            continue
        argv = ["sh", "-c", tools.scripts["service"], "sh", ref.name, "restarted", ""]
        done = await shell.run(Command(argv=argv, sudo=True, timeout_s=120.0))
        notes.append(f"restart {ref.name}: exit {done.exit_code}")
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


def _failed(
    rid: str, before: Props, code: str, summary: str, output: str, *, exit_code: int | None = None
) -> ActionOutcome:
    lines = output.strip().splitlines()
    # apt's "E:", dnf's "Error:"; a held dnf lock has no such line, only "RPMDB already locked
    # by N" and then the holder's details.
    first = next(
        (
            ln
            for ln in reversed(lines)
            if ln.startswith(("E:", "Error")) or "already locked by" in ln
        ),
        None,
    )
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


_LINUX = PosixTools(
    os="linux",
    scripts=SCRIPTS,
    problem_of=argument_problem,
    observe=observe,
    script_args=script_args,
    from_result=_from_result,
    notify=True,
    passwords=True,
)
