"""What real OS code answers for the desired-state actions it does not implement yet.

`ensure_*` on real Windows hosts is later work (issue 15; Linux and macOS hosts have theirs in
`oscode.linux_ensure` and `oscode.macos_ensure`); until then each answers UNSUPPORTED with a
clear reason instead of failing obscurely, so a planner sees a refusal it can report
(simulated hosts implement them: `transports.sim_world`).
"""

from __future__ import annotations

from reaper.agents.base import ActionOutcome
from reaper.models import ResultStatus

__all__ = ["is_pending", "pending_outcome"]


def is_pending(verb: str) -> bool:
    return verb.startswith("ensure_")


def pending_outcome(os: str, verb: str) -> ActionOutcome:
    return ActionOutcome(
        status=ResultStatus.ERROR,
        summary=f"{os}.{verb} is not implemented on real {os} hosts yet",
        stderr_tail=f"reaper: {os}.{verb}: desired-state actions run on simulated hosts only "
        "for now",
        error_code="UNSUPPORTED",
    )
