"""Scale benchmark: tasks/s and result latency per backend, in one run.

    python benchmarks/bench_scale.py [--hosts 1000] [--workers 4] [--concurrency 256]
        [--backends memory,sqlite,redis+postgres] [--processes] [--json]

In-process (default): `reaper.bench.bench_once` for each backend (engine and `--workers`
LocalWorkers in this process, zero-latency sim hosts, discover + baseline per host): the
same figures `reaper bench --backend memory,sqlite,redis+postgres` prints.

`--processes`: one `reaper engine` process and `--workers` `reaper worker` processes on the
backend (not memory), all linux hosts. Throughput is tasks / (submit → mission completed);
latency is read back from the store afterwards: each `task.result` entry's `ts` (applied by
the engine) minus its result's `ts` (published by the worker).

Target on a 2-core machine (issue 5): >= 2,000 tasks/s with p99 under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from reaper.bench import BenchResult, bench_once
from reaper.infra.base import Backend
from reaper.infra.factory import REDIS_POSTGRES_DEFAULTS, open_backend
from reaper.lab import LabFile, LabHost
from reaper.models import EventKind, MissionStatus, SimSettings
from reaper.overseer import Overseer

ROOT = Path(__file__).resolve().parents[1]
TARGET_TASKS_S = 2000.0
TARGET_P99_MS = 50.0


def _spec(label: str, tmp: Path, n: int) -> tuple[str, str]:
    """(store, queue) specs for a backend label."""
    if label == "sqlite":
        db = f"sqlite:///{tmp / f'bench-{n}.db'}"
        return db, db
    if label == "redis+postgres":
        redis_url, pg_url = REDIS_POSTGRES_DEFAULTS
        return pg_url, redis_url
    return label, label


def _pct(values: list[float], q: float) -> float:
    values = sorted(values) or [0.0]
    return values[min(len(values) - 1, int(len(values) * q))]


async def _processes_once(
    label: str, tmp: Path, hosts: int, workers: int, conc: int
) -> BenchResult:
    store, queue = _spec(label, tmp, hosts)
    lab = LabFile(
        lab_type="bench-scale",
        policy="standard",
        settings={"stall_after_s": 600},
        hosts=[
            LabHost(host_id=f"h{i:05d}", os="linux", transport="sim", sim=SimSettings())
            for i in range(hosts)
        ],
    )
    backend: Backend = open_backend(None, store=store, queue=queue)
    flags = ["--store", store, "--queue", queue]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        state = await Overseer(backend).create_mission(lab)
        mid = state.mission_id
        cmd = [sys.executable, "-m", "reaper.cli"]
        procs = [
            subprocess.Popen(
                [*cmd, "worker", "--os", "linux", "--concurrency", str(conc), *flags],
                env=env,
                cwd=ROOT,
            )
            for _ in range(workers)
        ]
        start = time.perf_counter()
        procs.append(
            subprocess.Popen([*cmd, "engine", "--mission", mid, *flags], env=env, cwd=ROOT)
        )
        delay = 0.01
        while True:  # another process's progress: re-read the store with a short backoff
            final = await backend.store.load(mid)
            if final is not None and final.status.terminal:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        seconds = time.perf_counter() - start
        lat = []
        for e in await backend.store.events(mid):
            if e.kind is EventKind.TASK_RESULT and (r := e.result()) is not None:
                lat.append((e.ts - r.ts).total_seconds())
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        await backend.close()
    tasks = len(final.tasks)
    return BenchResult(
        backend=f"{label} (processes)",
        hosts=hosts,
        tasks=tasks,
        seconds=round(seconds, 3),
        tasks_per_s=round(tasks / seconds, 1),
        cpu_us_per_task=0.0,
        p50_latency_ms=round(statistics.median(lat or [0.0]) * 1000, 2),
        p99_latency_ms=round(_pct(lat, 0.99) * 1000, 2),
        status=final.status.value
        if final.status is MissionStatus.COMPLETED
        else f"{final.status.value}: {final.status_reason}",
    )


async def main(args: argparse.Namespace) -> list[BenchResult]:
    results: list[BenchResult] = []
    with tempfile.TemporaryDirectory(prefix="reaper-bench-scale-") as tmp_dir:
        tmp = Path(tmp_dir)
        for label in args.backends.split(","):
            if args.processes:
                if label == "memory":
                    continue  # one process only, by definition
                result = await _processes_once(
                    label, tmp, args.hosts, args.workers, args.concurrency
                )
            else:
                store, queue = _spec(label, tmp, args.hosts)
                backend = open_backend(None, store=store, queue=queue)
                try:
                    result = await bench_once(
                        backend,
                        label,
                        args.hosts,
                        workers=args.workers,
                        concurrency=args.concurrency,
                    )
                finally:
                    await backend.close()
            results.append(result)
            if not args.json:
                ok = result.tasks_per_s >= TARGET_TASKS_S and result.p99_latency_ms < TARGET_P99_MS
                print(
                    f"{result.backend:<28} {result.hosts:>6} hosts {result.tasks:>6} tasks "
                    f"{result.tasks_per_s:>9,.0f} tasks/s  p50 {result.p50_latency_ms:>8.1f} ms  "
                    f"p99 {result.p99_latency_ms:>8.1f} ms  {result.status}  "
                    f"{'meets' if ok else 'misses'} target",
                    flush=True,
                )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--backends", default="memory,sqlite,redis+postgres")
    parser.add_argument("--processes", action="store_true", help="engine and workers as processes")
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    out = asyncio.run(main(ns))
    if ns.json:
        print(json.dumps([asdict(r) for r in out], indent=2))
