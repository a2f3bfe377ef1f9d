"""`reaper bench ssh`'s converge row: one role of 8 resources on N namespace hosts, a first run
and a second (no-change) run, by Reaper and by `ansible-playbook` with the same modules.

Each tool gets its own N fresh hosts (built together), each host prepared alike before either
runs: the signed local mirror (benchmarks/aptmirror.py, served on the host's gateway, the only
address it reaches) as its only apt source, and an init script for the service. Ansible runs
from its own venv (reaper/bench/ansible.py); the row says why when it cannot.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reaper.agents.runners import default_runners
from reaper.bench.ansible import ansible_converge, ensure_ansible
from reaper.bench.role import ANSIBLE_DEPS, INIT_SCRIPT, PACKAGE, ROLE
from reaper.errors import ConfigError
from reaper.infra.factory import open_backend
from reaper.lab import parse_lab
from reaper.models import EventKind, MissionStatus
from reaper.overseer import Overseer
from reaper.runtime import LocalWorkers

if TYPE_CHECKING:
    from benchmarks.netns import NsHost, NsLab

__all__ = ["ConvergeRow", "checkout_module", "converge_bench", "gateway"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConvergeRow:
    tool: str
    hosts: int
    first_s: float | None
    second_s: float | None
    first_changed: int | None
    second_changed: int | None
    tasks: int | None
    status: str


def checkout_module(name: str) -> Any:
    """benchmarks.<name>, from the checkout this Reaper runs from."""
    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ImportError:
        root = Path(__file__).resolve().parents[2]
        if not (root / "benchmarks" / f"{name}.py").exists():
            raise ConfigError(
                f"reaper bench ssh runs from a source checkout (it needs benchmarks/{name}.py)"
            ) from None
        sys.path.insert(0, str(root))
        return importlib.import_module(f"benchmarks.{name}")


def gateway(host: NsHost) -> str:
    """The host side of the namespace's veth: the only address a namespace host reaches."""
    return host.addr.rsplit(".", 1)[0] + ".1"


def _prepare(host: NsHost, url: str, key: str) -> None:
    root = host.root
    (root / "etc/apt/sources.list").write_text("")  # air-gapped: only the local mirror
    (root / "etc/apt/keyrings").mkdir(parents=True, exist_ok=True)
    (root / "etc/apt/keyrings/reaper-mirror.asc").write_text(key)
    (root / "etc/apt/sources.list.d/reaper-mirror.list").write_text(
        f"deb [signed-by=/etc/apt/keyrings/reaper-mirror.asc] {url} ./\n"
    )
    script = root / "etc/init.d/reaper-demo"
    script.write_text(INIT_SCRIPT)
    script.chmod(0o755)


def _lab_text(lab: NsLab, hosts: list[NsHost], user: str, mission_id: str) -> str:
    conn = {
        "transport": "ssh",
        "user": user,
        "key_file": str(lab.client_key),
        "use_agent": False,
        "known_hosts": str(lab.known_hosts),
        "become": True,
    }
    return json.dumps(
        {
            "schema_version": 2,
            "mission_id": mission_id,
            "lab_type": "bench-converge",
            "policy": "standard",
            "roles": {"bench": ROLE},
            "hosts": [
                {"host_id": h.name, "os": "linux", "roles": ["bench"], "address": h.addr, **conn}
                for h in hosts
            ],
        }
    )


async def reaper_converge(
    lab: NsLab, hosts: list[NsHost], user: str, mission_id: str, tmp: Path
) -> tuple[float, int, int, str]:
    """One converge mission: (seconds, tasks, resources changed, how it ended)."""
    backend = open_backend("memory")
    runners = default_runners(
        transport_options={"ssh": {"logs_dir": tmp / "logs"}}, include={"ssh"}
    )
    workers = LocalWorkers(backend, concurrency=max(32, len(hosts)), runners=runners)
    overseer = Overseer(backend)
    try:
        started = time.perf_counter()
        state = await overseer.create_mission(parse_lab(_lab_text(lab, hosts, user, mission_id)))
        workers.start(["reaper-linux"])
        final = await overseer.run_mission(state.mission_id)
        seconds = time.perf_counter() - started
        events = await backend.store.events(state.mission_id)
    finally:
        await workers.stop()
        await backend.close()
    done = [r for e in events if e.kind is EventKind.TASK_RESULT and (r := e.result()) is not None]
    changed = sum(1 for r in done if r.data.get("result") == "changed")
    ok = final.status is MissionStatus.COMPLETED and final.goal_reached
    return (
        seconds,
        len(done),
        changed,
        "ok" if ok else f"{final.status.value}: {final.status_reason}",
    )


async def converge_bench(
    n: int, user: str, tmp: Path, say: Callable[[str], None]
) -> list[ConvergeRow]:
    """Build 2n hosts and a mirror; converge n with Reaper and n with Ansible, twice each."""
    netns, aptmirror = checkout_module("netns"), checkout_module("aptmirror")
    why = aptmirror.missing_tools()
    if why is not None:
        return [ConvergeRow("reaper", n, None, None, None, None, None, f"skipped: {why}")]
    debs = await asyncio.to_thread(aptmirror.fetch, [PACKAGE, *ANSIBLE_DEPS])
    key = (await asyncio.to_thread(aptmirror.build_repo, debs, tmp / "mirror" / "repo")).read_text()
    exe, note = await asyncio.to_thread(ensure_ansible, say)
    names = [f"cr{i:03d}" for i in range(n)] + ([f"ca{i:03d}" for i in range(n)] if exe else [])
    say(f"building {len(names)} namespace hosts for the converge row…")
    lab = await asyncio.to_thread(netns.NsLab.create, names, tmp / "converge-hosts")
    rows: list[ConvergeRow] = []
    try:
        with ExitStack() as stack:
            for h in lab.hosts.values():
                mirror = stack.enter_context(aptmirror.serve(tmp / "mirror" / "repo", gateway(h)))
                _prepare(h, mirror.url, key)
            mine = [lab.hosts[x] for x in names[:n]]
            first = await reaper_converge(lab, mine, user, "bench-converge-1", tmp)
            second = await reaper_converge(lab, mine, user, "bench-converge-2", tmp)
            say(f"converge, reaper: first {first[0]:.2f}s, second {second[0]:.2f}s")
            status = first[3] if first[3] != "ok" else second[3]
            rows.append(ConvergeRow("reaper", n, round(first[0], 3), round(second[0], 3),
                                    first[2], second[2], second[1], status))  # fmt: skip
            if exe is None:
                rows.append(ConvergeRow("ansible", n, None, None, None, None, None, note))
            else:
                theirs = [lab.hosts[x] for x in names[n:]]
                a1 = await asyncio.to_thread(ansible_converge, exe, lab, theirs, user, tmp)
                a2 = await asyncio.to_thread(ansible_converge, exe, lab, theirs, user, tmp)
                say(f"converge, ansible: first {a1.seconds:.2f}s, second {a2.seconds:.2f}s")
                rows.append(ConvergeRow(f"ansible ({note})", n, round(a1.seconds, 3),
                                        round(a2.seconds, 3), a1.changed, a2.changed, a2.tasks,
                                        a1.status if a1.status != "ok" else a2.status))  # fmt: skip
    finally:
        await asyncio.to_thread(lab.destroy)
    return rows
