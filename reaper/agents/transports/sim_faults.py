"""The connection-level and command faults of a simulated host (`conn.sim.faults`): which
match a task, and what they raise or return."""

from __future__ import annotations

import random

from reaper.agents.base import ActionOutcome
from reaper.agents.transports.sim_stage import error
from reaper.errors import TransportError
from reaper.models import SimFault, Task

__all__ = ["check_faults", "matches"]


def matches(fault: SimFault, action: str, verb: str) -> bool:
    return fault.action in ("*", verb, action)


def _fires(fault: SimFault, pos: int, fired: dict[int, int]) -> bool:
    """A counted fault fires on the host's first `times` matching tasks (always without)."""
    count = fired.get(pos, 0)
    if fault.times is not None and count >= fault.times:
        return False
    fired[pos] = count + 1
    return True


def check_faults(
    faults: list[tuple[int, SimFault]],
    task: Task,
    host_id: str,
    index: int,
    rng: random.Random,
    fired: dict[int, int],
) -> ActionOutcome | None:
    """Raise (connection-level faults) or return an error outcome, or None to proceed.

    `flaky` with `times` fails a task's first attempts (it is retried); `auth_failure`
    and `command_failed` with `times` fail the host's first `times` tasks they match (a
    failed task is not retried, a new task is planned instead)."""
    for pos, fault in faults:
        if fault.kind == "down":
            end = None if fault.for_tasks is None else fault.after + fault.for_tasks
            if index >= fault.after and (end is None or index < end):
                raise TransportError(
                    f"{host_id}: connect: No route to host (simulated)",
                    error_code="HOST_UNREACHABLE",
                    retriable=True,
                )
        elif fault.kind == "auth_failure" and _fires(fault, pos, fired):
            raise TransportError(
                f"{host_id}: authentication failed (simulated)",
                error_code="AUTH_FAILED",
                retriable=False,
            )
        elif fault.kind == "flaky":
            by_count = fault.times is not None and task.attempt <= fault.times
            by_rate = fault.rate is not None and rng.random() < fault.rate
            if by_count or by_rate:
                raise TransportError(
                    f"{host_id}: connection reset by peer (simulated)",
                    error_code="CONNECTION_RESET",
                    retriable=True,
                )
    for pos, fault in faults:
        if fault.kind == "command_failed" and _fires(fault, pos, fired):
            return error(
                "COMMAND_FAILED",
                f"{task.action} failed on {host_id}: exit status 1",
                f"{task.action}: step failed\nerror: command exited with status 1",
                {"exit_code": 1},
            )
    return None
