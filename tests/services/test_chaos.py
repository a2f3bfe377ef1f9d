"""Chaos: SIGKILL engines and workers at 50 random points of 200-host missions.

Kill points are progress points (the number of results applied so far), drawn at random,
ten per run over five runs, so every kill lands mid-mission however fast the machine is.
Each victim is replaced at once (a supervisor would do the same). Every run must end like a
run without faults: completed, every host at the same stage, every task finished with its
result applied exactly once per (task_id, attempt), no host locked or failing.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from reaper.infra.base import Backend
from reaper.infra.factory import open_backend
from reaper.models import EventKind
from reaper.overseer import Overseer
from reaper.runtime import LocalWorkers
from tests.services.harness import (
    BACKENDS,
    Cluster,
    backend_spec,
    check_invariants,
    lab,
    mission_id,
    submit,
    wait_done,
    wait_for,
)

pytestmark = pytest.mark.timeout(240)

HOSTS = 200
RUNS = 5
KILLS_PER_RUN = 10
ENGINES = 2
WORKERS = 2


async def _fault_free_stages() -> dict[str, str]:
    backend = open_backend("memory")
    overseer = Overseer(backend)
    state = await overseer.create_mission(lab(HOSTS), "baseline")
    workers = LocalWorkers(backend, concurrency=64)
    workers.start()
    try:
        final = await overseer.run_mission(state.mission_id)
    finally:
        await workers.stop()
        await backend.close()
    return {h.host_id: h.stage.value for h in final.hosts.values()}


class _Progress:
    """Results applied so far, read incrementally from the event log."""

    def __init__(self, backend: Backend, mid: str) -> None:
        self.backend, self.mid = backend, mid
        self.seq = 0
        self.results = 0

    async def at_least(self, n: int) -> bool:
        for e in await self.backend.store.events(self.mid, after_seq=self.seq):
            self.seq = max(self.seq, e.seq)
            self.results += e.kind is EventKind.TASK_RESULT
        state = await self.backend.store.load(self.mid)
        return self.results >= n or (state is not None and state.status.terminal)


@pytest.mark.parametrize("kind", BACKENDS)
async def test_kills_at_random_points_change_nothing_in_the_outcome(
    kind: str, tmp_path: Path
) -> None:
    expected = await _fault_free_stages()
    expected_results = 2 * HOSTS  # discover + baseline per host
    rng = random.Random(20240501)
    spec = backend_spec(kind, tmp_path)
    kills = {"engine": 0, "worker": 0}
    for run in range(RUNS):
        mid = mission_id(f"chaos{run}")
        await submit(spec, lab(HOSTS, latency=(0.05, 0.2)), mid)
        cluster = Cluster(spec, tmp_path / f"logs-{run}", lease_ttl_s=0.6)
        backend = spec.open()
        try:
            roles = {"engine": [cluster.engine("--mission", mid) for _ in range(ENGINES)]}
            roles["worker"] = [cluster.worker("linux", concurrency=16) for _ in range(WORKERS)]
            progress = _Progress(backend, mid)
            points = sorted(rng.sample(range(5, expected_results - 20), KILLS_PER_RUN))
            for point in points:
                await wait_for(
                    lambda p=point, g=progress: g.at_least(p),  # type: ignore[misc]
                    timeout=60,
                    what=f"{point} results",
                )
                role = rng.choice(("engine", "worker"))
                victim = rng.choice(roles[role])
                cluster.kill(victim)
                kills[role] += 1
                roles[role].remove(victim)
                if role == "engine":
                    roles[role].append(cluster.engine("--mission", mid))
                else:
                    roles[role].append(cluster.worker("linux", concurrency=16))
            final = await wait_done(backend, mid, timeout=60)
            stages = await check_invariants(backend, final)
            assert stages == expected
            assert len(final.tasks) == expected_results
        except BaseException:
            print(f"run {run} ({kind}):\n{cluster.output()}")
            raise
        finally:
            cluster.close()
            await backend.close()
    assert kills["engine"] + kills["worker"] == RUNS * KILLS_PER_RUN
    assert kills["engine"] > 0 and kills["worker"] > 0
