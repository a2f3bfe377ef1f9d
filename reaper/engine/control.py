"""Operator requests folded into a mission (`MissionControl`): pure, as the rest of the fold.

`reaper cancel` abandons every open task with the reason logged and ends the mission
`cancelled`; `reaper unlock` clears a host's lock and failure count; `reaper resume
--budget-*` sets new LLM budget limits and lifts a halt the old budget caused. The engine folds
a request from the bus like any message; with no engine, `Overseer.control` folds it itself."""

from __future__ import annotations

from datetime import datetime

from reaper.engine.transition import StateView, Transition, make_event
from reaper.models import (
    EventKind,
    MissionControl,
    MissionState,
    MissionStatus,
    TaskStatus,
    replace,
)

__all__ = ["apply_budget", "control_status", "fold_control"]

_HALTED = "planning_halted"
_BUDGET_HALT = "LLM budget exhausted"


def fold_control(view: StateView, c: MissionControl, now: datetime) -> None:
    """An operator's request: cancel (every open task abandoned, with the reason logged),
    unlock a host (its failure count starts again), or new budget limits. A request that no
    longer fits (the mission ended, the host is not locked) changes nothing."""
    tr, state = view.tr, view.state
    if state.status.terminal and c.command != "unlock":
        tr.ignored += 1
        return
    who = {"by": c.by, "note": c.note}
    if c.command == "cancel":
        reason = f"CANCELLED: mission cancelled by {c.by}" + (f" ({c.note})" if c.note else "")
        open_ids = set(state.open_task_ids) | {
            t for t, rec in tr.tasks.items() if not rec.status.done
        }
        for task_id in sorted(open_ids):
            rec = view.task(task_id)
            if rec is None or rec.status.done:
                continue
            tr.tasks[task_id] = replace(
                rec, status=TaskStatus.FAILED, last_error="CANCELLED", not_before=None
            )
            host = view.host(rec.task.host_id)
            if host is not None and host.current_action is not None:
                tr.hosts[host.host_id] = replace(host, current_action=None)
            tr.events.append(
                make_event(
                    state,
                    now,
                    EventKind.TASK_ABANDONED,
                    task_id=task_id,
                    host_id=rec.task.host_id,
                    action=rec.task.action,
                    was=rec.status.value,
                    reason=reason,
                )
            )
        tr.cancel = c
        return
    if c.command == "unlock":
        host = view.host(c.host_id or "")
        if host is None or not host.locked:
            tr.ignored += 1
            return
        tr.hosts[host.host_id] = replace(
            host, locked=False, lock_reason=None, failure_count=0, last_error=None
        )
        tr.unlocked.append(host.host_id)
        tr.events.append(
            make_event(
                state,
                now,
                EventKind.HOST_UNLOCKED,
                host_id=host.host_id,
                was=host.lock_reason,
                failures=host.failure_count,
                **who,
            )
        )
        return
    before = dict(state.settings.get("budget") or {})
    after = {**before, **c.budget}
    tr.budget = after
    tr.events.append(
        make_event(state, now, EventKind.BUDGET_RAISED, before=before, after=after, **who)
    )


def control_status(
    tr: Transition, state: MissionState | None = None
) -> tuple[MissionStatus, str] | None:
    """The status an operator's request sets: `cancelled` after a cancel; `stopped` after an
    unlock on a mission that ended short of its goal (`reaper resume` then plans for the host
    again); else None."""
    if tr.cancel is not None:
        c = tr.cancel
        abandoned = sum(1 for e in tr.events if e.kind is EventKind.TASK_ABANDONED)
        reason = f"cancelled by {c.by}" + (f": {c.note}" if c.note else "")
        if abandoned:
            reason += f"; {abandoned} open task(s) abandoned"
        return MissionStatus.CANCELLED, reason
    ended = (MissionStatus.COMPLETED, MissionStatus.FAILED)
    if tr.unlocked and state is not None and state.status in ended and not state.goal_reached:
        hosts = ", ".join(tr.unlocked)
        return MissionStatus.STOPPED, f"{hosts} unlocked; `reaper resume` plans again"
    return None


def apply_budget(state: MissionState, budget: dict[str, int | float]) -> None:
    """Install new budget limits; a halt the old budget caused is lifted."""
    settings = {**state.settings, "budget": budget}
    if str(settings.get(_HALTED, "")).startswith(_BUDGET_HALT):
        del settings[_HALTED]  # the planner stopped for the budget just raised
    state.settings = settings
