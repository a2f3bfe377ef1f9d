"""`macos.ensure_<kind>` over SSH: read the resource back, converge it with its kind's fixed
script (`macos_scripts`), read it back again.

The result contract is Linux's (`linux_ensure`, and the sim world's): changed / unchanged /
would_change with before and after, failures classed by `macos_failures` into
`reaper.actions.FAILURE_CLASSES`. Nothing runs when the diff says the resource is as declared;
check mode only reads.
"""

from __future__ import annotations

from typing import Any

from reaper.agents.base import ActionOutcome, Command, CommandResult, CommandRunner
from reaper.agents.oscode import posix
from reaper.agents.oscode.linux_ensure import (
    FactsLoader,
    _done,
    _failed,
    decide,
    load_ensure,
    render_content,
)
from reaper.agents.oscode.macos_args import argument_problem, script_args
from reaper.agents.oscode.macos_failures import classify
from reaper.agents.oscode.macos_observe import OBSERVE_SCRIPT, observe_args, parse_observed
from reaper.agents.oscode.macos_scripts import SCRIPTS, UNAVAILABLE
from reaper.agents.oscode.readable import observe_argv
from reaper.desired.base import ResourceBase
from reaper.desired.diff import diff_resource

__all__ = ["ensure", "observe"]

Props = dict[str, Any] | None

_EXIT_CODES = {78: "CONFIG_INVALID", 66: "MISSING_DEPENDENCY", UNAVAILABLE: "UNSUPPORTED"}


async def observe(shell: CommandRunner, resources: list[ResourceBase]) -> dict[str, Props]:
    """The observed properties of each resource, in one round trip."""
    argv = observe_argv(OBSERVE_SCRIPT, resources, observe_args)
    result = await shell.run(Command(argv=argv, sudo=True))
    return parse_observed(result.stdout, resources)


async def ensure(
    kind: str, params: dict[str, Any], shell: CommandRunner, *, host_id: str, facts: FactsLoader
) -> ActionOutcome:
    loaded = load_ensure("macos", kind, params, argument_problem)
    if isinstance(loaded, ActionOutcome):
        return loaded
    spec, resource, check = loaded
    rid = str(resource.rid)
    before = (await observe(shell, [resource]))[rid]
    rendered = await render_content(resource, facts)
    if isinstance(rendered, str):
        return _failed(rid, before, "CONFIG_INVALID", rendered, "")
    text, host_facts = rendered
    detail = decide(resource, before, host_id=host_id, check=check, text=text, facts=host_facts)
    if isinstance(detail, ActionOutcome):
        return detail
    args, stdin = script_args(resource, before, text)
    argv = ["sh", "-c", SCRIPTS[kind], "sh", *args]
    command = Command(argv=argv, stdin=stdin, sudo=True, timeout_s=spec.timeout_s - 5.0)
    result = await shell.run(command)
    if result.exit_code != 0:
        return _from_result(kind, rid, before, result)
    after = (await observe(shell, [resource]))[rid]
    again = diff_resource(resource.rid.on(host_id), resource, after, facts=host_facts)
    if again.action != "ok":
        still = ", ".join(str(c) for c in again.changes) or again.action
        output = result.stdout + result.stderr
        return _failed(rid, before, "COMMAND_FAILED", f"{rid} still differs: {still}", output)
    out = posix.tail(result.stdout.strip())
    return _done(rid, "changed", before, after, f"{rid} changed: {detail}", out)


def _from_result(kind: str, rid: str, before: Props, result: CommandResult) -> ActionOutcome:
    sections = posix.split_sections(result.stdout)
    step = sections.get("install", result.stdout)
    output = "\n".join(t for t in (step.strip(), result.stderr.strip()) if t)
    code = _EXIT_CODES.get(result.exit_code)
    if code is None:
        code = classify(kind, output)
        if code == "COMMAND_FAILED":
            code = posix.classify_failure(result)  # sudo or a tool refusing a non-root user
    return _failed(rid, before, code, "", output, exit_code=result.exit_code)
