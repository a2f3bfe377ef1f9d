"""The worker loop against the in-memory backend."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from reaper.agents.base import ActionOutcome
from reaper.agents.hosts import StoreHostResolver
from reaper.agents.transports.sim import SimRunner
from reaper.agents.worker import Worker
from reaper.clock import ManualClock
from reaper.errors import BackendError, TransportError
from reaper.infra.base import TaskDelivery
from reaper.infra.memory import MemoryEventBus, MemoryMissionStore, MemoryTaskQueue
from reaper.models import HostConnection, InboundMessage, ResultStatus, Task

from .helpers import MISSION, GateRunner, host, mission, ok, publish, results, task

LINUX = "reaper-linux"


@pytest.fixture
async def backend() -> tuple[MemoryMissionStore, MemoryTaskQueue, MemoryEventBus]:
    store, queue, bus = MemoryMissionStore(), MemoryTaskQueue(), MemoryEventBus()
    await mission(store, host("h1"), host("h2"), host("w1", "windows"), host("x", transport="ssh"))
    return store, queue, bus


def worker(backend: Any, runners: dict[str, Any], **kw: Any) -> Worker:
    store, queue, bus = backend
    return Worker(LINUX, queue, bus, StoreHostResolver(store), runners, **kw)


class FnRunner:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
        return await self.fn(task)  # type: ignore[no-any-return]

    async def close(self) -> None:
        return None


async def test_runs_tasks_publishes_results_then_acks(backend: Any) -> None:
    store, queue, bus = backend
    log: list[tuple[str, str]] = []

    class RecordingBus(MemoryEventBus):
        async def publish(self, message: InboundMessage) -> None:
            log.append(("publish", message.task_id))
            await super().publish(message)

    class RecordingQueue(MemoryTaskQueue):
        async def ack(self, deliveries: Sequence[TaskDelivery]) -> None:
            log.extend(("ack", d.task.task_id) for d in deliveries)
            await super().ack(deliveries)

    queue, bus = RecordingQueue(), RecordingBus()
    tasks = [task(i, host_id=("h1", "h2")[i % 2]) for i in range(20)]
    await publish(queue, tasks)
    w = Worker(LINUX, queue, bus, StoreHostResolver(store), {"sim": SimRunner()}, concurrency=4)
    await asyncio.wait_for(w.run(until_idle=True), 5)

    got = await results(bus, 20)
    assert {r.task_id for r in got} == {t.task_id for t in tasks}
    assert all(r.ok and r.agent_type == LINUX and r.data["os"] for r in got)
    assert w.stats.taken == 20 and w.stats.succeeded == 20 and w.stats.in_flight == 0
    for t in tasks:
        assert log.index(("publish", t.task_id)) < log.index(("ack", t.task_id))
    assert await queue.depth(LINUX) == 0
    assert not queue._leased  # every delivery acked


async def test_concurrency_is_bounded(backend: Any) -> None:
    _, queue, bus = backend
    gate = GateRunner(inner=SimRunner())
    gate.full_at = 3
    await publish(queue, [task(i) for i in range(10)])
    w = worker(backend, {"sim": gate}, concurrency=3)
    run = asyncio.create_task(w.run(until_idle=True))
    await asyncio.wait_for(gate.full.wait(), 5)
    assert w.stats.in_flight == 3
    assert await queue.depth(LINUX) == 7  # took only as many as it had free slots
    gate.gate.set()
    await asyncio.wait_for(run, 5)
    assert len(await results(bus, 10)) == 10
    assert gate.max_in_flight == 3


async def test_timeout_is_a_retriable_error(backend: Any) -> None:
    _, queue, bus = backend

    async def hang(t: Task) -> ActionOutcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    await publish(queue, [task(1)])
    w = worker(backend, {"sim": FnRunner(hang)}, action_timeout=lambda t: 0.01)
    await asyncio.wait_for(w.run(until_idle=True), 5)
    (r,) = await results(bus, 1)
    assert r.status is ResultStatus.ERROR and r.error_code == "TIMEOUT" and r.retriable


async def test_runner_exception_is_agent_error_and_loop_goes_on(
    backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, queue, bus = backend

    async def sometimes(t: Task) -> ActionOutcome:
        if t.task_id == "t-1":
            raise RuntimeError("boom")
        if t.task_id == "t-2":
            raise TransportError("bad key", error_code="HOST_KEY_MISMATCH", retriable=False)
        return ok()

    await publish(queue, [task(i) for i in range(5)])
    w = worker(backend, {"sim": FnRunner(sometimes)})
    with caplog.at_level(logging.ERROR, logger="reaper.agents.worker"):
        await asyncio.wait_for(w.run(until_idle=True), 5)
    by_id = {r.task_id: r for r in await results(bus, 5)}
    assert by_id["t-1"].error_code == "AGENT_ERROR" and not by_id["t-1"].retriable
    assert "boom" in by_id["t-1"].summary
    assert by_id["t-2"].error_code == "HOST_KEY_MISMATCH" and not by_id["t-2"].retriable
    assert all(by_id[f"t-{i}"].ok for i in (0, 3, 4))
    assert any(rec.exc_info and "boom" in str(rec.exc_info[1]) for rec in caplog.records)
    assert w.stats.failed == 2 and w.stats.errors == {"AGENT_ERROR": 1, "HOST_KEY_MISMATCH": 1}


async def test_unknown_host_and_unsupported_transport(backend: Any) -> None:
    _, queue, bus = backend
    await publish(queue, [task(1, host_id="nope"), task(2, host_id="x"), task(3)])
    w = worker(backend, {"sim": SimRunner()})
    await asyncio.wait_for(w.run(until_idle=True), 5)
    by_id = {r.task_id: r for r in await results(bus, 3)}
    assert by_id["t-1"].error_code == "UNKNOWN_HOST" and not by_id["t-1"].retriable
    assert by_id["t-2"].error_code == "UNSUPPORTED_TRANSPORT" and not by_id["t-2"].retriable
    assert by_id["t-3"].ok


async def test_sim_faults_flow_through_as_results(backend: Any) -> None:
    store, queue, bus = MemoryMissionStore(), MemoryTaskQueue(), MemoryEventBus()
    await mission(store, host("f", faults=[{"kind": "flaky", "times": 1}]))
    await publish(queue, [task(1, host_id="f"), task(1, host_id="f", attempt=2)])
    w = Worker(LINUX, queue, bus, StoreHostResolver(store), {"sim": SimRunner()})
    await asyncio.wait_for(w.run(until_idle=True), 5)
    by_attempt = {r.attempt: r for r in await results(bus, 2)}
    assert by_attempt[1].error_code == "CONNECTION_RESET" and by_attempt[1].retriable
    assert by_attempt[2].ok


async def test_graceful_stop_releases_unfinished_work(backend: Any) -> None:
    _, queue, bus = backend
    gate = GateRunner()
    gate.full_at = 2
    await publish(queue, [task(i) for i in range(5)])
    stop = asyncio.Event()
    w = worker(backend, {"sim": gate}, concurrency=2, grace_s=0.0)
    run = asyncio.create_task(w.run(stop=stop))
    await asyncio.wait_for(gate.full.wait(), 5)
    stop.set()
    await asyncio.wait_for(run, 5)
    assert w.stats.released == 2 and w.stats.in_flight == 0
    assert await queue.depth(LINUX) == 5  # all visible again at once
    assert await bus.receive(MISSION, timeout=0) == []


async def test_graceful_stop_lets_running_tasks_finish(backend: Any) -> None:
    _, queue, bus = backend
    gate = GateRunner()
    gate.full_at = 2
    await publish(queue, [task(i) for i in range(5)])
    stop = asyncio.Event()
    w = worker(backend, {"sim": gate}, concurrency=2, grace_s=5.0)
    run = asyncio.create_task(w.run(stop=stop))
    await asyncio.wait_for(gate.full.wait(), 5)
    stop.set()
    gate.gate.set()
    await asyncio.wait_for(run, 5)
    assert len(await results(bus, 2)) == 2
    assert w.stats.released == 0 and await queue.depth(LINUX) == 3
    assert not queue._leased


async def test_stop_interrupts_a_blocking_take(backend: Any) -> None:
    stop = asyncio.Event()
    w = worker(backend, {"sim": SimRunner()})
    run = asyncio.create_task(w.run(stop=stop))
    await asyncio.sleep(0)  # let it block in take
    stop.set()
    await asyncio.wait_for(run, 5)
    assert w.stats.taken == 0


async def test_until_idle_returns_on_an_empty_queue(backend: Any) -> None:
    w = worker(backend, {"sim": SimRunner()})
    await asyncio.wait_for(w.run(until_idle=True), 5)
    assert w.stats.taken == 0


async def test_heartbeat_extends_leases_of_running_tasks() -> None:
    clock = ManualClock()
    store, bus = MemoryMissionStore(clock), MemoryEventBus()
    extended = asyncio.Event()
    extends: list[list[str]] = []

    class Queue(MemoryTaskQueue):
        async def extend(self, deliveries: Sequence[TaskDelivery], lease_s: float) -> None:
            extends.append([d.task.task_id for d in deliveries])
            extended.set()
            await super().extend(deliveries, lease_s)

    queue = Queue(clock)
    await mission(store, host("h1"))
    gate = GateRunner()
    gate.full_at = 1
    await publish(queue, [task(1)])
    w = Worker(LINUX, queue, bus, StoreHostResolver(store), {"sim": gate}, clock=clock, lease_s=3.0)
    run = asyncio.create_task(w.run(until_idle=True))
    await asyncio.wait_for(gate.full.wait(), 5)
    clock.advance(1.0)  # the heartbeat runs every lease_s / 3
    await asyncio.wait_for(extended.wait(), 5)
    assert extends == [["t-1"]]
    gate.gate.set()
    await asyncio.wait_for(run, 5)
    assert (await results(bus, 1))[0].ok


async def test_failed_publish_leaves_the_task_unacked() -> None:
    clock = ManualClock()
    store = MemoryMissionStore(clock)
    queue = MemoryTaskQueue(clock)
    await mission(store, host("h1"))

    class DownBus(MemoryEventBus):
        async def publish(self, message: InboundMessage) -> None:
            raise BackendError("bus down")

    await publish(queue, [task(1)])
    w = Worker(
        LINUX,
        queue,
        DownBus(),
        StoreHostResolver(store),
        {"sim": SimRunner()},
        clock=clock,
        lease_s=5.0,
    )
    await asyncio.wait_for(w.run(until_idle=True), 5)
    assert w.stats.publish_errors == 1 and len(queue._leased) == 1
    clock.advance(5.0)  # the lease runs out: delivered again
    (again,) = await queue.take(LINUX, timeout=0)
    assert again.task.task_id == "t-1" and again.delivery_count == 2


async def test_mixed_os_lab_through_one_worker_per_agent_type(backend: Any) -> None:
    store, queue, bus = backend
    sim = SimRunner(seed=7)
    await publish(queue, [task(i, host_id="h1") for i in range(3)])
    await publish(queue, [task(f"w{i}", host_id="w1", action="windows.discover") for i in range(3)])
    workers = [
        Worker(at, queue, bus, StoreHostResolver(store), {"sim": sim})
        for at in (LINUX, "reaper-windows")
    ]
    await asyncio.wait_for(asyncio.gather(*(w.run(until_idle=True) for w in workers)), 5)
    got = await results(bus, 6)
    assert {r.agent_type for r in got} == {LINUX, "reaper-windows"}
    assert all("computer" in r.data for r in got if r.host_id == "w1")


async def test_cancelled_worker_releases_running_tasks(backend: Any) -> None:
    _, queue, bus = backend
    gate = GateRunner()
    gate.full_at = 2
    await publish(queue, [task(i) for i in range(3)])
    w = worker(backend, {"sim": gate}, concurrency=2)
    run = asyncio.create_task(w.run())
    await asyncio.wait_for(gate.full.wait(), 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert w.stats.released == 2 and await queue.depth(LINUX) == 3
    assert await bus.receive(MISSION, timeout=0) == []


async def test_cancel_during_a_batch_releases_its_unfinished_deliveries(backend: Any) -> None:
    store, queue, bus = backend
    blocked = asyncio.Event()

    class SlowLookup(StoreHostResolver):
        async def resolve(self, mission_id: str, host_id: str) -> Any:
            if host_id == "h2":
                blocked.set()
                await asyncio.Event().wait()
            return await super().resolve(mission_id, host_id)

    await publish(queue, [task(1, "h1"), task(2, "h2"), task(3, "h1")])
    w = Worker(LINUX, queue, bus, SlowLookup(store), {"sim": SimRunner()}, concurrency=8)
    run = asyncio.create_task(w.run())
    await asyncio.wait_for(blocked.wait(), 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    (first,) = await results(bus, 1)
    assert first.task_id == "t-1"
    assert w.stats.released == 2 and w.stats.in_flight == 0
    assert await queue.depth(LINUX) == 2 and not queue._leased


async def test_a_long_inline_batch_publishes_its_results_as_they_age(backend: Any) -> None:
    store, queue, _ = backend
    clock = ManualClock()
    groups: list[list[str]] = []

    class RecordingBus(MemoryEventBus):
        async def publish_many(self, messages: Sequence[InboundMessage]) -> None:
            groups.append([m.task_id for m in messages])
            await super().publish_many(messages)

    class MillisecondSim(SimRunner):
        """Inline, and 1 ms of the worker's clock a task."""

        async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
            clock.advance(0.001)
            return await super().run(task, host_id, conn)

    bus = RecordingBus()
    acked: list[str] = []

    class RecordingQueue(MemoryTaskQueue):
        async def ack(self, deliveries: Sequence[TaskDelivery]) -> None:
            acked.extend(d.task.task_id for d in deliveries)
            await super().ack(deliveries)

    queue = RecordingQueue()
    tasks = [task(i, "h1") for i in range(10)]
    await publish(queue, tasks)
    runners = {"sim": MillisecondSim()}
    w = Worker(LINUX, queue, bus, StoreHostResolver(store), runners, concurrency=10, clock=clock)
    await asyncio.wait_for(w.run(until_idle=True), 5)

    # One batch of ten; a group goes out once its first result is PUBLISH_EVERY_S (2 ms) old.
    assert groups == [[f"t-{i}", f"t-{i + 1}"] for i in range(0, 10, 2)]
    assert sorted(acked) == sorted(t.task_id for t in tasks)  # one ack, after every publish
    assert w.stats.succeeded == 10 and not queue._leased


async def test_tasks_the_queue_already_holds_join_the_results_of_one_bus_call(
    backend: Any,
) -> None:
    """A queue handing over one task a take (a RabbitMQ consumer fed delivery by delivery):
    the worker takes what is already there before publishing, so six inline tasks cost one
    bus call, not six; every ack still follows its result's publication."""
    store, _, _ = backend
    clock = ManualClock()  # still: no group ages past PUBLISH_EVERY_S
    calls: list[list[str]] = []
    log: list[tuple[str, str]] = []

    class RecordingBus(MemoryEventBus):
        async def publish(self, message: InboundMessage) -> None:
            await self.publish_many([message])

        async def publish_many(self, messages: Sequence[InboundMessage]) -> None:
            calls.append([m.task_id for m in messages])
            log.extend(("publish", m.task_id) for m in messages)
            for m in messages:
                await MemoryEventBus.publish(self, m)

    class OneAtATime(MemoryTaskQueue):
        async def take(self, agent_type: str, **kw: Any) -> list[TaskDelivery]:
            return await super().take(agent_type, **{**kw, "max_items": 1})

        async def ack(self, deliveries: Sequence[TaskDelivery]) -> None:
            log.extend(("ack", d.task.task_id) for d in deliveries)
            await super().ack(deliveries)

    queue, bus = OneAtATime(clock), RecordingBus()
    tasks = [task(i, "h1") for i in range(6)]
    await publish(queue, tasks)
    w = Worker(LINUX, queue, bus, StoreHostResolver(store), {"sim": SimRunner()}, clock=clock)
    await asyncio.wait_for(w.run(until_idle=True), 5)

    assert calls == [[t.task_id for t in tasks]]
    for t in tasks:
        assert log.index(("publish", t.task_id)) < log.index(("ack", t.task_id))
    assert w.stats.taken == 6 and w.stats.succeeded == 6 and w.stats.in_flight == 0
    assert not queue._leased
