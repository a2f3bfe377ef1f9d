"""Discover's declared resources on a Windows host: every one read in one round trip.

The declared resources (as JSON, from `DiscoverParams.resources`) are parsed like the lab's
own; those Windows tools cannot take (`windows_ensure.argument_problem`) are reported in
`resource_problems` by index instead of being read. The rest travel as data blocks to the
joined readers of `windows_observe`, whose answer maps `KIND/NAME` to the properties
`reaper.desired.diff` compares (None: it does not exist).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from reaper.agents.base import ActionOutcome, Command, CommandRunner
from reaper.agents.oscode.readable import readable_resources
from reaper.agents.oscode.windows_ensure import (
    EnsureOutput,
    argument_problem,
    data_block,
    stdin_payload,
)
from reaper.agents.oscode.windows_observe import observe_script
from reaper.desired.base import ResourceBase
from reaper.models import ResultStatus

__all__ = ["ObserveOutput", "observe_declared", "parse_observed"]


class ObserveOutput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    resources: dict[str, dict[str, Any] | None] = {}
    errors: dict[str, str] = {}


def parse_observed(stdout: str, resources: list[ResourceBase]) -> dict[str, Any] | str:
    """{"resources": {KIND/NAME: props | None}, "resource_errors": {...}} from the script's
    JSON, or why it is not the expected document."""
    try:
        parsed = ObserveOutput.model_validate(json.loads(stdout or "{}"))
    except (json.JSONDecodeError, ValidationError) as exc:
        return f"observe returned unusable output: {type(exc).__name__}"
    out: dict[str, Any] = {"resources": {}}
    errors: dict[str, str] = {}
    for i, resource in enumerate(resources):
        props = parsed.resources.get(f"r{i}")
        # The same normalisation as an ensure's before/after (one-element arrays).
        out["resources"][str(resource.rid)] = EnsureOutput(before=props).before
        if f"r{i}" in parsed.errors:
            errors[str(resource.rid)] = parsed.errors[f"r{i}"][:300]
    if errors:
        out["resource_errors"] = errors
    return out


async def observe_declared(
    shell: CommandRunner, items: list[dict[str, Any]], timeout_s: float
) -> dict[str, Any] | ActionOutcome:
    resources, problems = readable_resources(items, argument_problem)
    out: dict[str, Any] = {"resources": {}}
    if resources:
        blocks = [{"kind": r.kind, "r": data_block(r)} for r in resources]
        script = observe_script(r.kind for r in resources)
        stdin = stdin_payload({"resources": json.dumps(blocks)})
        command = Command(script=script, params={}, stdin=stdin, timeout_s=timeout_s)
        result = await shell.run(command)
        parsed = parse_observed(result.stdout, resources) if result.exit_code == 0 else None
        if not isinstance(parsed, dict):
            why = parsed or f"exit {result.exit_code}"
            return ActionOutcome(
                status=ResultStatus.ERROR,
                summary=f"windows.discover: declared resources: {why}"[:300],
                stderr_tail=result.stderr[-2000:],
                error_code="COMMAND_FAILED",
            )
        out = parsed
    if problems:
        out["resource_problems"] = problems
    return out
