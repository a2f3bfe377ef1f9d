"""The Overseer: creates missions from lab files, runs their engines, reports on them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from reaper.clock import Clock, RealClock
from reaper.engine.core import EngineSettings, Listener, MissionEngine
from reaper.engine.state import RetrySettings, goal_progress
from reaper.errors import BadRequestError, MissionNotFoundError
from reaper.infra.base import Backend, MissionSummary
from reaper.lab import LabFile, LabSettings
from reaper.models import (
    ApprovalDecision,
    MissionState,
    MissionStatus,
    Stage,
    TaskStatus,
)
from reaper.planners.base import MissionPlanner
from reaper.planners.rules import RuleBasedPlanner
from reaper.policy import Policy
from reaper.secrets import redact_mission

__all__ = ["HostReport", "MissionReport", "Overseer", "PlannerFactory", "engine_settings_for"]

log = logging.getLogger(__name__)

PlannerFactory = Callable[[MissionState], MissionPlanner]


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

    @classmethod
    def of(cls, state: MissionState) -> MissionReport:
        reached, total = goal_progress(state)
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
                )
                for h in state.hosts.values()
            },
        )


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
        engine = self._engine(state, lab.resolved_policy())
        await engine.start(state)
        log.info(
            "mission %s created: %d host(s), goal %s",
            state.mission_id,
            len(state.hosts),
            state.goal.value,
        )
        return state

    def _engine(self, state: MissionState, policy: Policy | None = None) -> MissionEngine:
        engine = MissionEngine(
            state.mission_id,
            store=self.backend.store,
            queue=self.backend.queue,
            bus=self.backend.bus,
            planner=self.planner_factory(state),
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
        return await self._engine(state).run()

    def start(self, mission_id: str) -> asyncio.Task[MissionState]:
        task = asyncio.create_task(self.run_mission(mission_id), name=f"engine:{mission_id}")
        self._tasks[mission_id] = task
        return task

    async def stop_all(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

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
