"""`reaper worker`: agent workers for one or more OSes, as their own process, until told to stop.

One `Worker` loop per OS (each its own consumer and registry entry), sharing the runners and so
the host connections.

Graceful shutdown is the `Worker`'s: on stop it takes nothing more, gives running tasks its
grace period, then cancels and releases the rest (visible again at once). A worker killed
outright loses nothing either: its leases run out and the tasks are delivered again.

Every heartbeat interval the process records itself in the process registry (see
`reaper.services.registry`) with the worker's counters, and updates its gauges.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

from reaper.agents.hosts import StoreHostResolver
from reaper.agents.runners import default_runners
from reaper.agents.worker import Worker
from reaper.clock import Clock, RealClock
from reaper.errors import BackendError
from reaper.infra.base import Backend, sim_worlds_of
from reaper.models import agent_type_for
from reaper.services.metrics import Metrics
from reaper.services.registry import ProcessInfo, ProcessRegistry, counters_of

__all__ = ["heartbeat_interval", "serve_workers"]

log = logging.getLogger(__name__)


def heartbeat_interval(lease_ttl_s: float) -> float:
    """A third of the lease (so a beat lands in every lease), between 0.1 s and 5 s."""
    return min(5.0, max(0.1, lease_ttl_s / 3))


def _info(worker: Worker, started: datetime, interval_s: float) -> ProcessInfo:
    """The worker's entry in the process registry."""
    return ProcessInfo(
        process_id=worker.worker_id,
        role="worker",
        agent_type=worker.agent_type,
        host=socket.gethostname(),
        pid=os.getpid(),
        started=started,
        last_seen=started,
        interval_s=interval_s,
    )


async def _beats(
    worker: Worker,
    info: ProcessInfo,
    registry: ProcessRegistry,
    backend: Backend,
    metrics: Metrics | None,
    clock: Clock,
) -> None:
    while True:
        stats = worker.stats
        info.last_seen = clock.now()
        info.counters = counters_of(asdict(stats))
        try:
            await registry.beat(info)
            if metrics is not None:
                metrics.set_running(worker.agent_type, stats.in_flight)
                metrics.set_depth(worker.agent_type, await backend.queue.depth(worker.agent_type))
        except BackendError as exc:
            log.warning("worker %s: heartbeat failed: %s", worker.worker_id, exc)
        await clock.sleep(info.interval_s)


async def serve_workers(
    backend: Backend,
    registry: ProcessRegistry,
    *,
    os_names: Sequence[str],
    stop: asyncio.Event,
    concurrency: int = 32,
    worker_id: str | None = None,
    lease_s: float = 30.0,
    grace_s: float = 10.0,
    heartbeat_s: float | None = None,
    metrics: Metrics | None = None,
    clock: Clock | None = None,
    seed: int = 0,
) -> list[Worker]:
    """Run one worker per OS in `os_names` until `stop` is set; returns them (for their
    stats). With several OSes, `worker_id` is suffixed with each OS."""
    clock = clock or RealClock()
    runners = default_runners(seed=seed, clock=clock, worlds=sim_worlds_of(backend.store))
    resolver = StoreHostResolver(backend.store)
    workers = [
        Worker(
            agent_type_for(os_name),
            backend.queue,
            backend.bus,
            resolver,
            runners,
            concurrency=concurrency,
            clock=clock,
            worker_id=None
            if worker_id is None
            else (worker_id if len(os_names) == 1 else f"{worker_id}-{os_name}"),
            lease_s=lease_s,
            grace_s=grace_s,
            on_result=metrics.observe_result if metrics is not None else None,
        )
        for os_name in os_names
    ]
    now = clock.now()
    interval_s = heartbeat_s or heartbeat_interval(lease_s)
    beats = [
        asyncio.create_task(
            _beats(worker, _info(worker, now, interval_s), registry, backend, metrics, clock)
        )
        for worker in workers
    ]
    try:
        await asyncio.gather(*(worker.run(stop=stop) for worker in workers))
    finally:
        for beat in beats:
            beat.cancel()
        await asyncio.gather(*beats, return_exceptions=True)
        for worker in workers:
            try:
                await registry.remove(worker.worker_id)
            except BackendError as exc:
                log.warning("worker %s: could not deregister: %s", worker.worker_id, exc)
        for runner in {id(r): r for r in runners.values()}.values():
            await runner.close()
    return workers
