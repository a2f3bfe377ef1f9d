"""Simulated Windows, Linux and macOS hosts, at the action level (the `sim` transport).

Deterministic from a seed: facts come from (seed, host_id); latency and probabilistic faults
from (seed, mission, host, task_id, attempt), so a replayed trial sees the same hosts, delays and
failures. The seed is `conn.sim.seed` when set, else the runner's.

Per-host stage state (tasks run, prerequisites installed, baseline settings, fault counts)
lives in this runner object, in process memory, keyed by (mission_id, host_id). The host's
world (below) does too unless the runner is given the backend's sim-world store (`worlds=`,
what workers get): then it is the store's, keyed by (lab, host_id), and a resumed mission,
every worker process and a later mission of the same lab see one world (`sim_shared`).

Faults (`conn.sim.faults`, see `reaper.models.SimFault`), each limited to matching actions:
- `flaky`: the first `times` attempts fail, or each attempt with probability `rate`:
  TransportError CONNECTION_RESET, retriable.
- `down`: from the host's `after`-th task on, for `for_tasks` tasks (None: forever):
  TransportError HOST_UNREACHABLE, retriable.
- `auth_failure`: TransportError AUTH_FAILED, not retriable.
- `needs_prepare`: baseline answers PREREQ_MISSING (not retriable, data {"missing", "fix"})
  until a prepare has succeeded on the host.
- `slow`: `delay_s` more latency.
- `command_failed`: the action exits non-zero: COMMAND_FAILED, not retriable.
`auth_failure` and `command_failed` honour `times` like `flaky` when it is set.

Desired state (`ensure_*`, discover's `resources`) is answered from the host's stateful world
(`sim_world`, `sim_ensure`, `sim_diagnose`; docs/sim-world.md): packages per distro,
services, files, accounts, settings, sshd, firewall, DNS, AD, and faults as *conditions* of
that world (`conn.sim.world`, `reaper.models.SimWorldSettings`: a full disk, a held lock, an
unreachable repository, a taken port, clock skew, a pending reboot), each with a right fix in
the vocabulary. Diagnose and cleanup use the world once the host has one.

Here: the runner (which host state, which faults fire, world or stage answer, the shared
world's read-act-write); the faults in `sim_faults`, the stage-era answers in `sim_stage`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

from reaper.agents.base import ActionOutcome
from reaper.agents.mission_cache import MissionCache
from reaper.agents.transports import sim_diagnose
from reaper.agents.transports.sim_actions import (
    WorldsView,
    observed_resources,
    reboot_world,
    resync_facts,
    run_ensure,
)
from reaper.agents.transports.sim_facts import (
    BASELINE_ITEMS,
    PREPARE_ITEMS,
    facts_for,
)
from reaper.agents.transports.sim_faults import check_faults, matches
from reaper.agents.transports.sim_shared import SharedWorlds, peers_needed
from reaper.agents.transports.sim_stage import (
    SimHostState,
    baseline,
    diagnose_facts,
    discover,
    error,
    prepare,
)
from reaper.agents.transports.sim_world import HostWorld
from reaper.clock import Clock, RealClock
from reaper.errors import TransportError
from reaper.infra.base import SimWorldStore
from reaper.models import (
    HostConnection,
    ResultStatus,
    SimSettings,
    Task,
)

__all__ = ["SimHostState", "SimRunner"]

_NO_SIM = SimSettings()
# Verbs answered from the world when there is one (`_world_act`), and those that may change it.
_WORLD_VERBS = frozenset({"diagnose", "cleanup", "reboot"})
_CHANGING_VERBS = frozenset({"cleanup", "reboot"})
# Compare-and-set attempts before a task gives up (another process kept writing the world),
# with a jittered backoff between them so two writers racing on one host stop colliding.
_CAS_TRIES = 16
_CAS_BACKOFF_S = 0.002


def _uses_world(verb: str, params: Mapping[str, Any]) -> bool:
    """Whether `verb` is answered from the host's world when it has one."""
    if verb == "discover":
        return "resources" in params
    return verb.startswith("ensure_") or verb in _WORLD_VERBS


class SimRunner:
    """An `ActionRunner` for `transport: sim` hosts. Hosts' memory is kept per mission; once
    more than `max_hosts` are held, the least recently used missions are forgotten (a worker
    serving mission after mission does not grow without bound)."""

    name = "sim"

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Clock | None = None,
        max_hosts: int = 50_000,
        worlds: SimWorldStore | None = None,
    ) -> None:
        self._seed = seed
        self._clock = clock or RealClock()
        self._hosts: MissionCache[SimHostState] = MissionCache(max_items=max_hosts)
        self._shared = None if worlds is None else SharedWorlds(worlds)

    def host_state(self, mission_id: str, host_id: str) -> SimHostState | None:
        """The simulated host's memory (for tests and inspection)."""
        return (self._hosts.peek(mission_id) or {}).get(host_id)

    def completes_inline(self, task: Task, conn: HostConnection) -> bool:
        """True when `run` will not suspend (no latency): the worker may run it inline."""
        sim = conn.sim
        if sim is None:
            return True
        if sim.latency_s != 0 and sim.latency_s != (0, 0):
            return False
        if not sim.faults:
            return True  # the common case, asked once per task: skip the generator
        return not any(f.kind == "slow" and f.delay_s > 0 for f in sim.faults)

    async def close(self) -> None:
        return None

    async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
        sim = conn.sim or _NO_SIM
        os_name, _, verb = task.action.partition(".")
        seed = self._seed if sim.seed is None else sim.seed
        host = self._host(task.mission_id, host_id, os_name, seed, conn, sim)
        index = host.tasks_run
        host.tasks_run += 1
        faults = (
            [(i, f) for i, f in enumerate(sim.faults) if matches(f, task.action, verb)]
            if sim.faults
            else []
        )
        rng: random.Random | None = None
        if sim.latency_s != 0 or faults:
            # Keyed by the attempt, so a retry draws afresh and a replay draws the same.
            rng = random.Random(f"{seed}|{task.mission_id}|{host_id}|{task.task_id}|{task.attempt}")
            delay = self._latency(sim, rng) + sum(f.delay_s for _, f in faults if f.kind == "slow")
            if delay > 0:
                await self._clock.sleep(delay)
        if faults:
            assert rng is not None
            outcome = check_faults(faults, task, host_id, index, rng, host.fired)
            if outcome is not None:
                return outcome
        if host.os != os_name or os_name not in BASELINE_ITEMS:
            return error(
                "UNKNOWN_ACTION",
                f"{task.action}: not an action for a {host.os} host",
                f"reaper: unknown action {task.action!r}",
            )
        needs_prepare = any(f.kind == "needs_prepare" for _, f in faults)
        shared = self._shared
        if shared is not None and _uses_world(verb, task.params):
            return await self._shared_act(shared, host, host_id, task, verb, needs_prepare)
        return self._act(host, host_id, task, verb, needs_prepare)

    async def _shared_act(
        self,
        shared: SharedWorlds,
        host: SimHostState,
        host_id: str,
        task: Task,
        verb: str,
        needs_prepare: bool,
    ) -> ActionOutcome:
        """`_act` on the store's world of the host: read, act, write back if changed
        (compare-and-set), again on the fresh world after a conflict."""
        lab = await shared.lab(task.mission_id)
        # diagnose, cleanup and reboot keep their stage answers on a host with no world yet
        builds = verb.startswith("ensure_") or verb == "discover" or host.world_settings
        build = host.fresh_world if builds else None
        changing = verb in _CHANGING_VERBS or (
            verb.startswith("ensure_") and not task.params.get("check_mode")
        )
        async with shared.lock(lab):
            for attempt in range(_CAS_TRIES):
                if attempt:
                    await asyncio.sleep(random.uniform(0, _CAS_BACKOFF_S * 2 ** min(attempt, 8)))
                world, reread = await shared.fetch(lab, host_id, build)
                host.world = world
                if reread and world is not None:
                    resync_facts(world, host.facts)
                    host.snapshot = None
                wanted = peers_needed(verb, task.params)
                read = [] if wanted == () else await shared.refresh(lab, wanted, host_id)
                peers = shared.peers(lab, host_id)
                outcome = self._act(host, host_id, task, verb, needs_prepare, peers)
                # An ensure that found its resource as desired ran nothing: no write.
                unchanged = outcome.data.get("result") == "unchanged"
                if not changing or unchanged or await shared.commit(lab, [host_id, *read]):
                    return outcome
        raise TransportError(
            f"{host_id}: the sim world of lab {lab!r} kept changing under this task",
            error_code="CONFLICT",
            retriable=True,
        )

    def _peers(self, mission_id: str, host_id: str) -> Mapping[str, HostWorld]:
        """The mission's other simulated hosts' worlds, read lazily (a domain join asks its
        DC's, a dns_client their addresses): no per-task cost growing with the lab."""
        return WorldsView(self._hosts.peek(mission_id) or {}, host_id)

    def _world_act(
        self,
        host: SimHostState,
        host_id: str,
        task: Task,
        verb: str,
        given: Mapping[str, HostWorld] | None,
    ) -> ActionOutcome | None:
        """What the host's world answers: every `ensure_*`, and diagnose and cleanup once the
        host has a world (conditions declared, or an ensure ran); None for the other verbs.
        `given`: the other hosts' worlds (None: this mission's, in this runner)."""
        if verb.startswith("ensure_"):
            peers = self._peers(task.mission_id, host_id) if given is None else given
            world = host.the_world()
            outcome = run_ensure(world, peers, host.facts, host_id, task.action, task.params)
            host.snapshot = None
            return outcome
        declared = task.params.get("resources") if verb == "discover" else None
        if declared is not None:
            outcome = discover(host, host_id, task.params)
            peers = self._peers(task.mission_id, host_id) if given is None else given
            seen, problems = observed_resources(host.the_world(), peers, declared)
            outcome.data["resources"] = seen
            if problems:
                outcome.data["resource_problems"] = problems
            return outcome
        if host.world is None and host.world_settings is None:
            return None
        if verb == "diagnose":
            peers = self._peers(task.mission_id, host_id) if given is None else given
            return sim_diagnose.diagnose(host.the_world(), peers, host.facts, host_id, task.params)
        if verb == "cleanup":
            return sim_diagnose.cleanup(host.the_world(), host_id, task.params)
        return None

    def _act(
        self,
        host: SimHostState,
        host_id: str,
        task: Task,
        verb: str,
        needs_prepare: bool,
        peers: Mapping[str, HostWorld] | None = None,
    ) -> ActionOutcome:
        by_world = self._world_act(host, host_id, task, verb, peers)
        if by_world is not None:
            return by_world
        if verb == "discover":
            return discover(host, host_id, task.params)
        if verb == "prepare":
            return prepare(host, host_id, task.params)
        if verb == "baseline":
            return baseline(host, host_id, task.params, needs_prepare=needs_prepare)
        if verb == "reboot":
            host.reboots += 1
            if host.world is not None:
                reboot_world(host.world)
            return ActionOutcome(
                status=ResultStatus.SUCCESS,
                summary=f"{host_id} rebooted",
                data={"rebooted": True, "delay_s": task.params.get("delay_s", 0)},
                stdout_tail="Broadcast message: The system will reboot now!\nhost is back up",
            )
        if verb == "diagnose":
            return diagnose_facts(host, host_id, task.params)
        if verb == "cleanup":
            check = bool(task.params.get("check_mode"))
            return ActionOutcome(
                status=ResultStatus.SUCCESS,
                summary=f"cleanup {host_id}: {'would free' if check else 'freed'} 0.0 MiB",
                data={"targets": {}, "check_mode": check, "changed": False},
            )
        if verb in ("run_shell", "run_powershell"):
            # A simulated host has no shell to run a free-form command in: saying so beats
            # pretending it ran (the planner sees a clear refusal, not invented output).
            return error(
                "UNSUPPORTED",
                f"{task.action}: a simulated host has no shell",
                f"reaper: {host_id} is simulated; free-form commands do not run on it",
            )
        return error(
            "UNKNOWN_ACTION",
            f"unknown action {task.action}",
            f"reaper: unknown action {task.action!r}",
        )

    # -- host state and faults ----------------------------------------------------------

    def _host(
        self,
        mission_id: str,
        host_id: str,
        os_name: str,
        seed: int,
        conn: HostConnection,
        sim: SimSettings,
    ) -> SimHostState:
        hosts = self._hosts.use(mission_id)
        if hosts is None:
            hosts = {}
            self._hosts.put(mission_id, hosts)
        host = hosts.get(host_id)
        if host is None:
            os_key = os_name if os_name in BASELINE_ITEMS else "linux"
            facts = facts_for(os_key, host_id, seed=seed, address=conn.address, overrides=sim.facts)
            needs = any(f.kind == "needs_prepare" for f in sim.faults)
            installed = set() if needs else set(PREPARE_ITEMS[os_key])
            host = SimHostState(
                os=os_key, facts=facts, installed=installed, world_settings=sim.world
            )
            self._hosts.add(mission_id, host_id, host)
        return host

    @staticmethod
    def _latency(sim: SimSettings, rng: random.Random) -> float:
        latency = sim.latency_s
        if isinstance(latency, tuple):
            low, high = latency
            return rng.uniform(low, high) if high > low else low
        return latency
