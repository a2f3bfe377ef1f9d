"""The Overseer: creates missions from lab files, runs their engines, reports on them."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from reaper.clock import Clock, RealClock
from reaper.desired.progress import Progress, converge_counts, progress
from reaper.engine.core import EngineSettings, Listener, MissionEngine
from reaper.engine.state import (
    RetrySettings,
    Transition,
    apply,
    control_status,
    fold,
    goal_progress,
    make_event,
)
from reaper.errors import BadRequestError, MissionNotFoundError
from reaper.infra.base import Backend, Commit, MissionSummary
from reaper.lab import LabFile, LabSettings
from reaper.models import (
    ApprovalDecision,
    EventKind,
    HostState,
    MissionControl,
    MissionState,
    MissionStatus,
    Stage,
    TaskStatus,
)
from reaper.planners.base import MissionPlanner, close_planner
from reaper.planners.rules import RuleBasedPlanner
from reaper.policy import Policy
from reaper.secrets import redact_mission

__all__ = [
    "ControlOutcome",
    "HostReport",
    "MissionReport",
    "Overseer",
    "PlannerFactory",
    "engine_settings_for",
]

log = logging.getLogger(__name__)

PlannerFactory = Callable[[MissionState], MissionPlanner]
# How `Overseer.control` delivered a request: applied here (no engine held the mission),
# sent to the engine that holds it, or changed nothing (it no longer fits the mission).
ControlOutcome = Literal["applied", "sent", "unchanged"]
# The lease a request takes while it applies itself here (released at once).
_CONTROL_LEASE_S = 30.0


def _rule_planner(_: MissionState) -> MissionPlanner:
    return RuleBasedPlanner()


_LAB_DEFAULTS = LabSettings().model_dump(mode="json")


def engine_settings_for(state: MissionState, **overrides: Any) -> EngineSettings:
    # A mission stored by an older version may lack a setting: the lab file's default.
    s = {**_LAB_DEFAULTS, **state.settings}
    retry = RetrySettings(
        max_attempts=int(s["retry_attempts"]),
        backoff_s=float(s["retry_backoff_s"]),
        backoff_max_s=float(s["retry_backoff_max_s"]),
    )
    lockstep = s["lockstep"]
    values: dict[str, Any] = {
        "retry": retry,
        "stall_after_s": float(s["stall_after_s"]),
        "max_in_flight": int(s["max_in_flight"]),
        "latency_target_s": float(s["latency_target_s"]) or None,
        "lockstep": state.planner == "llm" if lockstep is None else bool(lockstep),
    }
    values.update(overrides)
    return EngineSettings(**values)


class ResourceReport(BaseModel):
    status: str
    change: str | None = None  # what this mission did to it: added, changed, removed
    reason: str | None = None  # why it is failed, blocked or waiting


class HostReport(BaseModel):
    os: str
    stage: Stage
    status: str
    failure_count: int
    max_failures: int
    locked: bool
    lock_reason: str | None
    current_action: str | None
    last_error: str | None
    facts: dict[str, Any]
    # Desired-state missions (None otherwise): the recap's counts (added, changed, ok,
    # failed, blocked), and each declared resource's status with why where it has one.
    resource_counts: dict[str, int] | None = None
    resources: dict[str, ResourceReport] | None = None


class MissionReport(BaseModel):
    """The seed's get_mission_status, and more."""

    mission_id: str
    lab_type: str
    goal: Stage
    status: MissionStatus
    status_reason: str
    goal_reached: bool
    goal_hosts: int
    total_hosts: int
    locked_hosts: int
    pending_tasks: int
    awaiting_approval: list[str]
    completed_tasks: int
    failed_tasks: int
    step: int
    version: int
    planner: str
    updated_at: datetime
    hosts: dict[str, HostReport]
    # A desired-state mission: its declared resources by status (ok, failed, blocked, ...);
    # its aim is those, not the `goal` stage, and `goal_hosts` counts hosts all ok.
    converges: bool = False
    resource_totals: dict[str, int] | None = None

    @classmethod
    def of(cls, state: MissionState) -> MissionReport:
        p = progress(state) if state.converges else None
        reached, total = goal_progress(state)
        if p is not None:
            reached = sum(1 for h in state.hosts if set(p.tally(h)) <= {"ok"})
        failed = sum(1 for r in state.tasks.values() if r.status is TaskStatus.FAILED)
        return cls(
            mission_id=state.mission_id,
            lab_type=state.lab_type,
            goal=state.goal,
            status=state.status,
            status_reason=state.status_reason,
            goal_reached=state.goal_reached,
            goal_hosts=reached,
            total_hosts=total,
            locked_hosts=sum(1 for h in state.hosts.values() if h.locked),
            pending_tasks=len(state.pending_tasks),
            awaiting_approval=sorted(state.awaiting_approval),
            completed_tasks=len(state.completed_tasks),
            failed_tasks=failed,
            step=state.step,
            version=state.version,
            planner=state.planner,
            updated_at=state.updated_at,
            hosts={
                h.host_id: HostReport(
                    os=h.os,
                    stage=h.stage,
                    status=h.last_status.value,
                    failure_count=h.failure_count,
                    max_failures=h.max_failures,
                    locked=h.locked,
                    lock_reason=h.lock_reason,
                    current_action=h.current_action,
                    last_error=h.last_error,
                    facts=h.facts,
                    **({} if p is None else _resource_reports(p, h)),
                )
                for h in state.hosts.values()
            },
            converges=p is not None,
            resource_totals=None if p is None else dict(sorted(p.tally().items())),
        )


def _resource_reports(p: Progress, host: HostState) -> dict[str, Any]:
    resources = {}
    for node in p.host_nodes(host.host_id):
        rs = host.resources.get(str(node.rid))
        resources[str(node.rid)] = ResourceReport(
            status=p.status(node), change=rs.change if rs else None, reason=p.why.get(node)
        )
    return {"resource_counts": converge_counts(p, host), "resources": resources}


class Overseer:
    def __init__(
        self,
        backend: Backend,
        *,
        planner_factory: PlannerFactory = _rule_planner,
        clock: Clock | None = None,
        listener: Listener | None = None,
        engine_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.backend = backend
        self.planner_factory = planner_factory
        self.clock = clock or RealClock()
        self.listener = listener
        self.engine_overrides = engine_overrides or {}
        self.engines: dict[str, MissionEngine] = {}
        self._tasks: dict[str, asyncio.Task[MissionState]] = {}

    async def create_mission(self, lab: LabFile, mission_id: str | None = None) -> MissionState:
        state = redact_mission(lab.to_state(mission_id))
        # Starting plans nothing (run_mission asks the mission's planner): no LLM client, or
        # llama-server, is opened only to be closed again.
        engine = self._engine(state, lab.resolved_policy(), planner=RuleBasedPlanner())
        await engine.start(state)
        log.info(
            "mission %s created: %d host(s), goal %s",
            state.mission_id,
            len(state.hosts),
            state.goal.value,
        )
        return state

    def _engine(
        self,
        state: MissionState,
        policy: Policy | None = None,
        planner: MissionPlanner | None = None,
    ) -> MissionEngine:
        engine = MissionEngine(
            state.mission_id,
            store=self.backend.store,
            queue=self.backend.queue,
            bus=self.backend.bus,
            planner=planner or self.planner_factory(state),
            policy=policy or Policy.model_validate(state.policy),
            clock=self.clock,
            settings=engine_settings_for(state, **self.engine_overrides),
            listener=self.listener,
        )
        self.engines[state.mission_id] = engine
        return engine

    async def run_mission(self, mission_id: str) -> MissionState:
        """Run (or resume) a mission's engine until the mission ends."""
        state = await self.backend.store.load(mission_id)
        if state is None:
            raise MissionNotFoundError(mission_id)
        engine = self._engine(state)
        try:
            return await engine.run()
        finally:
            # A planner's LLM client holds HTTP pools (a local provider: a llama-server).
            await close_planner(engine.planner)

    def start(self, mission_id: str) -> asyncio.Task[MissionState]:
        task = asyncio.create_task(self.run_mission(mission_id), name=f"engine:{mission_id}")
        self._tasks[mission_id] = task
        return task

    async def stop_all(self, *, interrupted: bool = False) -> None:
        """Stop every engine this overseer runs. With `interrupted` (Ctrl-C, SIGTERM), each
        mission stopped mid-way is marked `interrupted`, so its status does not claim an
        engine runs it."""
        stopped = [mid for mid, task in self._tasks.items() if not task.done()]
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if interrupted:
            for mission_id in stopped:
                await self.mark_interrupted(mission_id)

    async def mark_interrupted(self, mission_id: str, reason: str = "") -> bool:
        """Record that no engine runs the mission any more (its engine was stopped): status
        `interrupted` unless it ended or stopped meanwhile. False if another engine holds
        it or nothing changed."""
        store = self.backend.store
        owner = self._owner()
        if not await store.claim(mission_id, owner, _CONTROL_LEASE_S):
            return False
        try:
            state = await store.load(mission_id)
            if state is None or state.status.terminal or state.status is MissionStatus.STOPPED:
                return False
            why = reason or f"stopped; resume with `reaper resume {mission_id}`"
            await self._commit_here(state, Transition(), (MissionStatus.INTERRUPTED, why))
            return True
        finally:
            await store.release(mission_id, owner)

    async def control(self, message: MissionControl) -> ControlOutcome:
        """Deliver an operator's request (cancel, unlock, new budget) to a mission, wherever
        its engine runs: if an engine holds the mission's lease, through the bus, as approval
        decisions go (the engine folds it in its next wake-up); if none does, the request is
        folded and committed here under the lease, by the same pure function the engine uses.
        A request sent to an engine that stops before reading it is read by the next one."""
        store = self.backend.store
        mission_id = message.mission_id
        await self.load(mission_id)  # MissionNotFoundError before anything is sent
        owner = self._owner()
        if not await store.claim(mission_id, owner, _CONTROL_LEASE_S):
            await self.backend.bus.publish(message)
            return "sent"
        try:
            state = await self.load(mission_id)
            tr = fold(state, [message], now=self.clock.now(), retry=RetrySettings())
            if not tr.changed:
                return "unchanged"
            apply(state, tr)
            await self._commit_here(state, tr, control_status(tr, state))
            if tr.cancel is not None:  # nothing committed to go out goes out now
                unsent = await store.unsent(mission_id)
                await store.mark_sent(mission_id, [item.task.key for item in unsent])
            return "applied"
        finally:
            await store.release(mission_id, owner)

    async def prune(
        self,
        *,
        statuses: Collection[MissionStatus],
        older_than_s: float,
        dry_run: bool = False,
    ) -> list[tuple[MissionSummary, int]]:
        """Delete missions in `statuses` not updated for `older_than_s` seconds, with their
        hosts, tasks, events and what the queue and bus hold for them; a mission an engine
        holds is skipped. Returns each with the rows removed (0 on a dry run)."""
        cutoff = self.clock.now() - timedelta(seconds=older_than_s)
        chosen = [
            m for m in await self.list_missions() if m.status in statuses and m.updated_at <= cutoff
        ]
        removed: list[tuple[MissionSummary, int]] = []
        for m in chosen:
            if await self.backend.store.lease(m.mission_id) is not None:
                log.info("prune: mission %s is held by an engine; skipped", m.mission_id)
                continue
            rows = 0 if dry_run else await self.backend.store.delete(m.mission_id)
            removed.append((m, rows))
        if removed and not dry_run:
            ids = [m.mission_id for m, _ in removed]
            await self.backend.queue.prune(ids)
            await self.backend.bus.retire(ids)
            log.info("pruned %d mission(s): %s", len(ids), ", ".join(ids))
        return removed

    def _owner(self) -> str:
        return f"overseer-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    async def _commit_here(
        self, state: MissionState, tr: Transition, status: tuple[MissionStatus, str] | None
    ) -> None:
        """Commit a transition made outside an engine (the caller holds the lease)."""
        now = self.clock.now()
        if status is not None and status != (state.status, state.status_reason):
            if status[0] is not state.status:
                payload = {"from": state.status.value, "to": status[0].value, "reason": status[1]}
                tr.events.append(make_event(state, now, EventKind.STATUS_CHANGED, **payload))
            state.status, state.status_reason = status
        state.updated_at = now
        state.version = await self.backend.store.commit(
            Commit(
                mission=state,
                expected_version=state.version,
                hosts=list(tr.hosts.values()),
                tasks=list(tr.tasks.values()),
                events=tr.events,
            )
        )

    async def load(self, mission_id: str) -> MissionState:
        state = await self.backend.store.load(mission_id)
        if state is None:
            raise MissionNotFoundError(mission_id)
        return state

    async def get_mission_status(self, mission_id: str) -> MissionReport:
        return MissionReport.of(await self.load(mission_id))

    async def list_missions(self) -> list[MissionSummary]:
        return await self.backend.store.list_missions()

    async def decide(
        self,
        mission_id: str,
        task_id: str,
        *,
        approved: bool,
        by: str = "operator",
        note: str = "",
    ) -> None:
        """Approve or reject a task waiting for approval; the engine applies it."""
        state = await self.load(mission_id)
        rec = state.tasks.get(task_id)
        if rec is None:
            raise BadRequestError(f"mission {mission_id} has no task {task_id!r}")
        if rec.status is not TaskStatus.AWAITING_APPROVAL:
            raise BadRequestError(
                f"task {task_id} is not awaiting approval (it is {rec.status.value})"
            )
        await self.backend.bus.publish(
            ApprovalDecision(
                mission_id=mission_id,
                task_id=task_id,
                approved=approved,
                by=by,
                note=note,
                ts=self.clock.now(),
            )
        )
