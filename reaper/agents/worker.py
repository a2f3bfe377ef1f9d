"""The agent worker loop: take tasks, run them on hosts, publish results, then ack.

One `Worker` serves one agent type with at most `concurrency` tasks in flight. It leases as many
tasks as it has free slots in one `take` call, so throughput follows the batch size. Delivery is
at-least-once: a result is published on the bus before its task is acked, so a crash in between
re-runs the task and the engine drops the duplicate result by (task_id, attempt).

A runner that can say a task will finish without suspending (`completes_inline(task, conn)`,
e.g. the sim runner with zero latency) is run inline in the loop: no asyncio task, no timeout
timer. Before publishing a batch's inline results the worker takes, without waiting, what the
queue already holds (up to its free slots, while the oldest result is under PUBLISH_EVERY_S
old), so a queue that hands tasks over a few at a time (RabbitMQ pushes deliveries one by one)
still pays one bus call per group, not one per take. Everything else runs as its own asyncio
task under the action's catalog timeout, with the leases of running tasks extended every
`lease_s / 3` on the clock (the heartbeat).

Failures become error results, never a crashed loop: TransportError keeps its error_code and
retriable flag; a timeout is TIMEOUT (retriable); an unknown host UNKNOWN_HOST; a transport with
no runner UNSUPPORTED_TRANSPORT; any other exception from a runner AGENT_ERROR (logged with its
traceback). On `stop` the worker takes nothing more, gives running tasks `grace_s` to finish,
then cancels and releases the rest (visible again at once for another worker).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from reaper import gc_policy
from reaper.actions import CATALOG
from reaper.agents.base import ActionOutcome, ActionRunner
from reaper.agents.hosts import HostResolver, StoreHostResolver
from reaper.clock import Clock, RealClock
from reaper.errors import BackendError, TransportError
from reaper.infra.base import EventBus, TaskDelivery, TaskQueue
from reaper.models import HostConnection, ResultEvent, ResultStatus, Task, trusted
from reaper.secrets import redact, redact_value

__all__ = [
    "HostResolver",
    "StoreHostResolver",
    "Worker",
    "WorkerStats",
    "default_worker_id",
]

log = logging.getLogger(__name__)

InlineCheck = Callable[[Task, HostConnection], bool]


@dataclass(slots=True)
class WorkerStats:
    """Counters for the console and metrics; read them, do not write them."""

    taken: int = 0
    succeeded: int = 0
    failed: int = 0
    in_flight: int = 0
    released: int = 0
    publish_errors: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _catalog_timeout(task: Task) -> float:
    spec = CATALOG.get(task.action)
    return task.timeout_s if spec is None else spec.timeout_s


# What `ResultEvent(...)` in `Worker._result` records as set: every field but event_type.
_RESULT_SET = frozenset(ResultEvent.model_fields) - {"event_type"}
# Results of inline tasks are published in groups, at most this old: a batch of many does not
# hold its first results back until its last is done.
PUBLISH_EVERY_S = 0.002


def _plain(o: ActionOutcome) -> bool:
    """True when each value of the outcome is exactly of its result field's type (what
    runners return), so validating the result could neither fail nor convert anything."""
    return (
        type(o.status) is ResultStatus
        and type(o.summary) is str
        and type(o.stdout_tail) is str
        and type(o.stderr_tail) is str
        and type(o.data) is dict
        and type(o.retriable) is bool
        and (o.error_code is None or type(o.error_code) is str)
        and (o.logs_ref is None or type(o.logs_ref) is str)
        and all(type(k) is str for k in o.data)
    )


def _masked(text: object) -> object:
    """`text` redacted when it is a string (anything else is left to validation)."""
    return redact(text) if isinstance(text, str) else text


def _error(code: str, summary: str, *, retriable: bool = False) -> ActionOutcome:
    return ActionOutcome(
        status=ResultStatus.ERROR, summary=summary, error_code=code, retriable=retriable
    )


class Worker:
    def __init__(
        self,
        agent_type: str,
        queue: TaskQueue,
        bus: EventBus,
        hosts: HostResolver,
        runners: Mapping[str, ActionRunner],
        *,
        concurrency: int = 8,
        clock: Clock | None = None,
        worker_id: str | None = None,
        lease_s: float = 30.0,
        grace_s: float = 10.0,
        idle_timeout_s: float = 0.05,
        action_timeout: Callable[[Task], float] | None = None,
        on_result: Callable[[ResultEvent], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.agent_type = agent_type
        self.worker_id = worker_id or default_worker_id()
        self.stats = WorkerStats()
        self._queue = queue
        self._bus = bus
        self._hosts = hosts
        self._runners = dict(runners)
        self._inline: dict[str, InlineCheck] = {
            name: check
            for name, runner in self._runners.items()
            if callable(check := getattr(runner, "completes_inline", None))
        }
        self._concurrency = concurrency
        self._clock = clock or RealClock()
        self._lease_s = lease_s
        self._grace_s = grace_s
        self._idle_timeout_s = idle_timeout_s
        self._timeout_for = action_timeout or _catalog_timeout
        self._on_result = on_result
        self._running: dict[asyncio.Task[None], TaskDelivery] = {}
        self._wake = asyncio.Event()

    # -- the loop ----------------------------------------------------------------------

    async def run(self, *, until_idle: bool = False, stop: asyncio.Event | None = None) -> None:
        """Serve until `stop` is set (or, with `until_idle`, until a take finds nothing and
        nothing is running)."""
        stop = stop or asyncio.Event()
        watcher = asyncio.create_task(self._watch(stop))
        heartbeat = asyncio.create_task(self._heartbeat())
        log.info(
            "worker %s serving %s (concurrency %d)",
            self.worker_id,
            self.agent_type,
            self._concurrency,
        )
        try:
            await self._loop(stop, watcher, until_idle)
        except asyncio.CancelledError:
            await self._drain(0.0)
            raise
        else:
            await self._drain(self._grace_s)
        finally:
            watcher.cancel()
            heartbeat.cancel()
        log.info("worker %s stopped: %s", self.worker_id, self.stats)

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _loop(self, stop: asyncio.Event, watcher: asyncio.Task[None], idle: bool) -> None:
        eager = False  # the last take found work: try a non-blocking take first
        failures = 0
        while not stop.is_set():
            free = self._concurrency - len(self._running)
            if free <= 0:
                self._wake.clear()
                await self._wake.wait()  # a slot freed or stop was set
                continue
            try:
                batch = await self._take(free, 0.0) if eager else []
                if not batch:
                    timeout = self._idle_timeout_s if idle else None
                    batch = await self._take_or_stop(free, timeout, watcher)
            except BackendError as exc:
                failures += 1
                delay = min(0.1 * 2 ** min(failures, 6), 5.0)
                log.warning(
                    "worker %s: take failed (%s); retrying in %.1fs", self.worker_id, exc, delay
                )
                await self._clock.sleep(delay)
                continue
            failures = 0
            eager = bool(batch)
            if stop.is_set():
                await self._release(batch)
                break
            if not batch:
                if idle and not self._running:
                    return
                continue
            await self._dispatch(batch, stop)
            gc_policy.settle()
            # Inline work never suspends: yield once per batch so the engine (and anything
            # else on this loop) runs between batches.
            await asyncio.sleep(0)

    async def _take(self, n: int, timeout: float | None) -> list[TaskDelivery]:
        return await self._queue.take(
            self.agent_type,
            max_items=n,
            timeout=timeout,
            lease_s=self._lease_s,
            worker_id=self.worker_id,
        )

    async def _take_or_stop(
        self, n: int, timeout: float | None, watcher: asyncio.Task[None]
    ) -> list[TaskDelivery]:
        take = asyncio.ensure_future(self._take(n, timeout))
        try:
            await asyncio.wait((take, watcher), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            take.cancel()  # a lease it may already hold runs out and the task comes back
            raise
        if not take.done():
            take.cancel()
            try:
                return await take  # it may have completed while being cancelled
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                return []
        return take.result()

    # -- running one delivery ----------------------------------------------------------

    async def _dispatch(self, batch: Sequence[TaskDelivery], stop: asyncio.Event) -> None:
        stats = self.stats
        stats.taken += len(batch)
        stats.in_flight += len(batch)
        finished: list[tuple[TaskDelivery, ResultEvent]] = []
        published: list[TaskDelivery] = []
        pending = list(batch)
        index = 0  # deliveries of `pending` before this one are finished or spawned
        first = 0.0  # when the oldest result in `finished` was built
        try:
            while pending:
                index = 0
                for delivery in pending:
                    started = self._clock.monotonic()
                    outcome = await self._start(delivery, started)
                    index += 1
                    if outcome is not None:
                        if not finished:
                            first = started
                        finished.append((delivery, self._build(delivery.task, outcome, started)))
                        stats.in_flight -= 1
                        if self._clock.monotonic() - first >= PUBLISH_EVERY_S:
                            # A long batch does not hold its early results back.
                            out, finished = finished, []
                            published += await self._publish_all(out)
                pending = await self._more(finished, first, stop)
        except BaseException:
            # Cancelled mid-batch (only possible where something suspended): hand back what
            # this batch had not finished; a result already published is dropped as a
            # duplicate when the task runs again.
            rest = pending[index:]
            stats.in_flight -= len(rest)
            await asyncio.shield(self._release(rest))
            raise
        finally:
            # Inline results go out together: one bus call (one transaction, one pipeline)
            # per PUBLISH_EVERY_S of work, and one ack per batch.
            if finished:
                published += await self._publish_all(finished)
            if published:
                await self._ack(published)

    async def _more(
        self,
        finished: Sequence[tuple[TaskDelivery, ResultEvent]],
        first: float,
        stop: asyncio.Event,
    ) -> list[TaskDelivery]:
        """Deliveries the queue already holds, taken without waiting, to run before the
        finished results are published: a queue that hands tasks over a few at a time (a
        RabbitMQ consumer's prefetch) then pays one bus transaction per PUBLISH_EVERY_S, not
        one per take. Slots held by unpublished results count as taken."""
        if not finished or stop.is_set() or self._clock.monotonic() - first >= PUBLISH_EVERY_S:
            return []
        free = self._concurrency - len(self._running) - len(finished)
        if free <= 0:
            return []
        try:
            more = await self._take(free, 0.0)
        except BackendError as exc:
            log.debug("worker %s: draining take failed (%s)", self.worker_id, exc)
            return []
        self.stats.taken += len(more)
        self.stats.in_flight += len(more)
        return more

    async def _start(self, delivery: TaskDelivery, started: float) -> ActionOutcome | None:
        """Run the delivery inline and return its outcome, or spawn it and return None."""
        task = delivery.task
        try:
            conn = await self._hosts.resolve(task.mission_id, task.host_id)
        except BackendError as exc:
            return _error("HOST_LOOKUP_FAILED", f"host lookup failed: {exc}", retriable=True)
        if conn is None:
            return _error(
                "UNKNOWN_HOST", f"no host {task.host_id!r} in mission {task.mission_id!r}"
            )
        runner = self._runners.get(conn.transport)
        if runner is None:
            return _error(
                "UNSUPPORTED_TRANSPORT", f"this worker has no {conn.transport!r} transport"
            )
        check = self._inline.get(conn.transport)
        if check is not None and check(task, conn):
            return await self._call(runner, task, conn, None)
        self._spawn(delivery, runner, conn, started)
        return None

    def _spawn(
        self, delivery: TaskDelivery, runner: ActionRunner, conn: HostConnection, started: float
    ) -> None:
        job = asyncio.create_task(self._run_one(delivery, runner, conn, started))
        self._running[job] = delivery
        job.add_done_callback(self._finished)

    def _finished(self, job: asyncio.Task[None]) -> None:
        self._running.pop(job, None)
        self.stats.in_flight -= 1
        self._wake.set()
        if not job.cancelled() and (exc := job.exception()) is not None:
            log.error("worker %s: task bookkeeping failed", self.worker_id, exc_info=exc)

    async def _run_one(
        self, delivery: TaskDelivery, runner: ActionRunner, conn: HostConnection, started: float
    ) -> None:
        outcome = await self._call(runner, delivery.task, conn, self._timeout_for(delivery.task))
        if await self._publish(delivery, outcome, started):
            await self._ack([delivery])

    async def _call(
        self, runner: ActionRunner, task: Task, conn: HostConnection, timeout: float | None
    ) -> ActionOutcome:
        try:
            if timeout is None:
                return await runner.run(task, task.host_id, conn)
            async with asyncio.timeout(timeout):
                return await runner.run(task, task.host_id, conn)
        except TransportError as exc:
            return _error(exc.error_code, str(exc), retriable=exc.retriable)
        except TimeoutError:
            return _error("TIMEOUT", f"{task.action} timed out after {timeout}s", retriable=True)
        except Exception as exc:
            log.exception(
                "worker %s: runner failed on %s (%s)", self.worker_id, task.task_id, task.action
            )
            return _error("AGENT_ERROR", f"agent error: {type(exc).__name__}: {exc}")

    def _result(self, task: Task, outcome: ActionOutcome, started: float) -> ResultEvent:
        ts = self._clock.now()
        duration = self._clock.monotonic() - started
        values = {
            "task_id": task.task_id,
            "mission_id": task.mission_id,
            "host_id": task.host_id,
            "agent_type": task.agent_type,
            "action": task.action,
            "attempt": task.attempt,
            "status": outcome.status,
            # Where host output enters the system: known secrets and secret-keyed pairs are
            # masked here, before the result reaches the bus, the store, a planner or a log.
            "summary": _masked(outcome.summary),
            "stdout_tail": _masked(outcome.stdout_tail),
            "stderr_tail": _masked(outcome.stderr_tail),
            "data": redact_value(outcome.data),
            "logs_ref": outcome.logs_ref,
            "ts": ts,
            "retriable": outcome.retriable,
            "error_code": outcome.error_code,
            "duration_s": duration,
        }
        if _plain(outcome) and ts.tzinfo is not None and type(duration) is float:
            # The common case, once per task: every value already has its field's exact type,
            # so validation would only copy `data`; build the result directly (event_type
            # first: declaration order).
            values = {"event_type": "task.result", **values, "data": dict(values["data"])}
            return trusted(ResultEvent, values, set(_RESULT_SET))
        return ResultEvent(**values)

    def _build(self, task: Task, outcome: ActionOutcome, started: float) -> ResultEvent:
        try:
            return self._result(task, outcome, started)
        except Exception as exc:  # a runner returned something that is not a valid outcome
            log.exception("worker %s: bad outcome for %s", self.worker_id, task.task_id)
            outcome = _error("AGENT_ERROR", f"agent error: invalid outcome: {exc}")
            return self._result(task, outcome, started)

    async def _publish(
        self, delivery: TaskDelivery, outcome: ActionOutcome, started: float
    ) -> bool:
        result = self._build(delivery.task, outcome, started)
        return bool(await self._publish_all([(delivery, result)]))

    async def _publish_all(
        self, finished: Sequence[tuple[TaskDelivery, ResultEvent]]
    ) -> list[TaskDelivery]:
        """Publish results; return the deliveries whose results are out (to ack)."""
        results = [result for _, result in finished]
        try:
            if len(results) == 1:
                await self._bus.publish(results[0])
            else:
                await self._bus.publish_many(results)
        except Exception:
            # Not acked: the leases run out and the tasks are delivered again.
            self.stats.publish_errors += len(results)
            log.exception("worker %s: publishing %d result(s) failed", self.worker_id, len(results))
            return []
        stats = self.stats
        for result in results:
            if result.status is ResultStatus.SUCCESS:
                stats.succeeded += 1
            else:
                stats.failed += 1
                code = result.error_code or "ERROR"
                stats.errors[code] = stats.errors.get(code, 0) + 1
            if self._on_result is not None:
                self._on_result(result)
        return [delivery for delivery, _ in finished]

    async def _ack(self, deliveries: Sequence[TaskDelivery]) -> None:
        try:
            await self._queue.ack(deliveries)
        except Exception:
            # The results are out; a redelivery re-runs the tasks and the engine drops the
            # duplicate results.
            log.exception("worker %s: ack of %d tasks failed", self.worker_id, len(deliveries))

    async def _release(self, deliveries: Sequence[TaskDelivery]) -> None:
        if not deliveries:
            return
        try:
            await self._queue.release(deliveries)
            self.stats.released += len(deliveries)
        except Exception:
            log.exception("worker %s: release failed; leases will expire", self.worker_id)

    # -- heartbeat and shutdown --------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval = self._lease_s / 3
        while True:
            await self._clock.sleep(interval)
            if self._running:
                try:
                    await self._queue.extend(list(self._running.values()), self._lease_s)
                except Exception as exc:
                    log.warning("worker %s: lease extension failed: %s", self.worker_id, exc)

    async def _drain(self, grace_s: float) -> None:
        if not self._running:
            return
        if grace_s > 0:
            await asyncio.wait(list(self._running), timeout=grace_s)
        left = dict(self._running)
        for job in left:
            job.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        await self._release(list(left.values()))
