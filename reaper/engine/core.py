"""MissionEngine: one per mission, event-driven, crash-safe.

Each wake-up takes every inbound message waiting (results, approval decisions) as one batch:
fold (pure) → ask the planner once → check each proposal against the policy (pure) → commit
the changes, the log entries and the planned tasks in one store commit (the outbox) → publish
the tasks → mark them sent → ack the batch. A crash anywhere in between is repaired on resume:
unacked messages come back and are ignored if already applied (ids are (task_id, attempt));
committed-but-unsent tasks are re-published (the queue drops duplicates).

Dispatch is windowed: at most `max_in_flight` of the mission's tasks are on the queue or
running at once (as Ansible's forks or Terraform's -parallelism); the rest wait in the outbox,
committed but unsent, and go out as results free slots. The window is what keeps a 1,000-host
step from flooding the workers and, behind them, the engine: results never pile up past it.
Within that cap the window adapts (`reaper.engine.window`): fewer tasks go out while results wait on
the engine longer than `latency_target_s`, so their latency stays bounded on fast hosts too.
The waiting tasks are the store's unsent outbox rows, so a crash loses none of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reaper import gc_policy
from reaper.clock import Clock, RealClock
from reaper.engine.admission import plan
from reaper.engine.state import (
    RetrySettings,
    Transition,
    apply,
    control_status,
    decide_status,
    fold,
    goal_met,
)
from reaper.engine.window import DispatchWindow
from reaper.errors import LeaseLostError, MissionNotFoundError, PlannerError
from reaper.infra.base import Commit, EventBus, InboundDelivery, MissionStore, OutboxItem, TaskQueue
from reaper.models import EventKind, EventRecord, MissionState, MissionStatus, ResultEvent
from reaper.planners.base import MissionPlanner, Plan
from reaper.policy import Policy

__all__ = ["EngineSettings", "Listener", "MissionEngine"]

log = logging.getLogger(__name__)

Listener = Callable[[MissionState, Sequence[EventRecord]], None]
_HALTED = "planning_halted"


@dataclass(frozen=True, slots=True)
class _Cycle:
    """One wake-up's timing: when the earliest of its messages can have arrived, when the
    receive returned, and the planner's running total of seconds at each (planner time is
    not the window's to shorten)."""

    origin: float
    received: float
    planner_at_origin: float
    planner_at_received: float
    batch: int


@dataclass(frozen=True, slots=True)
class EngineSettings:
    retry: RetrySettings = field(default_factory=RetrySettings)
    stall_after_s: float = 300.0
    lease_ttl_s: float = 30.0
    max_batch: int = 10_000
    # Tasks of the mission on the queue or running at once; the rest wait in the outbox.
    max_in_flight: int = 256
    # Result latency (arrival → commit, as the engine measures it) the window keeps within;
    # None: the window stays at max_in_flight.
    latency_target_s: float | None = 0.025
    # Plan only when every task of the step has finished (see `_step`).
    lockstep: bool = False


class MissionEngine:
    def __init__(
        self,
        mission_id: str,
        *,
        store: MissionStore,
        queue: TaskQueue,
        bus: EventBus,
        planner: MissionPlanner,
        policy: Policy,
        clock: Clock | None = None,
        settings: EngineSettings | None = None,
        owner: str | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.mission_id = mission_id
        self.store, self.queue, self.bus = store, queue, bus
        self.planner = planner
        self.policy = policy
        self.clock = clock or RealClock()
        self.settings = settings or EngineSettings()
        # engine-HOST-PID-HEX: `reaper status` tells from it whether the engine still runs.
        self.owner = owner or f"engine-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.listener = listener
        self.state: MissionState | None = None
        self._lease_renewed = 0.0
        self._last_progress = 0.0
        self._held: list[ResultEvent] = []
        self._lease_lost = False
        # Committed tasks waiting for a slot in the window, in plan order; and the (task_id,
        # attempt) keys sent and not yet finished.
        self._waiting: deque[OutboxItem] = deque()
        self._in_flight: set[tuple[str, int]] = set()
        # Published since the last commit: the next commit marks them sent (`Commit.sent`).
        self._sent: list[tuple[str, int]] = []
        self.window = DispatchWindow(self.settings.max_in_flight, self.settings.latency_target_s)
        # Tasks were left waiting for a slot at the last dispatch.
        self._limited = False
        self._received = 0.0  # when the last receive returned
        self._planner_s = 0.0  # seconds spent in the planner, in all
        self._planner_at_received = 0.0
        self._cycle: _Cycle | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, state: MissionState) -> None:
        """Persist a new mission (the seed's start_mission); `run` plans its first step."""
        hosts = state.hosts.values()
        created = EventRecord(
            mission_id=state.mission_id,
            ts=self.clock.now(),
            kind=EventKind.MISSION_CREATED,
            payload={
                "lab_type": state.lab_type,
                # A desired-state mission's aim is its declared resources, not a stage.
                **(
                    {"goal": "desired state", "resources": sum(len(h.desired) for h in hosts)}
                    if state.converges
                    else {"goal": state.goal.value}
                ),
                "hosts": len(hosts),
                "planner": state.planner,
                "policy": self.policy.name,
            },
        )
        await self.store.create(state, [created])

    async def run(self) -> MissionState:
        """Drive the mission until it completes or fails; cancel the task to stop it (the
        mission resumes from the store later)."""
        await self._claim(wait=True)
        keeper = asyncio.create_task(self._keep_lease(asyncio.current_task()))
        try:
            return await self._drive()
        except asyncio.CancelledError:
            if self._lease_lost:
                raise LeaseLostError(
                    f"mission {self.mission_id}: lease lost to another engine"
                ) from None
            raise
        finally:
            keeper.cancel()
            await self.store.release(self.mission_id, self.owner)

    async def _keep_lease(self, main: asyncio.Task[Any] | None) -> None:
        """Renew the lease in the background (not between wake-ups), so a long step (an LLM
        call that takes longer than the lease) does not lose the mission; stop the engine if
        the lease is lost."""
        period = self.settings.lease_ttl_s / 3
        while True:
            await self.clock.sleep(period)
            try:
                await self._renew_lease()
            except LeaseLostError:
                log.error("mission %s: lease lost to another engine; stopping", self.mission_id)
                self._lease_lost = True
                if main is not None:
                    main.cancel()
                return

    async def _drive(self) -> MissionState:
        state = await self.store.load(self.mission_id)
        if state is None:
            raise MissionNotFoundError(self.mission_id)
        self.state = state
        if state.status.terminal:
            return state
        await self.bus.recover(self.mission_id)
        await self._flush_outbox()
        await self._restore_planner()
        if state.step == 0:
            await self._step([], initial=True)
        elif state.status is MissionStatus.STOPPED:
            # Resuming a stopped mission is asking to try again: plan afresh.
            state.settings = {k: v for k, v in state.settings.items() if k != _HALTED}
            await self._step([], initial=True)
        elif state.status in (MissionStatus.STALLED, MissionStatus.INTERRUPTED):
            await self._commit(Transition(), status=(MissionStatus.RUNNING, "resumed"))
        self._last_progress = self.clock.monotonic()
        # A backlog at the first wake-up waited since now, not since the clock's zero.
        self._received, self._planner_at_received = self._last_progress, self._planner_s
        while not (state.status.terminal or state.status is MissionStatus.STOPPED):
            await self._wake()
        if self._sent:  # published after the last commit (none follows now)
            await self.store.mark_sent(self.mission_id, self._sent)
            self._sent = []
        return state

    async def _restore_planner(self) -> None:
        """After a restart: give the planner its usage so far (budgets keep counting) and, in
        lockstep, the finished results it had not been shown yet."""
        state = self.state
        assert state is not None
        if state.step == 0:
            return
        events = await self.store.events(self.mission_id)
        restore = getattr(self.planner, "restore_usage", None)
        decisions = [e for e in events if e.kind is EventKind.PLANNER_DECISION]
        if restore is not None:
            restore([e.payload for e in decisions])
        if self.settings.lockstep and decisions:
            last = decisions[-1].seq
            for e in events:
                r = e.result() if e.seq > last else None
                rec = None if r is None else state.tasks.get(r.task_id)
                if (
                    r is not None
                    and rec is not None
                    and rec.status.done
                    and (rec.task.attempt == r.attempt)
                ):
                    self._held.append(r)

    async def _wake(self) -> None:
        # A first look without waiting tells a backlog (messages that came while the engine
        # was busy, since the last receive returned) from messages it had to wait for.
        limit = self.settings.max_batch
        deliveries = await self.bus.receive(self.mission_id, max_items=limit, timeout=0.0)
        backlog = bool(deliveries)
        if not backlog:
            timeout = self._receive_timeout()
            deliveries = await self.bus.receive(self.mission_id, max_items=limit, timeout=timeout)
        received = self.clock.monotonic()
        self._cycle = _Cycle(
            origin=self._received if backlog else received,
            received=received,
            planner_at_origin=self._planner_at_received if backlog else self._planner_s,
            planner_at_received=self._planner_s,
            batch=len(deliveries),
        )
        self._received, self._planner_at_received = received, self._planner_s
        if deliveries:
            self._last_progress = received
            await self._process(deliveries)
        else:
            await self._check_stall()
        self._cycle = None

    def _receive_timeout(self) -> float:
        renew_in = self.settings.lease_ttl_s / 3
        assert self.state is not None
        if self.state.status is MissionStatus.RUNNING and self.state.open_task_ids:
            stall_in = self.settings.stall_after_s - (self.clock.monotonic() - self._last_progress)
            return max(0.0, min(renew_in, stall_in))
        return renew_in

    async def _claim(self, *, wait: bool = False) -> None:
        """Take or renew the mission's lease. With `wait`, a lease held by another engine is
        waited out for up to one lease period: after a crash (kill -9) the dead engine's lease
        stays until it expires, and a resume should not have to be retried by hand."""
        ttl = self.settings.lease_ttl_s
        deadline = self.clock.monotonic() + (ttl if wait else 0.0)
        delay = 0.05
        while not await self.store.claim(self.mission_id, self.owner, ttl):
            if self.clock.monotonic() >= deadline:
                raise LeaseLostError(f"mission {self.mission_id} is owned by another engine")
            if delay == 0.05:
                log.info(
                    "mission %s is leased by another engine; waiting up to %.0fs for it to expire",
                    self.mission_id,
                    ttl,
                )
            await self.clock.sleep(delay)  # ok: backoff while another engine's lease runs out
            delay = min(delay * 2, 1.0)
        self._lease_renewed = self.clock.monotonic()

    async def _renew_lease(self) -> None:
        if self.clock.monotonic() - self._lease_renewed >= self.settings.lease_ttl_s / 3:
            await self._claim()

    async def _check_stall(self) -> None:
        state = self.state
        assert state is not None
        idle = self.clock.monotonic() - self._last_progress
        if (
            state.status is MissionStatus.RUNNING
            and state.open_task_ids
            and idle >= self.settings.stall_after_s
        ):
            waiting = sorted(state.pending_tasks)[:5]
            reason = f"no result for {idle:.0f}s; {len(state.open_task_ids)} task(s) pending" + (
                f" ({', '.join(waiting)})" if waiting else ""
            )
            log.warning("mission %s stalled: %s", self.mission_id, reason)
            await self._commit(Transition(), status=(MissionStatus.STALLED, reason))

    async def _flush_outbox(self) -> None:
        """On (re)start: tasks sent before and still open count against the window; the
        unsent ones (a crash between commit and publish, or waiting for a slot) go out as
        the window allows."""
        state = self.state
        assert state is not None
        items = await self.store.unsent(self.mission_id)
        unsent = {i.task.key for i in items}
        for tid in state.open_task_ids:
            rec = state.tasks[tid]
            if rec.status.pending and rec.task.key not in unsent:
                self._in_flight.add(rec.task.key)
        if items:
            log.info("mission %s: %d unsent task(s) to publish", self.mission_id, len(items))
        await self._dispatch(items)

    async def _dispatch(self, planned: Sequence[OutboxItem]) -> None:
        """Queue what the window allows, oldest first; mark it sent."""
        self._waiting.extend(planned)
        if not self._waiting:
            self._limited = False
            return
        state = self.state
        assert state is not None
        tasks = state.tasks

        def current(key: tuple[str, int]) -> bool:
            """The task's attempt `key` is still the one to run, and not finished."""
            rec = tasks.get(key[0])
            return rec is not None and rec.task.attempt == key[1] and not rec.status.done

        # Keys whose task finished or moved on to another attempt free their slot.
        self._in_flight = {key for key in self._in_flight if current(key)}
        free = self.window.size - len(self._in_flight)
        batch: list[OutboxItem] = []
        while free > 0 and self._waiting:
            item = self._waiting.popleft()
            if not current(item.task.key):
                self._sent.append(item.task.key)  # superseded while it waited: not to send
                continue
            batch.append(item)
            free -= 1
        self._limited = bool(self._waiting)
        if batch:
            await self.queue.publish(batch)
            keys = [i.task.key for i in batch]
            self._in_flight.update(keys)
            self._sent += keys

    def _resize(self, cycle: _Cycle) -> None:
        """Feed the window this wake-up's results, now committed: their worst latency as far
        as the engine can tell, and its busy time on them (the planner's excluded)."""
        done = self.clock.monotonic()
        planner = self._planner_s
        self.window.observe(
            latency_s=done - cycle.origin - (planner - cycle.planner_at_origin),
            batch=cycle.batch,
            busy_s=done - cycle.received - (planner - cycle.planner_at_received),
            limited=self._limited,
        )

    # -- one wake-up -----------------------------------------------------------------------

    async def _process(self, deliveries: Sequence[InboundDelivery]) -> None:
        state = self.state
        assert state is not None
        tr = fold(
            state,
            [d.message for d in deliveries],
            now=self.clock.now(),
            retry=self.settings.retry,
        )
        if tr.ignored:
            log.debug(
                "mission %s: %d duplicate/stale message(s) ignored", state.mission_id, tr.ignored
            )
        if tr.budget is not None:
            set_budget = getattr(self.planner, "set_budget", None)
            if set_budget is not None:
                set_budget(tr.budget)
        if tr.cancel is not None:
            apply(state, tr)
            # Nothing more goes out: the tasks waiting for a slot count as sent (never sent).
            self._sent += [item.task.key for item in self._waiting]
            self._waiting.clear()
            await self._commit(tr, status=control_status(tr), ack=deliveries)
        elif tr.changed:
            apply(state, tr)
            await self._step(tr.finished, base=tr, ack=deliveries)
        else:
            await self.bus.ack(self.mission_id, deliveries)

    async def _step(
        self,
        finished: Sequence[ResultEvent],
        *,
        initial: bool = False,
        base: Transition | None = None,
        ack: Sequence[InboundDelivery] = (),
    ) -> None:
        state = self.state
        assert state is not None
        tr = base or Transition()
        halted = state.settings.get(_HALTED)
        if self.settings.lockstep and not initial:
            # Plan only between steps, on every result of the step: the planner's input then
            # does not depend on timing, which keeps LLM replays and evals deterministic.
            self._held.extend(finished)
            if state.pending_tasks:
                finished = ()
            else:
                finished, self._held = self._held, []
        proposal: Plan | None = None
        wants_plan = initial or finished or not state.open_task_ids
        if self.settings.lockstep and state.pending_tasks and not initial:
            wants_plan = False
        if not halted and wants_plan:
            proposal = await self._ask_planner(finished, initial=initial)
        status: tuple[MissionStatus, str] | None = None
        # A refused ensure fails its resource; a planner that re-plans on it (the converger)
        # goes on with the host's other resources at once, a few rounds at most.
        rounds = 3 if getattr(self.planner, "replans_after_refusal", False) else 1
        while proposal is not None and rounds > 0:
            rounds -= 1
            step = state.step + 1
            planned = plan(
                state,
                proposal.tasks,
                step=step,
                policy=self.policy,
                now=self.clock.now(),
                planner=self.planner.name,
            )
            state.step = step
            apply(state, planned)
            tr.hosts.update(planned.hosts)
            tr.tasks.update(planned.tasks)
            tr.outbox.extend(planned.outbox)
            tr.events.append(self._decision_event(proposal, step, len(planned.tasks)))
            tr.events.extend(planned.events)
            if proposal.halt:
                state.settings = {**state.settings, _HALTED: proposal.note or "planner halted"}
                break
            proposal = None
            if planned.refused_on and rounds > 0:
                proposal = await self._replan(planned.refused_on)
        halted = state.settings.get(_HALTED)
        if halted and not state.open_task_ids:
            status = (MissionStatus.STOPPED, f"planning stopped: {halted}")
        if status is None:
            status = decide_status(state, tr, planned_any=bool(tr.outbox))
        if status is None and state.status is not MissionStatus.RUNNING:
            status = (MissionStatus.RUNNING, "progress")
        await self._commit(tr, status=status, ack=ack)

    async def _replan(self, hosts: Sequence[str]) -> Plan | None:
        replan = getattr(self.planner, "replan_hosts", None)
        if replan is None or self.state is None:
            return None
        answer: Plan = await replan(self.state, list(dict.fromkeys(hosts)))
        return answer if answer.tasks else None

    async def _ask_planner(self, finished: Sequence[ResultEvent], *, initial: bool) -> Plan:
        state = self.state
        assert state is not None
        started = self.clock.monotonic()
        try:
            if initial:
                return await self.planner.initial_tasks(state)
            return await self.planner.next_tasks(state, finished)
        except PlannerError as exc:
            log.error("mission %s: planner %s failed: %s", state.mission_id, self.planner.name, exc)
            return Plan(note=f"planner error: {exc}", decision={"error": str(exc)})
        finally:
            self._planner_s += self.clock.monotonic() - started

    def _decision_event(self, proposal: Plan, step: int, accepted: int) -> EventRecord:
        payload: dict[str, Any] = {
            "halt": proposal.halt,
            "planner": self.planner.name,
            "step": step,
            "proposed": len(proposal.tasks),
            "accepted": accepted,
            "note": proposal.note,
            **proposal.decision,
        }
        return EventRecord(
            mission_id=self.mission_id,
            ts=self.clock.now(),
            kind=EventKind.PLANNER_DECISION,
            payload=payload,
        )

    async def _commit(
        self,
        tr: Transition,
        *,
        status: tuple[MissionStatus, str] | None,
        ack: Sequence[InboundDelivery] = (),
    ) -> None:
        """Persist the transition, then publish what it queued and ack the inbound messages
        it folded (`ack`), both at once: each needs only the commit, not the other."""
        state = self.state
        assert state is not None
        now = self.clock.now()
        if status is not None and (status[0], status[1]) != (state.status, state.status_reason):
            new, reason = status
            if new is not state.status:
                tr.events.append(
                    EventRecord(
                        mission_id=state.mission_id,
                        ts=now,
                        kind=EventKind.STATUS_CHANGED,
                        payload={"from": state.status.value, "to": new.value, "reason": reason},
                    )
                )
                log.info(
                    "mission %s: %s → %s (%s)",
                    state.mission_id,
                    state.status.value,
                    new.value,
                    reason,
                )
            state.status, state.status_reason = new, reason
            if new is MissionStatus.COMPLETED:
                state.goal_reached = goal_met(state)
        state.updated_at = now
        outbox = [OutboxItem(task, not_before) for task, not_before in tr.outbox]
        state.version = await self.store.commit(
            Commit(
                mission=state,
                expected_version=state.version,
                hosts=list(tr.hosts.values()),
                tasks=list(tr.tasks.values()),
                events=tr.events,
                outbox=outbox,
                sent=self._sent,
            )
        )
        self._sent = []
        if ack and self._cycle is not None:
            self._resize(self._cycle)
        if ack:
            await asyncio.gather(self._dispatch(outbox), self.bus.ack(self.mission_id, ack))
        else:
            await self._dispatch(outbox)
        if self.listener is not None:
            self.listener(state, tr.events)
        gc_policy.settle()
