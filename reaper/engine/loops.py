"""Loop refusal: a planner proposing, a third time, the fix that already failed twice.

A desired-state planner (an LLM above all) can keep answering a failure with the same task:
the same action with the same params on the same host, failing the same way each time. The
engine refuses the third such proposal as a `loop`, records it, and the planner hears of it
through the host's refusals. The engine's own retries of one task (attempts) are not
proposals and never count; only distinct tasks do, read from the host's recent tasks
(`HostState.last_tasks`), so the check costs O(recent tasks) per proposal. A different
change that succeeded since (the fix: a reboot, a cleanup, a holder stopped) starts the count
again: trying the resource after a new fix is no loop. Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from reaper.actions import Risk, get_action
from reaper.models import HostState, TaskRecord, TaskStatus

__all__ = ["LOOP_LIMIT", "loop_reason"]


def _is_fix(action: str) -> bool:
    spec = get_action(action)
    return spec is not None and spec.risk is not Risk.READ_ONLY


# Failed tries of one identical task, with one failure class, before a repeat is refused.
LOOP_LIMIT = 2


def loop_reason(
    host: HostState,
    action: str,
    params: Mapping[str, Any],
    task: Callable[[str], TaskRecord | None],
) -> str | None:
    """Why proposing `action(params)` on `host` again is a loop, or None."""
    failures: Counter[str] | None = None  # made on the first failure: most hosts have none
    # Newest first; a task the engine retried is in `last_tasks` once per result: count each
    # task once. A different fix that succeeded since (a reboot, a cleanup) makes the next
    # try a new one: only the failures after it count.
    for task_id in reversed(dict.fromkeys(host.last_tasks)):
        rec = task(task_id)
        if rec is None:
            continue
        same = rec.task.action == action and rec.task.params == params
        if rec.status is TaskStatus.SUCCEEDED and not same and _is_fix(rec.task.action):
            break
        if rec.status is not TaskStatus.FAILED:
            continue
        if rec.task.action == action and rec.task.params == params:
            if failures is None:
                failures = Counter()
            failures[rec.last_error or "error"] += 1
    if not failures:
        return None
    code, count = failures.most_common(1)[0]
    if count < LOOP_LIMIT:
        return None
    return (
        f"{action} with these params already failed {count} times with {code} on "
        f"{host.host_id}: a third identical try is a loop; diagnose, try a different fix, "
        "or stop and report the resource"
    )
