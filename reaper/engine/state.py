"""Folding inbound messages into a mission: pure functions, no I/O.

`fold` turns a batch of results, approval decisions and operator requests
(`reaper.engine.control`) into a `Transition` (`reaper.engine.transition`) (the changed hosts
and task records, the events to log, the retries to publish); `reaper.engine.admission.plan` turns a
planner's proposal into task records, refusals and an outbox. Neither mutates the state it is
given; `apply` then
installs a transition into the engine's in-memory state in O(changes), and the store persists
the same transition as rows. A result is applied at most once: it must match a task's current
attempt and the task must still be open, so a redelivered or stale result changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tenacity import RetryCallState, wait_exponential

from reaper.actions import CATALOG, RESOURCE_FAILURES
from reaper.desired.progress import progress, would_change_counts
from reaper.engine.control import apply_budget, control_status, fold_control
from reaper.engine.resources import after_discover, after_ensure, after_recovery
from reaper.engine.transition import StateView, Transition, make_event
from reaper.models import (
    OS_NAMES,
    ApprovalDecision,
    EventKind,
    HostState,
    HostStatus,
    InboundMessage,
    MissionState,
    MissionStatus,
    ResultEvent,
    TaskRecord,
    TaskStatus,
    replace,
)

__all__ = [
    "NOT_HOST_FAULTS",
    "RetrySettings",
    "StateView",
    "Transition",
    "apply",
    "control_status",
    "converge_summary",
    "decide_status",
    "fold",
    "goal_met",
    "goal_progress",
    "make_event",
]

# Failures that say nothing about the host's health: they never count toward its lock.
NOT_HOST_FAULTS = frozenset(
    {
        "AGENT_ERROR",
        "UNKNOWN_ACTION",
        "UNSUPPORTED_TRANSPORT",
        "UNKNOWN_HOST",
        "CANCELLED",
        "INVALID_PARAMS",
        "CONFIG_INVALID",
        "UNSUPPORTED_COMMAND",
        "SCRIPT_TOO_LONG",
        "CREDENTIALS_MISSING",
        "AUTH_UNSUPPORTED",
        "HOST_LOOKUP_FAILED",
    }
)
_LAST_TASKS_KEPT = 10


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retries of retriable failures: delayed re-publishes with exponential backoff."""

    max_attempts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        # tenacity's strategy, evaluated for the attempt that just failed: 1x, 2x, 4x ... capped.
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(wait_exponential(multiplier=self.backoff_s, max=self.backoff_max_s)(state))


def fold(
    state: MissionState,
    messages: Iterable[InboundMessage],
    *,
    now: datetime,
    retry: RetrySettings,
) -> Transition:
    """Fold a batch of inbound messages into a transition. Pure."""
    tr = Transition()
    view = StateView(state, tr)
    for message in messages:
        if isinstance(message, ResultEvent):
            _fold_result(view, message, now, retry)
        elif isinstance(message, ApprovalDecision):
            _fold_approval(view, message, now)
        else:
            fold_control(view, message, now)
    return tr


def _fold_result(view: StateView, r: ResultEvent, now: datetime, retry: RetrySettings) -> None:
    tr, state = view.tr, view.state
    rec = view.task(r.task_id)
    host = view.host(r.host_id)
    if (
        rec is None
        or host is None
        or rec.task.attempt != r.attempt
        or rec.status is not TaskStatus.QUEUED
        or rec.task.host_id != r.host_id
    ):
        tr.ignored += 1  # redelivered, stale or foreign: applied already or never ours
        return
    # The result object itself: serialised only if the store persists it (the memory
    # store never does), which keeps the in-process path from dumping every fact twice.
    tr.events.append(make_event(state, now, EventKind.TASK_RESULT, result=r))
    last_tasks = [*host.last_tasks[-(_LAST_TASKS_KEPT - 1) :], r.task_id]
    if r.ok:
        _fold_success(view, rec, host, r, last_tasks)
        return
    if r.retriable and r.attempt < retry.max_attempts:
        delay = retry.delay(r.attempt)
        nxt = replace(rec.task, attempt=r.attempt + 1)
        due = now + timedelta(seconds=delay)
        tr.tasks[r.task_id] = replace(
            rec, task=nxt, status=TaskStatus.QUEUED, last_error=r.error_code, not_before=due
        )
        tr.outbox.append((nxt, due))
        tr.hosts[host.host_id] = replace(
            host,
            last_status=HostStatus.DEGRADED,
            last_error=_error_text(r),
            last_tasks=last_tasks,
        )
        tr.events.append(
            make_event(
                state,
                now,
                EventKind.TASK_RETRY,
                task_id=r.task_id,
                host_id=r.host_id,
                attempt=nxt.attempt,
                delay_s=delay,
                error_code=r.error_code,
            )
        )
        return
    _fold_failure(view, rec, host, r, last_tasks, now)


def _fold_success(
    view: StateView, rec: TaskRecord, host: HostState, r: ResultEvent, last_tasks: list[str]
) -> None:
    spec = CATALOG.get(r.action)
    stage = host.stage
    if spec is not None and spec.produces is not None and spec.produces.rank > stage.rank:
        stage = spec.produces
    facts = host.facts
    os_name: str = host.os
    resources = host.resources
    verb = spec.verb if spec is not None else ""
    if verb == "discover" and resources:
        resources = after_discover(host, r.data, rec.task.params)
    elif verb.startswith("ensure_"):
        resources = after_ensure(host, rec.task, r) or resources
    elif resources:
        resources = after_recovery(host, verb) or resources
    if spec is not None and spec.verb == "discover":
        data = r.data if "resources" not in r.data else {
            k: v for k, v in r.data.items() if k != "resources"
        }  # fmt: skip
        facts = {**host.facts, **data}
        family = _os_family(r.data)
        if family is not None and family != host.os:
            # The lab (often an Ansible inventory) guessed wrong: the host says otherwise.
            os_name = family
            view.tr.events.append(
                make_event(
                    view.state,
                    r.ts,
                    EventKind.HOST_OS_CORRECTED,
                    host_id=host.host_id,
                    declared=host.os,
                    discovered=family,
                )
            )
    elif spec is not None and r.data and not verb.startswith("ensure_"):
        facts = {**host.facts, spec.verb: r.data}
    view.tr.tasks[r.task_id] = replace(
        rec, status=TaskStatus.SUCCEEDED, last_error=None, not_before=None
    )
    view.tr.hosts[host.host_id] = replace(
        host,
        last_status=HostStatus.HEALTHY,
        stage=stage,
        facts=facts,
        current_action=None,
        last_error=None,
        last_tasks=last_tasks,
        os=os_name,
        resources=resources,
    )
    view.tr.finished.append(r)


def _fold_failure(
    view: StateView,
    rec: TaskRecord,
    host: HostState,
    r: ResultEvent,
    last_tasks: list[str],
    now: datetime,
) -> None:
    tr = view.tr
    code = r.error_code or ""
    resources = after_ensure(host, rec.task, r) if "ensure_" in r.action else None
    # A resource's own failure (a package that does not exist, a bad config) is the
    # resource's: it is marked failed and its dependents blocked, but the host goes on.
    counts = code not in NOT_HOST_FAULTS and not (
        resources is not None and code in RESOURCE_FAILURES
    )
    failures = host.failure_count + (1 if counts else 0)
    locked = host.locked or failures >= host.max_failures
    update: dict[str, Any] = {
        "last_status": HostStatus.ERROR,
        "failure_count": failures,
        "current_action": None,
        "last_error": _error_text(r),
        "last_tasks": last_tasks,
        "locked": locked,
    }
    if resources is not None:
        update["resources"] = resources
    if locked and not host.locked:
        reason = f"{failures} failures, last {r.error_code or 'error'} on {r.action}"
        update["lock_reason"] = reason
        tr.locked.append(host.host_id)
        tr.events.append(
            make_event(view.state, now, EventKind.HOST_LOCKED, host_id=host.host_id, reason=reason)
        )
    tr.tasks[r.task_id] = replace(
        rec, status=TaskStatus.FAILED, last_error=r.error_code, not_before=None
    )
    tr.hosts[host.host_id] = replace(host, **update)
    tr.finished.append(r)


def _os_family(facts: dict[str, Any]) -> str | None:
    """The OS a discover's facts describe: an explicit `os_family`, else the shape."""
    family = facts.get("os_family")
    if family in OS_NAMES:
        return str(family)
    if "sw_vers" in facts:
        return "macos"
    if "computer" in facts:
        return "windows"
    return None


def _error_text(r: ResultEvent) -> str:
    return f"{r.error_code or 'error'}: {r.summary}"[:300]


def _fold_approval(view: StateView, a: ApprovalDecision, now: datetime) -> None:
    tr = view.tr
    rec = view.task(a.task_id)
    if rec is None or rec.status is not TaskStatus.AWAITING_APPROVAL:
        tr.ignored += 1
        return
    host = view.host(rec.task.host_id)
    if a.approved:
        tr.tasks[a.task_id] = replace(rec, status=TaskStatus.QUEUED)
        tr.outbox.append((rec.task, None))
        kind = EventKind.APPROVAL_GRANTED
    else:
        tr.tasks[a.task_id] = replace(rec, status=TaskStatus.REJECTED)
        if host is not None:
            tr.hosts[host.host_id] = replace(host, current_action=None)
        kind = EventKind.APPROVAL_REJECTED
    tr.events.append(
        make_event(
            view.state,
            now,
            kind,
            task_id=a.task_id,
            host_id=rec.task.host_id,
            action=rec.task.action,
            by=a.by,
            note=a.note,
        )
    )


def apply(state: MissionState, tr: Transition) -> None:
    """Install a transition into the engine's own state object, in O(changes)."""
    state.hosts.update(tr.hosts)
    for rec in tr.tasks.values():
        state.put_task(rec)
    if tr.budget is not None:
        apply_budget(state, tr.budget)


def goal_progress(state: MissionState) -> tuple[int, int]:
    """(hosts at or past the goal stage, hosts) — O(hosts): call it at status changes only."""
    goal_rank = state.goal.rank
    reached = sum(1 for h in state.hosts.values() if h.stage.rank >= goal_rank)
    return reached, len(state.hosts)


def converge_summary(state: MissionState) -> str:
    """A desired-state mission's end, in one line (O(resources): at status changes only)."""
    p = progress(state)
    t = p.tally()
    total = sum(t.values())
    if state.check_mode:
        would, unchecked = would_change_counts(p)
        after = f" ({unchecked} after a change they need first)" if unchecked else ""
        return (
            f"check mode: {would} of {total} resources would change{after}, "
            f"{t['failed']} failed, {t['blocked']} blocked; nothing was changed"
        )
    if t["ok"] == total:
        return f"converged: all {total} resources on {len(state.hosts)} hosts"
    left = total - t["ok"] - t["failed"] - t["blocked"]
    return (
        f"incomplete: {t['ok']}/{total} resources converged, {t['failed']} failed, "
        f"{t['blocked']} blocked" + (f", {left} not converged" if left else "")
    )


def goal_met(state: MissionState) -> bool:
    """Whether a completed mission reached its goal: every declared resource converged
    (desired state), else every host at the goal stage."""
    if state.converges:
        p = progress(state)
        changes = state.check_mode and would_change_counts(p)[0] > 0
        return not changes and all(status == "ok" for _, status in p)
    return all(h.stage.rank >= state.goal.rank for h in state.hosts.values())


def decide_status(
    state: MissionState, tr: Transition, *, planned_any: bool
) -> tuple[MissionStatus, str] | None:
    """The mission status after a transition was applied, or None for 'running, unchanged'."""
    if tr.locked and all(h.locked for h in state.hosts.values()):
        return MissionStatus.FAILED, f"all {len(state.hosts)} hosts locked"
    open_ids = state.open_task_ids
    if not open_ids and not planned_any and state.converges:
        return MissionStatus.COMPLETED, converge_summary(state)
    if not open_ids and not planned_any:
        reached, total = goal_progress(state)
        locked = sum(1 for h in state.hosts.values() if h.locked)
        if reached == total:
            return MissionStatus.COMPLETED, f"goal {state.goal.value} reached on all {total} hosts"
        return (
            MissionStatus.COMPLETED,
            f"nothing left to do: goal {state.goal.value} reached on {reached}/{total} hosts"
            + (f", {locked} locked" if locked else ""),
        )
    if open_ids and all(state.tasks[t].status is TaskStatus.AWAITING_APPROVAL for t in open_ids):
        return MissionStatus.AWAITING_APPROVAL, f"{len(open_ids)} task(s) await approval"
    return None
