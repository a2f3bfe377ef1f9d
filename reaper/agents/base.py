"""What a worker needs from the code that runs an action on a host.

Two layers plug in separately:
- a `Transport` connects to a host and runs commands (`local`, `ssh`, `winrm`);
- OS action code (`reaper.agents.oscode.<os>`) turns an action into commands and parses their
  output into structured facts, through whatever `CommandRunner` the transport gives it.
An `ActionRunner` is what the worker calls: `OsCodeRunner` joins the two; the `sim` runner
simulates whole hosts at the action level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reaper.models import HostConnection, ResultStatus, Task

__all__ = [
    "ActionOutcome",
    "ActionRunner",
    "Command",
    "CommandResult",
    "CommandRunner",
    "Transport",
    "ensure_done",
]


@dataclass(frozen=True, slots=True)
class Command:
    """A command for a host. `argv` is run without a shell (POSIX); `script` is a PowerShell
    script whose values arrive as `params` (bound as PowerShell parameters, never spliced)."""

    argv: Sequence[str] = ()
    script: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    sudo: bool = False
    stdin: str | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float = 0.0
    logs_ref: str | None = None  # where the transport kept the full output


class CommandRunner(Protocol):
    """A live session on one host."""

    async def run(self, command: Command) -> CommandResult: ...


class Transport(Protocol):
    name: str

    async def session(self, host_id: str, conn: HostConnection) -> CommandRunner:
        """A (reused) session for the host; raises TransportError when it cannot connect."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class ActionOutcome:
    status: ResultStatus
    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    stdout_tail: str = ""
    stderr_tail: str = ""
    error_code: str | None = None
    retriable: bool = False
    logs_ref: str | None = None


def ensure_done(
    rid: str,
    result: str,
    before: Any,
    after: Any,
    summary: str,
    *,
    reboot: bool = False,
    stdout: str = "",
) -> ActionOutcome:
    """A successful ensure as every agent reports it (the engine's `after_ensure` reads it):
    `data = {resource, result: changed | unchanged | would_change, before, after,
    reboot_required}`."""
    return ActionOutcome(
        status=ResultStatus.SUCCESS,
        summary=summary[:300],
        data={
            "resource": rid,
            "result": result,
            "before": before,
            "after": after,
            "reboot_required": reboot,
        },
        stdout_tail=stdout or summary,
    )


class ActionRunner(Protocol):
    async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
        """Run one task; host failures come back as an error outcome or a TransportError."""
        ...

    async def close(self) -> None: ...
