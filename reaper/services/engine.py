"""`reaper engine`: run a MissionEngine for every mission this process can claim.

Ownership is the store's mission lease: the service claims a mission (as this process's
owner id) before starting its engine, and the engine renews the lease every ttl/3 while it
runs. Several engine processes share the missions: whoever claims first runs it; the others
skip it. When an engine process dies its leases expire after the ttl and another process
claims the mission on its next scan; the new engine resumes from the store (`bus.recover`,
outbox flush), so nothing is lost or applied twice. On a graceful stop the engines are
cancelled and release their leases at once.

New missions are found by listing the store (no backend here notifies mission creation):
every `poll_min_s` while something changes, backing off to `poll_max_s` (by default a
third of the lease, so a dead engine's mission is taken over within ~1.3 ttl). An engine that
ends with an error is restarted on a later scan, after an exponential backoff.

Missions adopted: running, awaiting approval and stalled ones. A `stopped` mission was stopped
on purpose (its planner halted, or an operator) and is resumed with `reaper resume` instead.

Housekeeping: every `housekeeping_s` a janitor takes the finished (completed, failed) missions
whose last change is older than `housekeeping_grace_s` (late duplicate results of a mission
that just finished are still absorbed by its engine meanwhile) and has the queue forget their
acked tasks (`prune`) and the bus drop their messages (`retire`): `reaper.services.housekeeping`.
Both are idempotent, so every engine process runs its janitor without coordinating with the
others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from reaper.clock import Clock, RealClock
from reaper.engine.core import MissionEngine
from reaper.errors import BackendError, LeaseLostError, MissionNotFoundError
from reaper.infra.base import Backend, MissionSummary
from reaper.models import AGENT_TYPES, EventRecord, MissionState, MissionStatus
from reaper.overseer import PlannerFactory, engine_settings_for
from reaper.planners.base import close_planner
from reaper.policy import Policy
from reaper.services.alerts import alerts_from_events, alerts_from_processes, raise_alert
from reaper.services.housekeeping import GRACE_S, HousekeepingReport, housekeep
from reaper.services.metrics import Metrics
from reaper.services.registry import ProcessInfo, ProcessRegistry
from reaper.services.worker import heartbeat_interval

__all__ = ["ADOPTED", "EngineService"]

log = logging.getLogger(__name__)

ADOPTED = (MissionStatus.RUNNING, MissionStatus.AWAITING_APPROVAL, MissionStatus.STALLED)
_RETRY_MAX_S = 30.0
_FIRST_HOUSEKEEPING_S = 5.0  # after start: the first scan and adoptions go first


class EngineService:
    def __init__(
        self,
        backend: Backend,
        registry: ProcessRegistry,
        *,
        planner_factory: PlannerFactory,
        lease_ttl_s: float = 30.0,
        heartbeat_s: float | None = None,
        stall_after_s: float | None = None,
        only: Collection[str] | None = None,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        owner: str | None = None,
        poll_min_s: float = 0.05,
        poll_max_s: float | None = None,
        housekeeping_s: float | None = 300.0,
        housekeeping_grace_s: float = GRACE_S,
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.planner_factory = planner_factory
        self.lease_ttl_s = lease_ttl_s
        self.heartbeat_s = heartbeat_s or heartbeat_interval(lease_ttl_s)
        self.overrides: dict[str, Any] = {"lease_ttl_s": lease_ttl_s}
        if stall_after_s is not None:
            self.overrides["stall_after_s"] = stall_after_s
        self.only = set(only) if only else None
        self.metrics = metrics
        self.clock = clock or RealClock()
        self.owner = owner or f"engine-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.poll_min_s = poll_min_s
        self.poll_max_s = poll_max_s if poll_max_s is not None else max(poll_min_s, lease_ttl_s / 3)
        self.housekeeping_s = housekeeping_s  # None: no janitor
        self.housekeeping_grace_s = housekeeping_grace_s
        self.engines: dict[str, asyncio.Task[None]] = {}
        self._running: dict[str, MissionEngine] = {}  # the engine objects, for their metrics
        self.completed: list[str] = []
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._alerted: set[str] = set()
        self._wake = asyncio.Event()

    # -- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        now = self.clock.now()
        info = ProcessInfo(
            process_id=self.owner,
            role="engine",
            host=socket.gethostname(),
            pid=os.getpid(),
            started=now,
            last_seen=now,
            interval_s=self.heartbeat_s,
        )
        beats = asyncio.create_task(self._beats(info))
        background = [beats]
        if self.housekeeping_s is not None:
            background.append(asyncio.create_task(self._janitor(self.housekeeping_s)))
        log.info("engine service %s started", self.owner)
        poll = self.poll_min_s
        try:
            while not stop.is_set():
                started = await self._scan()
                poll = self.poll_min_s if started else min(poll * 2, self.poll_max_s)
                self._wake.clear()
                waiters = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._wake.wait()),
                ]
                try:
                    await asyncio.wait(waiters, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
        finally:
            await self._stop_engines()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            try:
                await self.registry.remove(self.owner)
            except BackendError as exc:
                log.warning("engine %s: could not deregister: %s", self.owner, exc)
            log.info("engine service %s stopped", self.owner)

    async def _scan(self) -> bool:
        """Claim and start what is free; True if an engine was started."""
        try:
            missions = await self.backend.store.list_missions()
        except BackendError as exc:
            log.warning("engine %s: listing missions failed: %s", self.owner, exc)
            return False
        if self.metrics is not None:
            self.metrics.observe_missions(missions)
        started = False
        for m in missions:
            if self._eligible(m) and await self._claim(m.mission_id):
                self.engines[m.mission_id] = asyncio.create_task(
                    self._drive(m.mission_id), name=f"engine:{m.mission_id}"
                )
                self.engines[m.mission_id].add_done_callback(lambda _: self._wake.set())
                started = True
        return started

    def _eligible(self, m: MissionSummary) -> bool:
        if m.mission_id in self.engines or m.status not in ADOPTED:
            return False
        if self.only is not None and m.mission_id not in self.only:
            return False
        return self._retry_at.get(m.mission_id, 0.0) <= self.clock.monotonic()

    async def _claim(self, mission_id: str) -> bool:
        try:
            return await self.backend.store.claim(mission_id, self.owner, self.lease_ttl_s)
        except BackendError as exc:
            log.warning("engine %s: claiming %s failed: %s", self.owner, mission_id, exc)
            return False

    async def _drive(self, mission_id: str) -> None:
        try:
            state = await self.backend.store.load(mission_id)
            if state is None:
                raise MissionNotFoundError(mission_id)
            log.info("engine %s: running mission %s", self.owner, mission_id)
            engine = self._running[mission_id] = self._engine(state)
            final = await engine.run()
        except LeaseLostError as exc:
            log.warning("engine %s: %s", self.owner, exc)
            self._backoff(mission_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The supervisor boundary: one mission's failure (a backend outage, a planner
            # bug) must not end the others. It is logged and retried after a backoff.
            log.exception("engine %s: mission %s failed; will retry", self.owner, mission_id)
            self._backoff(mission_id)
            with contextlib.suppress(BackendError):
                await self.backend.store.release(mission_id, self.owner)
        else:
            self._failures.pop(mission_id, None)
            log.info("engine %s: mission %s %s", self.owner, mission_id, final.status.value)
            if final.status.terminal:
                self.completed.append(mission_id)
        finally:
            self.engines.pop(mission_id, None)
            ended = self._running.pop(mission_id, None)
            if ended is not None:
                # A planner's LLM client holds HTTP pools (a local provider: a llama-server).
                await close_planner(ended.planner)
            if self.metrics is not None:
                self.metrics.set_window(mission_id, None)

    def _backoff(self, mission_id: str) -> None:
        n = self._failures[mission_id] = self._failures.get(mission_id, 0) + 1
        delay = min(0.25 * 2 ** min(n, 8), _RETRY_MAX_S)
        self._retry_at[mission_id] = self.clock.monotonic() + delay

    def _engine(self, state: MissionState) -> MissionEngine:
        return MissionEngine(
            state.mission_id,
            store=self.backend.store,
            queue=self.backend.queue,
            bus=self.backend.bus,
            planner=self.planner_factory(state),
            policy=Policy.model_validate(state.policy),
            clock=self.clock,
            settings=engine_settings_for(state, **self.overrides),
            owner=self.owner,
            listener=self._listener,
        )

    def _listener(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        if self.metrics is not None:
            self.metrics.observe_events(state, events)
            engine = self._running.get(state.mission_id)
            if engine is not None:
                self.metrics.set_window(state.mission_id, engine.window.size)
        for alert in alerts_from_events(state.mission_id, events):
            raise_alert(alert, self.metrics)

    async def _stop_engines(self) -> None:
        tasks = list(self.engines.values())
        for task in tasks:
            task.cancel()
        # Each engine's `finally` releases its lease: another process may take over now.
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- heartbeat ---------------------------------------------------------------------

    async def _beats(self, info: ProcessInfo) -> None:
        while True:
            info.last_seen = self.clock.now()
            info.missions = sorted(self.engines)
            info.counters = {"running": len(self.engines), "completed": len(self.completed)}
            try:
                await self.registry.beat(info)
                await self._watch_workers()
                if self.metrics is not None:
                    for agent_type in AGENT_TYPES:
                        depth = await self.backend.queue.depth(agent_type)
                        self.metrics.set_depth(agent_type, depth)
            except BackendError as exc:
                log.warning("engine %s: heartbeat failed: %s", self.owner, exc)
            await self.clock.sleep(info.interval_s)

    # -- housekeeping ------------------------------------------------------------------

    async def _janitor(self, interval_s: float) -> None:
        await self.clock.sleep(min(interval_s, _FIRST_HOUSEKEEPING_S))
        while True:
            await self.housekeep()
            await self.clock.sleep(interval_s)

    async def housekeep(self) -> HousekeepingReport | None:
        """One janitor round (`services.housekeeping`); None if a backend call failed (logged;
        the next round tries again)."""
        try:
            report = await housekeep(
                self.backend,
                now=self.clock.now(),
                grace_s=self.housekeeping_grace_s,
                only=self.only,
            )
        except BackendError as exc:
            log.warning("engine %s: housekeeping failed, will retry: %s", self.owner, exc)
            return None
        if report.finished:
            log.info("engine %s: housekeeping: %s", self.owner, report.summary())
        return report

    async def _watch_workers(self) -> None:
        """Alert once per worker that stops heart-beating (again if it comes back and dies)."""
        now = self.clock.now()
        processes = await self.registry.list(now)
        silent = {a.subject: a for a in alerts_from_processes(processes, now)}
        for pid, alert in silent.items():
            if pid not in self._alerted:
                raise_alert(alert, self.metrics)
        self._alerted = set(silent)
