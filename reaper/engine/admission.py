"""Admitting a planner's proposal: every planned task through the policy, then minted.

`plan` is pure: it reads the mission (through the batch just folded) and returns the task
records, the refusals and approval requests to log, and the outbox to publish.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from reaper.desired.progress import Addresses, resolve_servers
from reaper.engine.loops import loop_reason
from reaper.engine.resources import after_refusal
from reaper.engine.state import StateView, Transition, make_event
from reaper.models import (
    EventKind,
    EventRecord,
    HostState,
    MissionState,
    PlannedTask,
    Task,
    TaskRecord,
    TaskStatus,
    replace,
    trusted,
)
from reaper.policy import Decision, Policy, check

__all__ = ["mint_task_id", "plan"]

_TASK_FIELDS = frozenset(Task.model_fields)
_REFUSALS_KEPT = 5
# Refusals that say "not now" rather than "not this": nothing for a planner to learn.
_NOT_REMEMBERED = frozenset({"host_busy", "too_many_tasks"})
_RECORD_SET = frozenset({"task", "status", "step", "planned_by"})


def mint_task_id(mission_id: str, step: int, index: int) -> str:
    """Deterministic: a plan re-made after a crash yields the same ids, so re-publishing is
    idempotent at the queue."""
    return f"{mission_id}:{step}:{index}"


def plan(
    state: MissionState,
    proposed: Sequence[PlannedTask],
    *,
    step: int,
    policy: Policy,
    now: datetime,
    planner: str,
    base: Transition | None = None,
) -> Transition:
    """Check each proposed task against the policy and mint the accepted ones. Pure.

    `base` is the transition the proposals answer (the batch just folded): planning sees the
    state through it and adds to it.
    """
    tr = base if base is not None else Transition()
    view = StateView(state, tr)
    busy = _BusyHosts(view)
    hosts_view = _ViewState(state, view)
    accepted = 0
    for index, proposal in enumerate(proposed):
        if accepted >= policy.max_tasks_per_step:
            why = f"over the per-step cap of {policy.max_tasks_per_step}"
            tr.events.append(
                _refusal(state, now, step, index, planner, proposal, "too_many_tasks", why)
            )
            continue
        verdict = check(proposal, hosts_view, policy, busy)
        code, reason = verdict.code, verdict.reason
        host = view.host(proposal.host_id)
        if verdict.decision is not Decision.DENY and state.converges:
            assert host is not None and verdict.spec is not None  # check() refused otherwise
            looped = loop_reason(host, verdict.spec.name, verdict.params, view.task)
            if looped is not None:
                code, reason = "loop", looped
        params = dict(verdict.params) if verdict.spec is not None else {}
        if verdict.decision is not Decision.DENY and code != "loop":
            unresolved = _resolve_servers(params, state, hosts_view)
            if unresolved is not None:
                code, reason = "unresolved", unresolved
        if verdict.decision is Decision.DENY or code in ("loop", "unresolved"):
            tr.events.append(_refusal(state, now, step, index, planner, proposal, code, reason))
            if state.converges:
                _remember_refusal(view, proposal, step, code, reason)
                if ".ensure_" in proposal.action:
                    _refuse_resource(view, proposal, code, reason)
            continue
        assert host is not None and verdict.spec is not None  # check() refused otherwise
        # Built unvalidated (see `trusted`): every value comes from the checked proposal,
        # the host and the catalog; `Task(...)` and `TaskRecord(...)` would only re-check them.
        task: Task = trusted(
            Task,
            {
                "task_id": mint_task_id(state.mission_id, step, index),
                "mission_id": state.mission_id,
                "host_id": host.host_id,
                "agent_type": host.agent_type,
                "action": verdict.spec.name,
                "params": params,
                "attempt": 1,
                "reason": proposal.reason,
                "timeout_s": float(verdict.spec.timeout_s),
            },
            set(_TASK_FIELDS),
        )
        ask = verdict.decision is Decision.ASK
        due = now + timedelta(seconds=proposal.delay_s) if proposal.delay_s else None
        status = TaskStatus.AWAITING_APPROVAL if ask else TaskStatus.QUEUED
        tr.tasks[task.task_id] = trusted(
            TaskRecord,
            {
                "task": task,
                "status": status,
                "step": step,
                "last_error": None,
                "not_before": due,
                "planned_by": planner,
            },
            set(_RECORD_SET),
        )
        tr.hosts[host.host_id] = replace(host, current_action=task.action)
        busy.add(host.host_id)
        accepted += 1
        tr.events.append(
            make_event(
                state,
                now,
                EventKind.TASK_PLANNED,
                task_id=task.task_id,
                host_id=task.host_id,
                action=task.action,
                params=task.params,
                reason=task.reason,
                planner=planner,
                step=step,
                approval=ask,
            )
        )
        if ask:
            tr.events.append(
                make_event(
                    state,
                    now,
                    EventKind.APPROVAL_REQUESTED,
                    task_id=task.task_id,
                    host_id=task.host_id,
                    action=task.action,
                    reason=verdict.reason,
                )
            )
        else:
            tr.outbox.append((task, due))
    return tr


def _resolve_servers(params: dict[str, Any], state: MissionState, hosts: _ViewState) -> str | None:
    """A dns_client's `servers_from` (lab host ids) becomes their addresses in `params`, in
    place, whichever planner proposed it: an agent has no lab to look the names up in. The
    reason to refuse when an address is not known yet (the task would set a resolver short
    of the servers the lab declares)."""
    resource = params.get("resource")
    if not isinstance(resource, dict) or not resource.get("servers_from"):
        return None
    resolved, missing = resolve_servers(resource, Addresses(state, hosts.hosts))
    if missing:
        return f"servers_from: the address of {', '.join(missing)} is not known yet (discover it)"
    params["resource"] = resolved
    return None


def _remember_refusal(
    view: StateView, proposal: PlannedTask, step: int, code: str, reason: str
) -> None:
    """The host keeps its last few refusals, so a planner is told what was refused and why
    (an LLM that is not told repeats itself)."""
    host = view.host(proposal.host_id)
    if host is None or code in _NOT_REMEMBERED:
        return
    line = f"step {step}: {proposal.action} refused ({code}): {reason}"[:400]
    kept = [*host.refusals[-(_REFUSALS_KEPT - 1) :], line]
    view.tr.hosts[host.host_id] = replace(host, refusals=kept)


def _refuse_resource(view: StateView, proposal: PlannedTask, code: str, reason: str) -> None:
    host = view.host(proposal.host_id)
    if host is None or code == "host_busy":
        return  # a busy host is asked again later; only a real refusal fails the resource
    resources = after_refusal(host, proposal.params, code, reason)
    if resources is not None:
        view.tr.hosts[host.host_id] = replace(host, resources=resources)
        view.tr.refused_on.append(host.host_id)


def _refusal(
    state: MissionState,
    now: datetime,
    step: int,
    index: int,
    planner: str,
    proposal: PlannedTask,
    code: str,
    reason: str,
) -> EventRecord:
    return make_event(
        state,
        now,
        EventKind.TASK_REFUSED,
        step=step,
        index=index,
        code=code,
        reason=reason,
        planner=planner,
        proposal=proposal.model_dump(mode="json"),
    )


class _BusyHosts:
    """Hosts with a task in flight, as the policy's busy set (a view, not a copy)."""

    __slots__ = ("extra", "view")

    def __init__(self, view: StateView) -> None:
        self.view = view
        self.extra: set[str] = set()

    def add(self, host_id: str) -> None:
        self.extra.add(host_id)

    def __contains__(self, host_id: object) -> bool:
        if host_id in self.extra:
            return True
        host = self.view.host(str(host_id))
        return host is not None and host.current_action is not None


class _ViewState:
    """Duck-types the part of MissionState the policy reads (`hosts.get`)."""

    __slots__ = ("hosts", "mission_id")

    def __init__(self, state: MissionState, view: StateView) -> None:
        self.mission_id = state.mission_id
        self.hosts = _HostsView(view)


class _HostsView:
    __slots__ = ("view",)

    def __init__(self, view: StateView) -> None:
        self.view = view

    def get(self, host_id: str) -> HostState | None:
        return self.view.host(host_id)
