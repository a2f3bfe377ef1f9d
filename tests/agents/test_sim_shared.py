"""The sim world lives in the mission store: a second mission on the same lab, a resumed
mission and other worker processes see the world the first left; `reaper sim reset` makes
the next run change it again; concurrent writers lose no update."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import reaper
from reaper.agents.transports.sim_record import load_world
from reaper.agents.transports.sim_shared import SharedWorlds
from reaper.agents.transports.sim_world import HostWorld
from reaper.bench.procs import WorkerProcesses
from reaper.bench.space import drop_schema
from reaper.cli import main
from reaper.errors import TransportError
from reaper.infra.base import Backend, sim_worlds_of
from reaper.infra.factory import open_backend
from reaper.infra.memory_worlds import MemorySimWorldStore
from reaper.lab import LabFile, load_lab
from reaper.models import MissionState, MissionStatus
from reaper.overseer import Overseer
from reaper.runtime import LocalWorkers
from tests.missions import WAIT_S, HarnessFactory, Recorder, keep_root_logging, open_sqlite
from tests.needs import port_open, require_service

AD_LAB = Path(reaper.__file__).parent / "labs" / "ad-lab.yaml"
PG_URL = "postgresql://127.0.0.1:5432/test"


def _lab() -> LabFile:
    return load_lab(AD_LAB)  # cross-host: members join the DC's domain, read its world


def _changed(state: MissionState) -> dict[str, int]:
    """Resources each host's ensures changed in this mission."""
    return {
        h: sum(1 for r in host.resources.values() if r.outcome == "changed")
        for h, host in state.hosts.items()
    }


async def _run(backend: Backend, mission_id: str, harness: HarnessFactory) -> MissionState:
    h = await harness(backend=backend)
    state = await h.create(_lab(), mission_id)
    final = await asyncio.wait_for(h.start(state.mission_id), WAIT_S)
    assert final.status is MissionStatus.COMPLETED, final.status_reason
    return final


async def test_a_second_mission_on_the_same_lab_changes_nothing(
    harness: HarnessFactory, tmp_path: Path
):
    db = tmp_path / "reaper.db"
    first = _changed(await _run(open_sqlite(db), "ad-1", harness))
    assert all(first.values()), first  # every host had work to do
    # New backend objects and workers: nothing of the first run's memory carries over.
    again = _changed(await _run(open_sqlite(db), "ad-2", harness))
    assert again == dict.fromkeys(first, 0)


async def test_sim_reset_makes_the_next_run_change_the_world_again(
    harness: HarnessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
):
    keep_root_logging(monkeypatch)
    db = tmp_path / "reaper.db"
    first = _changed(await _run(open_sqlite(db), "ad-1", harness))
    # The CLI runs its own event loop: in a thread beside this test's.
    reset = ["sim", "reset", "ad-lab", "--host", "web-01", "--db", str(db)]
    assert await asyncio.to_thread(main, reset) == 0
    assert "ad-lab/web-01" in capsys.readouterr().out
    one_host = _changed(await _run(open_sqlite(db), "ad-2", harness))
    assert one_host == {**dict.fromkeys(first, 0), "web-01": first["web-01"]}
    # a lab file names its lab
    assert await asyncio.to_thread(main, ["sim", "reset", str(AD_LAB), "--db", str(db)]) == 0
    assert "cleared 6 sim world(s)" in capsys.readouterr().out
    assert _changed(await _run(open_sqlite(db), "ad-3", harness)) == first


@pytest.mark.parametrize(
    "argv, error",
    [
        (["sim", "reset", "--host", "web-01"], "--host needs the LAB"),
        (["sim", "reset", "missing.yaml"], "no lab file 'missing.yaml'"),
        (["sim", "reset", "lab", "--store", "nonsense://x"], "unknown backend spec"),
    ],
)
def test_sim_reset_refuses_bad_input_in_one_line(
    argv: list[str], error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
):
    keep_root_logging(monkeypatch)
    assert main([*argv, "--db", str(tmp_path / "r.db")]) != 0
    err = capsys.readouterr().err.strip()
    assert error in err and len(err.splitlines()) == 1


async def test_a_resumed_mission_sees_the_world_its_first_run_left(
    harness: HarnessFactory, tmp_path: Path
):
    """The engine and workers die mid-mission; the resumed run (new backend objects, new
    workers) changes only what the first had not: together exactly one clean run's work."""
    clean = _changed(await _run(open_sqlite(tmp_path / "clean.db"), "ad-lab", harness))
    db = tmp_path / "reaper.db"
    first = open_sqlite(db)
    recorder = Recorder()
    overseer = Overseer(first, listener=recorder)
    workers = LocalWorkers(first)
    workers.start()
    await overseer.create_mission(_lab())
    run = overseer.start("ad-lab")
    recorder.crash_when(lambda: recorder.results() >= 8, run)
    await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), WAIT_S)
    assert run.cancelled()
    await workers.stop()
    await first.close()

    h = await harness(backend=open_sqlite(db))
    final = await asyncio.wait_for(h.overseer.run_mission("ad-lab"), WAIT_S)
    assert final.status is MissionStatus.COMPLETED, final.status_reason
    changed = [
        e.result()
        for e in await h.backend.store.events("ad-lab")
        if (r := e.result()) is not None and r.data.get("result") == "changed"
    ]
    assert len(changed) == sum(clean.values())
    assert _changed(await _run(open_sqlite(db), "ad-again", harness)) == dict.fromkeys(clean, 0)


# -- several worker processes ----------------------------------------------------------


def _store_url(kind: str, tmp_path: Path, schema: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'reaper.db'}"
    require_service("postgres", port_open("127.0.0.1", 5432), "nothing on 127.0.0.1:5432")
    return f"{PG_URL}?schema={schema}"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_worker_processes_share_one_world(kind: str, tmp_path: Path):
    """Two `reaper worker` processes serve the lab (a member's join reads the DC's world,
    which the other process may have written); a later mission served by this process's
    workers finds it all converged."""
    schema = f"sw_{uuid.uuid4().hex[:10]}"
    url = _store_url(kind, tmp_path, schema)
    try:
        async with WorkerProcesses(2, store=url, queue=url, concurrency=4):
            backend = open_backend(None, store=url, queue=url)
            try:
                overseer = Overseer(backend)
                await overseer.create_mission(_lab(), "ad-1")
                final = await asyncio.wait_for(overseer.run_mission("ad-1"), WAIT_S)
                assert final.status is MissionStatus.COMPLETED, final.status_reason
                assert all(_changed(final).values())
            finally:
                await backend.close()
        backend = open_backend(None, store=url, queue=url)
        workers = LocalWorkers(backend)
        workers.start()
        try:
            overseer = Overseer(backend)
            await overseer.create_mission(_lab(), "ad-2")
            again = await asyncio.wait_for(overseer.run_mission("ad-2"), WAIT_S)
            assert set(_changed(again).values()) == {0}
        finally:
            await workers.stop()
            await backend.close()
    finally:
        if kind == "postgres":
            await drop_schema(PG_URL, schema)


_WRITER = """
import asyncio, sys
from reaper.agents.transports.sim import SimRunner
from reaper.infra.base import sim_worlds_of
from reaper.infra.factory import open_backend
from reaper.infra.memory_worlds import MemorySimWorldStore
from reaper.models import HostConnection, Task

async def main(url, name, n):
    backend = open_backend(None, store=url, queue="memory")
    runner = SimRunner(worlds=sim_worlds_of(backend.store))
    conn = HostConnection(transport="sim")
    for i in range(n):
        task = Task(task_id=f"{name}-{i}", mission_id="race", host_id="h1",
                    action="linux.ensure_user", agent_type="reaper-linux",
                    params={"resource": {"kind": "user", "name": f"{name}{i}"}})
        out = await runner.run(task, "h1", conn)
        assert out.data.get("result") == "changed", out
    await backend.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


_PROC_WAIT_S = 120.0


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_concurrent_writer_processes_lose_no_update(kind: str, tmp_path: Path):
    """Two processes add users to one host's world at once: compare-and-set with a rerun
    on conflict keeps every user."""
    schema = f"sw_{uuid.uuid4().hex[:10]}"
    url = _store_url(kind, tmp_path, schema)
    backend = open_backend(None, store=url, queue="memory")
    try:
        worlds = sim_worlds_of(backend.store)
        assert worlds is not None
        await worlds.clear_worlds()  # creates the tables before the writers race
        procs = [
            subprocess.Popen([sys.executable, "-c", _WRITER, url, name, "25"])
            for name in ("a", "b")
        ]
        for proc in procs:
            # A process of its own imports Reaper first: seconds on a loaded 2-core machine.
            assert await asyncio.to_thread(proc.wait, _PROC_WAIT_S) == 0
        stored = await worlds.load_world("race", "h1")  # an unknown mission is its own lab
        assert stored is not None and stored.data is not None
        users = load_world(stored.data).users
        assert {f"{n}{i}" for n in "ab" for i in range(25)} <= set(users)
    finally:
        await backend.close()
        if kind == "postgres":
            await drop_schema(PG_URL, schema)


async def test_a_world_of_an_unknown_schema_version_is_refused_clearly():
    with pytest.raises(TransportError, match=r"schema_version 99.*reaper sim reset"):
        load_world({"schema_version": 99}, "sim world lab/h1")


async def test_a_long_lived_worker_keeps_only_its_recent_labs_worlds() -> None:
    def build() -> HostWorld:
        return HostWorld(os="linux", family="debian", distro=("debian", "12"), address="10.0.0.1")

    shared = SharedWorlds(MemorySimWorldStore(lambda _: None), max_labs=2)
    busy = shared.lock("lab-0")
    async with busy:  # a task of lab-0 is between its read and its write
        for n in range(4):
            lab = f"lab-{n}"
            async with shared.lock(lab) if n else contextlib.nullcontext():
                world, _ = await shared.fetch(lab, "h1", build)
                assert world is not None
                world.users["x"] = {"uid": n}
                assert await shared.commit(lab, ["h1"])
    assert set(shared._entries) == {"lab-0", "lab-3"}  # the busy lab and the newest stay
    # A dropped lab's world comes back from the store as it was written.
    async with shared.lock("lab-1"):
        again, reread = await shared.fetch("lab-1", "h1", None)
    assert reread and again is not None and again.users["x"] == {"uid": 1}
