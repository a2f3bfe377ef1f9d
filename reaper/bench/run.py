"""`reaper bench`: discover + baseline on zero-latency simulated hosts, per backend and size.

Prints tasks per second and the latency from a result's publication (by a worker) to its
application (committed by the engine), with the CPU time per task.

The engine always runs in this process. Workers run where the backend lets them: on `memory`,
in this process (`--workers` loops per agent type); on a backend processes can share (sqlite,
redis, postgresql), as `--workers` separate `reaper worker --os all` processes, started and
serving before the clock starts: the deployment the backend is for. `--in-process` keeps them
in this process on every backend; the CPU per task is then the whole pipeline's.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table

from reaper.bench.procs import CpuMeter, WorkerProcesses
from reaper.bench.space import Namespace
from reaper.bench.taskcpu import TaskCpu
from reaper.infra.base import Backend, sim_worlds_of
from reaper.infra.factory import open_backend, parse_spec
from reaper.lab import LabFile, LabHost, LabSettings
from reaper.models import (
    OS_NAMES,
    EventKind,
    EventRecord,
    MissionState,
    MissionStatus,
    SimSettings,
)
from reaper.overseer import Overseer
from reaper.runtime import LocalWorkers

__all__ = ["BenchOptions", "BenchResult", "bench_backends", "bench_once", "render"]


@dataclass(frozen=True, slots=True)
class BenchResult:
    backend: str
    workers: str  # "in-process" or "N processes"
    hosts: int
    tasks: int
    seconds: float
    tasks_per_s: float
    cpu_us_per_task: float  # this process: the engine, and in-process workers
    worker_cpu_us_per_task: float  # the worker processes (0 in-process)
    machine_cpu_us_per_task: float  # every process on the machine, servers included
    p50_latency_ms: float
    p99_latency_ms: float
    status: str
    runs: int = 1
    slowest_tasks_per_s: float = 0.0
    # The engine's own coroutine and the tasks it starts (reaper.bench.taskcpu), without the
    # in-process workers and sim hosts that `cpu_us_per_task` includes: measured alike on
    # every row, so the rows' engine costs compare whatever their hosts cost.
    engine_only_cpu_us_per_task: float = 0.0


# The desired-state row: ten resources per (Linux) host, every kind a baseline uses; the
# sim world starts with none of them, so each host is discovered, converged and read back.
DESIRED_ROLE: tuple[dict[str, Any], ...] = (
    {"kind": "package", "name": "curl"},
    {"kind": "package", "name": "wget"},
    {"kind": "package", "name": "jq"},
    {"kind": "package", "name": "rsync"},
    {"kind": "file", "path": "/etc/motd", "content": "Managed by Reaper\n", "mode": "0644"},
    {"kind": "file", "path": "/etc/issue.net", "content": "Authorized use only\n"},
    {"kind": "group", "name": "bench"},
    {"kind": "user", "name": "bench", "groups": ["bench"]},
    {"kind": "setting", "name": "net.ipv4.ip_forward", "value": "0"},
    {"kind": "sshd_option", "name": "X11Forwarding", "value": "no"},
)


def _lab(hosts: int, settings: Mapping[str, Any], desired: bool = False) -> LabFile:
    if desired:
        return LabFile.model_validate(
            {
                "schema_version": 2,
                "lab_type": "bench-desired",
                "policy": "standard",
                "settings": settings,
                "roles": {"bench": list(DESIRED_ROLE)},
                "hosts": [
                    {"host_id": f"h{i:05d}", "os": "linux", "transport": "sim", "roles": ["bench"]}
                    for i in range(hosts)
                ],
            }
        )
    return LabFile(
        lab_type="bench",
        policy="standard",
        settings=LabSettings.model_validate(settings),
        hosts=[
            LabHost(host_id=f"h{i:05d}", os=OS_NAMES[i % 3], transport="sim", sim=SimSettings())
            for i in range(hosts)
        ],
    )


class _EngineTimer:
    """Per-result latency (result ts → applied by the engine), via the engine's listener."""

    def __init__(self) -> None:
        self.latencies: list[float] = []

    def listener(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        now = time.time()
        append = self.latencies.append
        for e in events:
            if e.kind is EventKind.TASK_RESULT and (result := e.result()) is not None:
                append(now - result.ts.timestamp())


async def bench_once(
    backend: Backend,
    label: str,
    hosts: int,
    *,
    workers: int = 1,
    concurrency: int = 64,
    processes: WorkerProcesses | None = None,
    settings: Mapping[str, Any] | None = None,
    desired: bool = False,
) -> BenchResult:
    """One mission of `hosts` hosts (lab `settings` beyond the defaults); workers in this
    process unless `processes` (already serving on the same backend) are given."""
    timer = _EngineTimer()
    overseer = Overseer(backend, listener=timer.listener, engine_overrides={"stall_after_s": 600.0})
    lab = _lab(hosts, settings or {}, desired)
    worlds = sim_worlds_of(backend.store)
    if worlds is not None:  # each run converges fresh worlds, not the previous run's
        await worlds.clear_worlds(lab.lab_type)
    state = await overseer.create_mission(lab)
    pool = (
        []
        if processes
        else [LocalWorkers(backend, concurrency=concurrency) for _ in range(workers)]
    )
    meter = CpuMeter(pids=processes.pids if processes else [])
    engine_cpu = TaskCpu()
    gc.collect()
    gc.freeze()  # the lab's objects are long-lived: keep the collector off them
    start = time.perf_counter()
    meter.start()
    for w in pool:
        w.start()
    try:
        final = await engine_cpu.run(overseer.run_mission(state.mission_id))
    finally:
        for w in pool:
            await w.stop()
        gc.unfreeze()
    seconds = time.perf_counter() - start
    cpu = meter.stop()
    tasks = len(final.tasks)
    lat = sorted(timer.latencies) or [0.0]

    def per_task(cpu_s: float) -> float:
        return round(cpu_s / max(tasks, 1) * 1e6, 1)

    return BenchResult(
        backend=label + (" (desired)" if desired else ""),
        workers=f"{processes.count} process{'es' if processes.count > 1 else ''}"
        if processes
        else "in-process",
        hosts=hosts,
        tasks=tasks,
        seconds=round(seconds, 3),
        tasks_per_s=round(tasks / seconds, 1),
        cpu_us_per_task=per_task(cpu.own),
        worker_cpu_us_per_task=per_task(cpu.workers),
        machine_cpu_us_per_task=per_task(cpu.machine),
        engine_only_cpu_us_per_task=per_task(engine_cpu.seconds),
        p50_latency_ms=round(statistics.median(lat) * 1000, 2),
        p99_latency_ms=round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 2),
        status=final.status.value
        if final.status is MissionStatus.COMPLETED
        else f"{final.status.value}: {final.status_reason}",
    )


def _specs(label: str, tmp: Path) -> tuple[str, str, str | None]:
    """(store, queue, bus) specs for a backend label (bus None: the queue's own); sqlite
    gets a file of its own; a combined label (redis+postgres, amqp+postgres,
    kafka+postgres, redis+kafka+postgres) is split into its parts' URLs."""
    parts = [] if label == "sqlite" else parse_spec(label)
    if not parts or parts[0].kind == "sqlite":
        db = f"sqlite:///{Path(tmp) / 'bench.db'}"
        return db, db, None
    if len(parts) == 1:
        return label, label, None
    by_kind = {p.kind: p.target for p in parts}
    store = by_kind.get("postgres", "memory")
    queue = next((by_kind[k] for k in ("redis", "amqp", "postgres") if k in by_kind), "memory")
    bus = by_kind.get("kafka")
    if bus is None and "amqp" in by_kind:  # amqp has no bus: the next part's
        bus = next((by_kind[k] for k in ("redis", "postgres") if k in by_kind), None)
    return store, queue, bus


@dataclass(frozen=True)
class BenchOptions:
    """How each backend is measured (the `reaper bench` flags)."""

    workers: int = 4
    concurrency: int = 64
    repeat: int = 1
    in_process: bool = False
    max_in_flight: int | None = None
    latency_target: float | None = None
    # Desired state: ten resources per host, converged by the rule converger from fresh sim
    # worlds (each run clears its lab's worlds from the store first).
    desired: bool = False


async def bench_backends(
    labels: Sequence[str],
    sizes: Sequence[int],
    options: BenchOptions,
    *,
    on_run: Callable[[BenchResult, int], None] | None = None,
) -> list[BenchResult]:
    """Every size of every backend label; nothing of the bench stays on shared servers.
    `on_run(result, run_index)` hears of each run as it ends (progress lines)."""
    results: list[BenchResult] = []
    space = Namespace()
    try:
        with tempfile.TemporaryDirectory(prefix="reaper-bench-") as tmp:
            for label in labels:
                results += await _bench_label(
                    label.strip(), sizes, Path(tmp), space, options, on_run
                )
    finally:
        await space.drop()
    return results


async def _bench_label(
    label: str,
    sizes: Sequence[int],
    tmp: Path,
    space: Namespace,
    a: BenchOptions,
    on_run: Callable[[BenchResult, int], None] | None,
) -> list[BenchResult]:
    """Every size of one backend, best of `repeat` each; worker processes (when used)
    start once for the backend and serve every run."""
    store, queue, bus = _specs(label, tmp)
    # A bad spec: one line, now.
    await open_backend(None, store=store, queue=queue, bus=bus).close()
    store, queue = space.isolate(store), space.isolate(queue)
    bus = None if bus is None else space.isolate(bus)
    # A desired-state run keeps its workers in this process unless `--workers 1`, so its
    # figures stay comparable with earlier runs (worker processes would share the worlds
    # through the store now).
    separate = label != "memory" and not a.in_process and not (a.desired and a.workers > 1)
    settings: dict[str, Any] = {}
    if a.max_in_flight is not None:
        settings["max_in_flight"] = a.max_in_flight
    if a.latency_target is not None:
        settings["latency_target_s"] = a.latency_target
    async with contextlib.AsyncExitStack() as stack:
        procs = None
        if separate:
            procs = await stack.enter_async_context(
                WorkerProcesses(
                    a.workers, store=store, queue=queue, bus=bus, concurrency=a.concurrency
                )
            )
        results = []
        for n in sizes:
            runs: list[BenchResult] = []
            for i in range(a.repeat):
                backend = open_backend(None, store=store, queue=queue, bus=bus)
                try:
                    runs.append(
                        await bench_once(
                            backend,
                            label,
                            n,
                            workers=a.workers,
                            concurrency=a.concurrency,
                            processes=procs,
                            settings=settings,
                            desired=a.desired,
                        )
                    )
                finally:
                    await backend.close()
                if on_run is not None:
                    on_run(runs[-1], i)
            # A shared machine only ever slows a run down: report the best of the
            # repeats (as timeit does), with the spread beside it.
            best = max(runs, key=lambda r: r.tasks_per_s)
            results.append(
                replace(best, runs=len(runs), slowest_tasks_per_s=min(r.tasks_per_s for r in runs))
            )
    return results


def _table(
    title: str, caption: str, columns: Sequence[str], rows: list[list[str]], *, text: int = 1
) -> Table:
    """Figures never cut short: a column is at least as wide as its widest cell (the first,
    the backend, may fold), so an 80-column terminal or a log file gets whole numbers. The
    first `text` columns are words (left-aligned), the rest figures."""
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, header_style="bold")
    for i, col in enumerate(columns):
        widest = max([len(row[i]) for row in rows] + [max(len(w) for w in col.split())])
        table.add_column(
            col,
            justify="left" if i < text or col == "status" else "right",
            no_wrap=i > 0,
            overflow="fold" if i == 0 else "ellipsis",
            min_width=None if i == 0 else widest,
        )
    for row in rows:
        table.add_row(*row)
    return table


def render(results: Sequence[BenchResult], repeat: int) -> Group:
    """Speed and latency, then CPU per task: two tables, so each fits 80 columns."""
    failed = any(r.status != MissionStatus.COMPLETED.value for r in results)
    columns = ["backend", "workers", "hosts", "tasks/s", "slowest", "p50 ms", "p99 ms"]
    rows = [
        [
            r.backend,
            r.workers,
            f"{r.hosts:,}",
            f"{r.tasks_per_s:,.0f}",
            f"{r.slowest_tasks_per_s:,.0f}",
            f"{r.p50_latency_ms:.1f}",
            f"{r.p99_latency_ms:.1f}",
        ]
        + ([r.status] if failed else [])
        for r in results
    ]
    speed = _table(
        "reaper bench: discover + baseline, zero-latency sim hosts",
        f"best of {repeat} run(s) per row; 'slowest' is the worst run"
        + ("" if failed else "; every run completed"),
        columns + (["status"] if failed else []),
        rows,
        text=2,
    )
    cpu = _table(
        "CPU per task, µs",
        "engine: this process, with in-process workers;\nengine only: the engine's tasks alone;"
        "\nmachine: all of it, servers included",
        ["backend", "hosts", "engine", "engine only", "workers", "machine"],
        [
            [
                r.backend,
                f"{r.hosts:,}",
                f"{r.cpu_us_per_task:.0f}",
                f"{r.engine_only_cpu_us_per_task:.0f}",
                f"{r.worker_cpu_us_per_task:.0f}" if r.worker_cpu_us_per_task else "-",
                f"{r.machine_cpu_us_per_task:.0f}",
            ]
            for r in results
        ],
    )
    return Group(speed, cpu)
