"""What `reaper bench` needs beyond one process: worker processes and CPU accounting.

`WorkerProcesses` starts `reaper worker --os all` processes on a shared backend and waits until
every one of them is serving (its workers are in the process registry), so start-up is never
timed. `CpuMeter` reads CPU time from /proc: this process, the worker processes, and the whole
machine (which includes Redis, PostgreSQL and anything else running: on a quiet machine, the
system's cost per task).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from reaper.errors import ReaperError
from reaper.models import OS_NAMES
from reaper.services.registry import open_registry

__all__ = ["CpuMeter", "CpuSample", "WorkerProcesses"]

log = logging.getLogger(__name__)

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_READY_TIMEOUT_S = 60.0


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _machine_busy() -> float:
    """CPU seconds spent by every process on the machine, all cores (0 without /proc)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _TICK


@dataclass(frozen=True, slots=True)
class CpuSample:
    own: float
    workers: float
    machine: float


@dataclass
class CpuMeter:
    """CPU seconds used between `start()` and `stop()`, by this process, by `pids`, and by
    the whole machine."""

    pids: list[int] = field(default_factory=list)
    _start: CpuSample | None = None

    def _sample(self) -> CpuSample:
        return CpuSample(
            own=time.process_time(),
            workers=sum(_proc_cpu(p) for p in self.pids),
            machine=_machine_busy(),
        )

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> CpuSample:
        assert self._start is not None, "CpuMeter.stop before start"
        end = self._sample()
        return CpuSample(
            own=end.own - self._start.own,
            workers=end.workers - self._start.workers,
            machine=end.machine - self._start.machine,
        )


class WorkerProcesses:
    """`count` worker processes serving every OS on the backend given by `store`/`queue`."""

    def __init__(
        self, count: int, *, store: str, queue: str, concurrency: int, bus: str | None = None
    ) -> None:
        self.count = count
        self.store = store
        self.queue = queue
        self.bus = bus
        self.concurrency = concurrency
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs = tempfile.TemporaryDirectory(prefix="reaper-bench-workers-")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def __aenter__(self) -> WorkerProcesses:
        cmd = [sys.executable, "-m", "reaper.cli", "worker", "--os", "all"]
        cmd += ["--concurrency", str(self.concurrency), "--store", self.store]
        cmd += ["--queue", self.queue, "--log-level", "WARNING"]
        if self.bus is not None:
            cmd += ["--bus", self.bus]
        env = {k: v for k, v in os.environ.items() if not k.startswith("REAPER_")}
        for i in range(self.count):
            log_file = Path(self._logs.name) / f"worker-{i}.log"
            with log_file.open("wb") as err:
                self.procs.append(
                    subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
                )
        try:
            await self._wait_ready()
        except BaseException:
            self._terminate()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._terminate()
        self._logs.cleanup()

    async def _wait_ready(self) -> None:
        """Until every process has all its workers in the registry (another process's
        progress: poll it, with a short backoff)."""
        registry = open_registry(None, store=self.store)
        want = {(pid, f"reaper-{os_name}") for pid in self.pids for os_name in OS_NAMES}
        deadline = time.monotonic() + _READY_TIMEOUT_S
        delay = 0.02
        try:
            while True:
                self._check_alive()
                seen = {(p.pid, p.agent_type) for p in await registry.list(datetime.now(UTC))}
                if want <= seen:
                    return
                if time.monotonic() > deadline:
                    raise ReaperError(
                        f"bench: {len(want - seen)} worker(s) not serving after "
                        f"{_READY_TIMEOUT_S:.0f}s"
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 0.2)
        finally:
            await registry.close()

    def _check_alive(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                tail = (Path(self._logs.name) / f"worker-{i}.log").read_text(errors="replace")
                last = tail.strip().splitlines()[-1:] or ["(no output)"]
                raise ReaperError(f"bench: worker process exited with {proc.returncode}: {last[0]}")

    def _terminate(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
