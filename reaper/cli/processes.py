"""Engines and workers as separate processes: what `reaper worker`, `reaper engine` and the
process part of `reaper status` run.

    reaper worker --os linux --backend URL [--concurrency N] [--worker-id ID] [--metrics-port P]
    reaper engine --backend URL [--mission ID ...] [--metrics-port P]

Both run until SIGTERM or SIGINT and then stop gracefully (workers finish or hand back
in-flight tasks; engines release their mission leases). `lease_ttl_s` (config, or
REAPER_LEASE_TTL_S) sets both the mission lease of engines and the task lease of workers:
how long a killed process's work stays invisible before another process takes it over.
`heartbeat_s` (REAPER_HEARTBEAT_S; default a third of the lease, 0.1-5 s) is the heartbeat
interval; `worker_grace_s` (REAPER_WORKER_GRACE_S, default 10) is how long a stopping worker
lets running tasks finish before it hands them back.
Heartbeats go to the process registry beside the mission store (`reaper.services.registry`).
`reaper housekeep` trims what finished missions left behind.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from reaper.cli.context import Cli, cli_backend
from reaper.clock import RealClock
from reaper.errors import BackendError
from reaper.infra.base import Backend
from reaper.infra.factory import open_backend
from reaper.models import utcnow
from reaper.services.alerts import alerts_from_processes, alerts_from_state, render_banners
from reaper.services.engine import EngineService
from reaper.services.housekeeping import housekeep
from reaper.services.metrics import Metrics
from reaper.services.registry import ProcessInfo, ProcessRegistry, open_registry
from reaper.services.worker import heartbeat_interval, serve_workers
from reaper.signals import stop_on_signals

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "cmd_engine",
    "cmd_housekeep",
    "cmd_worker",
    "registry_for",
    "render_processes",
    "show_processes",
]

log = logging.getLogger(__name__)


def registry_for(cli: Cli) -> ProcessRegistry:
    cfg = cli.config
    return open_registry(cfg.backend, store=cfg.store, default_db=cfg.db)


async def _open(cli: Cli) -> tuple[Backend, ProcessRegistry]:
    cfg = cli.config
    cfg.db.parent.mkdir(parents=True, exist_ok=True)
    backend = open_backend(
        cfg.backend, store=cfg.store, queue=cfg.queue, bus=cfg.bus, default_db=cfg.db
    )
    try:
        return backend, registry_for(cli)
    except BaseException:
        await backend.close()
        raise


def _metrics(cli: Cli) -> Metrics | None:
    port = getattr(cli.args, "metrics_port", None) or cli.config.metrics_port
    if port is None:
        return None
    metrics = Metrics()
    bound = metrics.serve(int(port))
    log.info("serving Prometheus metrics on port %d", bound)
    return metrics


async def _close(backend: Backend, registry: ProcessRegistry, metrics: Metrics | None) -> None:
    if metrics is not None:
        metrics.close()
    for closer in (registry.close, backend.close):
        try:
            await closer()
        except BackendError as exc:
            log.warning("closing: %s", exc)


def _freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, classes, clients: hundreds of thousands
    of objects) out of the collector's reach: a full collection then scans only what the
    service made since, instead of pausing a worker for 40-80 ms (measured) every few
    thousand tasks."""
    gc.collect()
    gc.freeze()


async def cmd_worker(cli: Cli) -> int:
    a = cli.args
    cfg = cli.config
    beat = heartbeat_interval(cfg.lease_ttl_s)
    backend, registry = await _open(cli)
    metrics = None
    stop = asyncio.Event()
    try:
        metrics = _metrics(cli)
        _freeze_startup_objects()
        with stop_on_signals(stop):
            workers = await serve_workers(
                backend,
                registry,
                os_names=a.os,
                stop=stop,
                concurrency=cfg.concurrency,
                worker_id=a.worker_id,
                lease_s=cfg.lease_ttl_s,
                grace_s=cfg.worker_grace_s,
                heartbeat_s=cfg.heartbeat_s or beat,
                metrics=metrics,
            )
    finally:
        await _close(backend, registry, metrics)
    for worker in workers:
        log.info("worker %s done: %s", worker.worker_id, worker.stats)
    return 0


async def cmd_engine(cli: Cli) -> int:
    from reaper.cli.drive import planner_factory  # the CLI's planner choice (flags)

    cfg = cli.config
    backend, registry = await _open(cli)
    metrics = None
    stop = asyncio.Event()
    try:
        metrics = _metrics(cli)
        service = EngineService(
            backend,
            registry,
            planner_factory=planner_factory(cli),
            lease_ttl_s=cfg.lease_ttl_s,
            heartbeat_s=cfg.heartbeat_s or heartbeat_interval(cfg.lease_ttl_s),
            stall_after_s=cfg.stall_after_s,
            only=getattr(cli.args, "mission", None),
            metrics=metrics,
        )
        _freeze_startup_objects()
        with stop_on_signals(stop):
            await service.run(stop)
    finally:
        await _close(backend, registry, metrics)
    return 0


async def cmd_housekeep(cli: Cli) -> int:
    async with cli_backend(cli) as backend:
        report = await housekeep(backend, now=utcnow(), grace_s=cli.args.grace)
    if cli.args.json:
        cli.print_json(asdict(report))
    else:
        cli.out.print(f"housekeeping: {report.summary()}", soft_wrap=True)
    return 0


# -- `reaper status` ----------------------------------------------------------------------


def _span(seconds: float) -> str:
    """'4.2s', '12m', '3h05m', '2d04h'."""
    if seconds < 120:
        return f"{seconds:.1f}s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


# Narrower than this, processes are listed two lines each rather than as a table.
_TABLE_MIN_WIDTH = 110


def render_processes(
    processes: list[ProcessInfo], now: datetime, *, width: int | None = None
) -> RenderableType:
    """One row per engine or worker; in a terminal narrower than `_TABLE_MIN_WIDTH`, two
    lines each, so ids and counters are never cut short."""
    rows = []
    for p in processes:
        alive = p.alive(now)
        rows.append(
            (
                p,
                p.agent_type or (", ".join(p.missions) if p.missions else "-"),
                " ".join(f"{k}={v}" for k, v in p.counters.items() if v and "." not in k),
                Text("alive", style="green") if alive else Text("silent", style="red"),
                _span((now - p.started).total_seconds()),
                _span(p.silent_for(now)) + " ago",
            )
        )
    if width is not None and width < _TABLE_MIN_WIDTH:
        lines = [Text("engines and workers", style="italic")]
        for p, serves, counts, state, up, seen in rows:
            head = Text.assemble(f"  {p.role:<7} ", (p.process_id, "bold"), "  ", state)
            head.append(f", seen {seen} · up {up} · {p.host}:{p.pid}")
            lines += [head, Text(f"          serves {serves}" + (f" · {counts}" if counts else ""))]
        return Group(*lines)
    table = Table(
        title="engines and workers", title_justify="left", box=box.SIMPLE_HEAD, header_style="bold"
    )
    for col in ("role", "id", "serves", "host:pid", "up", "seen", "state", "counts"):
        table.add_column(col, justify="right" if col in ("up", "seen") else "left", overflow="fold")
    for p, serves, counts, state, up, seen in rows:
        table.add_row(p.role, p.process_id, serves, f"{p.host}:{p.pid}", up, seen, state, counts)
    return table


async def show_processes(cli: Cli, backend: Backend) -> None:
    """Workers and engines alive, and alert banners (the hook in `reaper status`)."""
    now = RealClock().now()
    registry = registry_for(cli)
    try:
        processes = await registry.list(now)
    finally:
        await registry.close()
    alerts = alerts_from_processes(processes, now)
    for m in await backend.store.list_missions():
        if m.status.terminal:
            continue
        state = await backend.store.load(m.mission_id)
        if state is not None:
            alerts.extend(alerts_from_state(state))
    if processes:
        cli.out.print(render_processes(processes, now, width=cli.out.width))
    else:
        cli.out.print("no engine or worker processes registered")
    if alerts:
        cli.out.print(render_banners(alerts))
