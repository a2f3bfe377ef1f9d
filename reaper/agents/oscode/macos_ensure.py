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
from reaper.agents.oscode.linux_ensure import FactsLoader, PosixTools, _failed, converge
from reaper.agents.oscode.macos_args import argument_problem, script_args
from reaper.agents.oscode.macos_failures import classify
from reaper.agents.oscode.macos_observe import OBSERVE_SCRIPT, observe_args, parse_observed
from reaper.agents.oscode.macos_scripts import SCRIPTS, UNAVAILABLE
from reaper.agents.oscode.readable import observe_argv
from reaper.desired.base import ResourceBase

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
    return await converge(_MACOS, kind, params, shell, host_id=host_id, facts=facts)


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


_MACOS = PosixTools(
    os="macos",
    scripts=SCRIPTS,
    problem_of=argument_problem,
    observe=observe,
    script_args=script_args,
    from_result=_from_result,
    notify=True,
)
