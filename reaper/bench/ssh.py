"""`reaper bench ssh`: Reaper's discover against Ansible's `-m setup` on real sshd hosts.

A developer tool, run as root from a source checkout: it builds OpenSSH hosts in network
namespaces (benchmarks/netns.py, shared with the tests), then for each host count N
- runs a whole Reaper mission (engine, rule planner with goal `discovered`, local workers,
  the SSH transport and the Linux action code) on N hosts, new connections included;
- runs `ansible all -m setup -f N` on the same hosts (ansible-core is pip-installed into the
  benchmark's own venv if missing; the run is skipped with a note when it cannot be);
and measures the latency of one command on a reused connection against a bare paramiko
`exec_command` on a TCP_NODELAY socket. Prints a table, or JSON with `--json`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from reaper.agents.base import Command
from reaper.agents.runners import default_runners
from reaper.bench.ansible import ansible_env, ensure_ansible, inventory_text
from reaper.bench.converge import checkout_module
from reaper.errors import ConfigError
from reaper.infra.factory import open_backend
from reaper.lab import LabFile, LabHost
from reaper.models import HostConnection, MissionStatus, Stage
from reaper.overseer import Overseer
from reaper.runtime import LocalWorkers

if TYPE_CHECKING:
    from benchmarks.netns import NsHost, NsLab

__all__ = ["DiscoverRow", "LatencyRow", "SshBench", "render", "ssh_bench"]

log = logging.getLogger(__name__)

_DEFAULT_SIZES = "1,10,20"
_LATENCY_RUNS = 200


@dataclass(frozen=True, slots=True)
class DiscoverRow:
    hosts: int
    reaper_s: float
    reaper_status: str
    ansible_s: float | None
    ansible_ok: int | None
    speedup: float | None


@dataclass(frozen=True, slots=True)
class LatencyRow:
    runs: int
    reaper_ms: float
    paramiko_ms: float
    ratio: float


def _netns() -> Any:
    return checkout_module("netns")


def sizes_of(spec: str | None) -> list[int]:
    try:
        sizes = [int(x) for x in (spec or _DEFAULT_SIZES).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--hosts takes comma-separated numbers, not {spec!r}") from None
    if not sizes or min(sizes) < 1 or max(sizes) > 200:
        raise ConfigError("--hosts takes host counts between 1 and 200")
    return sizes


def _host(lab: NsLab, h: NsHost, user: str) -> LabHost:
    return LabHost(host_id=h.name, os="linux", **_conn(lab, h, user).model_dump(exclude_unset=True))


def _conn(lab: NsLab, h: NsHost, user: str) -> HostConnection:
    return HostConnection(
        transport="ssh",
        address=h.addr,
        user=user,
        key_file=str(lab.client_key),
        use_agent=False,
        known_hosts=str(lab.known_hosts),
        become=True,
    )


async def reaper_discover(
    lab: NsLab, hosts: list[NsHost], user: str, backend: str, tmp: Path
) -> tuple[float, str]:
    """Seconds for a whole discover mission on `hosts`, and how it ended."""
    spec = (
        f"sqlite:///{tmp / f'bench-{len(hosts)}-{time.monotonic_ns()}.db'}"
        if backend == "sqlite"
        else backend
    )
    store = open_backend(spec)
    runners = default_runners(
        transport_options={"ssh": {"logs_dir": tmp / "logs"}}, include={"ssh"}
    )
    workers = LocalWorkers(store, concurrency=max(32, len(hosts)), runners=runners)
    overseer = Overseer(store)
    lab_file = LabFile(
        lab_type="bench-ssh",
        goal=Stage.DISCOVERED,
        policy="read-only",
        hosts=[_host(lab, h, user) for h in hosts],
    )
    try:
        started = time.perf_counter()
        state = await overseer.create_mission(lab_file)
        workers.start(["reaper-linux"])
        final = await overseer.run_mission(state.mission_id)
        seconds = time.perf_counter() - started
    finally:
        await workers.stop()  # closes the SSH connections: the next run connects afresh
        await store.close()
    ok = final.status is MissionStatus.COMPLETED and final.goal_reached
    return seconds, "ok" if ok else f"{final.status.value}: {final.status_reason}"


def ansible_setup(
    exe: Path, lab: NsLab, hosts: list[NsHost], user: str, tmp: Path
) -> tuple[float, int]:
    """Seconds for `ansible all -m setup -f N` on `hosts`, and how many succeeded."""
    run_dir = Path(tempfile.mkdtemp(prefix="ansible-", dir=tmp))
    inventory = run_dir / "hosts.ini"
    inventory.write_text(inventory_text(lab, hosts, user))
    argv = [str(exe), "all", "-i", str(inventory), "-m", "setup", "-f", str(len(hosts))]
    with tempfile.TemporaryDirectory(prefix="rcp-") as control_dir:
        env = ansible_env(run_dir, Path(control_dir))
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - started
    ok = done.stdout.count(" | SUCCESS")
    if ok != len(hosts):
        log.warning("ansible: %d/%d hosts succeeded: %s", ok, len(hosts), done.stderr[-500:])
    return seconds, ok


async def command_latency(
    lab: NsLab, h: NsHost, user: str, tmp: Path, runs: int = _LATENCY_RUNS
) -> LatencyRow:
    """Median per-command latency: Reaper's reused session vs bare paramiko (TCP_NODELAY)."""
    from reaper.agents.transports.ssh import SshTransport

    transport = SshTransport(logs_dir=tmp / "latency-logs")
    try:
        shell = await transport.session(h.name, _conn(lab, h, user))
        await shell.run(Command(argv=["true"]))
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter()
            await shell.run(Command(argv=["true"]))
            samples.append(time.perf_counter() - t0)
    finally:
        await transport.close()
    bare = await asyncio.to_thread(_paramiko_latency, lab, h, user, runs)
    reaper_ms = statistics.median(samples) * 1e3
    return LatencyRow(runs, round(reaper_ms, 2), round(bare, 2), round(reaper_ms / bare, 2))


def _paramiko_latency(lab: NsLab, h: NsHost, user: str, runs: int) -> float:
    import paramiko

    sock = socket.create_connection((h.addr, 22), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.load_host_keys(str(lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        h.addr,
        username=user,
        key_filename=str(lab.client_key),
        sock=sock,
        allow_agent=False,
        look_for_keys=False,
    )
    try:
        samples = []
        for i in range(runs + 1):
            t0 = time.perf_counter()
            _, stdout, _ = client.exec_command("true")
            stdout.channel.recv_exit_status()
            if i:  # the first opens the path; it is not counted, as on Reaper's side
                samples.append(time.perf_counter() - t0)
        return statistics.median(samples) * 1e3
    finally:
        client.close()


def _render(rows: list[DiscoverRow], latency: LatencyRow, note: str, backend: str) -> Table:
    table = Table(
        title=f"reaper bench ssh: discover on namespace sshd hosts ({escape(note)})",
        caption=f"per-command latency on a reused connection: Reaper "
        f"{latency.reaper_ms:.2f} ms, bare paramiko + TCP_NODELAY "
        f"{latency.paramiko_ms:.2f} ms (median of {latency.runs}; "
        f"ratio {latency.ratio:.2f})",
    )
    for col in ("hosts", f"reaper s ({backend})", "ansible -m setup s", "speedup", "status"):
        table.add_column(col, justify="left" if col == "status" else "right")
    for r in rows:
        table.add_row(
            str(r.hosts),
            f"{r.reaper_s:.2f}",
            "-" if r.ansible_s is None else f"{r.ansible_s:.2f}",
            "-" if r.speedup is None else f"{r.speedup:.1f}x",
            r.reaper_status
            if r.ansible_ok in (None, r.hosts)
            else f"{r.reaper_status}; ansible {r.ansible_ok}/{r.hosts} ok",
        )
    return table


@dataclass(frozen=True, slots=True)
class SshBench:
    rows: list[DiscoverRow]
    latency: LatencyRow
    ansible: str
    backend: str


async def ssh_bench(sizes: list[int], backend: str, say: Callable[[str], None]) -> SshBench:
    """Build max(sizes) namespace hosts, time discover with Reaper and Ansible on each size,
    then one command's latency; `say` hears progress lines."""
    netns = _netns()
    why = netns.missing_requirements()
    if why is not None:
        raise ConfigError(
            f"reaper bench ssh needs root, iproute2, debootstrap and OpenSSH (sshd) to build "
            f"namespace hosts: {why}"
        )
    if backend not in ("sqlite", "memory"):
        raise ConfigError("reaper bench ssh runs on the memory or sqlite backend")
    exe, note = ensure_ansible(say)
    user = netns.USER
    with tempfile.TemporaryDirectory(prefix="reaper-bench-ssh-") as tmp_name:
        tmp = Path(tmp_name)
        say(f"building {max(sizes)} namespace sshd hosts…")
        lab = await asyncio.to_thread(
            netns.NsLab.create, [f"b{i:03d}" for i in range(max(sizes))], tmp / "hosts"
        )
        try:
            every = list(lab.hosts.values())
            await reaper_discover(lab, every[:1], user, backend, tmp)  # warm-up: imports
            rows: list[DiscoverRow] = []
            for n in sizes:
                reaper_s, status = await reaper_discover(lab, every[:n], user, backend, tmp)
                ansible_s = ok = None
                if exe is not None:
                    ansible_s, ok = await asyncio.to_thread(
                        ansible_setup, exe, lab, every[:n], user, tmp
                    )
                speedup = round(ansible_s / reaper_s, 1) if ansible_s else None
                rows.append(
                    DiscoverRow(
                        n,
                        round(reaper_s, 3),
                        status,
                        None if ansible_s is None else round(ansible_s, 3),
                        ok,
                        speedup,
                    )
                )
                say(
                    f"{n} hosts: reaper {reaper_s:.2f}s"
                    + (f", ansible {ansible_s:.2f}s" if ansible_s else "")
                )
            latency = await command_latency(lab, every[0], user, tmp)
        finally:
            await asyncio.to_thread(lab.destroy)
    return SshBench(rows, latency, note, backend)


def render(bench: SshBench) -> Table:
    return _render(bench.rows, bench.latency, bench.ansible, bench.backend)
