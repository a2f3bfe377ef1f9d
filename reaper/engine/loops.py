"""Loop refusal: a planner proposing, a third time, the fix that already failed twice.

A desired-state planner (an LLM above all) can keep answering a failure with the same task:
the same action with the same params on the same host, failing the same way each time. The
engine refuses the third such proposal as a `loop`, records it, and the planner hears of it
through the host's refusals. The engine's own retries of one task (attempts) are not
proposals and never count; only distinct tasks do, read from the host's recent tasks
(`HostState.last_tasks`), so the check costs O(recent tasks) per proposal. Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from reaper.models import HostState, TaskRecord, TaskStatus

__all__ = ["LOOP_LIMIT", "loop_reason"]

# Failed tries of one identical task, with one failure class, before a repeat is refused.
LOOP_LIMIT = 2


def loop_reason(
    host: HostState,
    action: str,
    params: Mapping[str, Any],
    task: Callable[[str], TaskRecord | None],
) -> str | None:
    """Why proposing `action(params)` on `host` again is a loop, or None."""
    failures: Counter[str] = Counter()
    # A task the engine retried is in `last_tasks` once per result: count each task once.
    for task_id in dict.fromkeys(host.last_tasks):
        rec = task(task_id)
        if rec is None or rec.status is not TaskStatus.FAILED:
            continue
        if rec.task.action == action and rec.task.params == params:
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
