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
"""

from __future__ import annotations

import asyncio
import marshal
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reaper.actions import DIAGNOSE_TOPICS
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
    get_path,
    set_path,
)
from reaper.agents.transports.sim_shared import SharedWorlds, peers_needed
from reaper.agents.transports.sim_world import HostWorld, build_world
from reaper.clock import Clock, RealClock
from reaper.errors import TransportError
from reaper.infra.base import SimWorldStore
from reaper.models import (
    HostConnection,
    ResultStatus,
    SimFault,
    SimSettings,
    SimWorldSettings,
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


@dataclass(slots=True)
class SimHostState:
    """What a simulated host remembers between tasks."""

    os: str
    facts: dict[str, Any]
    installed: set[str]
    tasks_run: int = 0
    prepared: bool = False
    reboots: int = 0
    # How often each fault (by its position in the lab's list) has fired on this host.
    fired: dict[int, int] = field(default_factory=dict)
    # discover's precomputed answer; None whenever the facts change
    snapshot: tuple[bytes | None, str, str] | None = None
    # The resources and conditions of the host (`sim_world`), built on first use.
    world: HostWorld | None = None
    world_settings: SimWorldSettings | None = None

    def the_world(self) -> HostWorld:
        if self.world is None:
            self.world = self.fresh_world()
        return self.world

    def fresh_world(self) -> HostWorld:
        return build_world(self.os, self.facts, self.world_settings)


def _uses_world(verb: str, params: Mapping[str, Any]) -> bool:
    """Whether `verb` is answered from the host's world when it has one."""
    if verb == "discover":
        return "resources" in params
    return verb.startswith("ensure_") or verb in _WORLD_VERBS


def _matches(fault: SimFault, action: str, verb: str) -> bool:
    return fault.action in ("*", verb, action)


def _fires(fault: SimFault, pos: int, fired: dict[int, int]) -> bool:
    """A counted fault fires on the host's first `times` matching tasks (always without)."""
    count = fired.get(pos, 0)
    if fault.times is not None and count >= fault.times:
        return False
    fired[pos] = count + 1
    return True


def _error(
    code: str,
    summary: str,
    stderr: str,
    data: dict[str, Any] | None = None,
    *,
    retriable: bool = False,
) -> ActionOutcome:
    return ActionOutcome(
        status=ResultStatus.ERROR,
        summary=summary,
        data=data or {},
        stderr_tail=stderr,
        error_code=code,
        retriable=retriable,
    )


def _copy(value: Any) -> Any:
    # Facts are plain JSON-like data: a comprehension copy is several times cheaper than
    # copy.deepcopy, and results must never alias the host's live state.
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _snapshot(os: str, facts: dict[str, Any]) -> tuple[bytes | None, str, str]:
    """What discover returns, precomputed until the facts change: marshal round-trips plain
    data as a deep copy in C, twice as fast as a Python copy (None when the facts hold a type
    marshal does not know, e.g. a date a YAML override produced)."""
    try:
        blob: bytes | None = marshal.dumps(facts)
    except ValueError:
        blob = None
    if os == "linux":
        what = get_path(facts, ("os", "pretty_name"), "Linux")
        lines = [
            f"os-release: {what}",
            f"kernel: {facts.get('kernel', '?')}",
            f"ss -tlnp: {len(facts.get('listening_ports', ()))} listening",
        ]
    elif os == "windows":
        what = get_path(facts, ("computer", "os_name"), "Windows")
        lines = [
            f"Caption : {what}",
            f"BuildNumber : {get_path(facts, ('computer', 'build'))}",
            f"Domain : {get_path(facts, ('computer', 'domain'))}",
        ]
    else:
        what = f"macOS {get_path(facts, ('sw_vers', 'product_version'), '?')}"
        lines = [
            f"ProductVersion:\t{get_path(facts, ('sw_vers', 'product_version'))}",
            f"BuildVersion:\t{get_path(facts, ('sw_vers', 'build'))}",
        ]
    return blob, str(what), "\n".join(lines)


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
            [(i, f) for i, f in enumerate(sim.faults) if _matches(f, task.action, verb)]
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
            outcome = self._faults(faults, task, host_id, index, rng, host.fired)
            if outcome is not None:
                return outcome
        if host.os != os_name or os_name not in BASELINE_ITEMS:
            return _error(
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
            outcome = self._discover(host, host_id, task.params)
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
            return self._discover(host, host_id, task.params)
        if verb == "prepare":
            return self._prepare(host, host_id, task.params)
        if verb == "baseline":
            return self._baseline(host, host_id, task.params, needs_prepare=needs_prepare)
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
            return self._diagnose(host, host_id, task.params)
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
            return _error(
                "UNSUPPORTED",
                f"{task.action}: a simulated host has no shell",
                f"reaper: {host_id} is simulated; free-form commands do not run on it",
            )
        return _error(
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

    @staticmethod
    def _faults(
        faults: list[tuple[int, SimFault]],
        task: Task,
        host_id: str,
        index: int,
        rng: random.Random,
        fired: dict[int, int],
    ) -> ActionOutcome | None:
        """Raise (connection-level faults) or return an error outcome, or None to proceed.

        `flaky` with `times` fails a task's first attempts (it is retried); `auth_failure`
        and `command_failed` with `times` fail the host's first `times` tasks they match (a
        failed task is not retried, a new task is planned instead)."""
        for pos, fault in faults:
            if fault.kind == "down":
                end = None if fault.for_tasks is None else fault.after + fault.for_tasks
                if index >= fault.after and (end is None or index < end):
                    raise TransportError(
                        f"{host_id}: connect: No route to host (simulated)",
                        error_code="HOST_UNREACHABLE",
                        retriable=True,
                    )
            elif fault.kind == "auth_failure" and _fires(fault, pos, fired):
                raise TransportError(
                    f"{host_id}: authentication failed (simulated)",
                    error_code="AUTH_FAILED",
                    retriable=False,
                )
            elif fault.kind == "flaky":
                by_count = fault.times is not None and task.attempt <= fault.times
                by_rate = fault.rate is not None and rng.random() < fault.rate
                if by_count or by_rate:
                    raise TransportError(
                        f"{host_id}: connection reset by peer (simulated)",
                        error_code="CONNECTION_RESET",
                        retriable=True,
                    )
        for pos, fault in faults:
            if fault.kind == "command_failed" and _fires(fault, pos, fired):
                return _error(
                    "COMMAND_FAILED",
                    f"{task.action} failed on {host_id}: exit status 1",
                    f"{task.action}: step failed\nerror: command exited with status 1",
                    {"exit_code": 1},
                )
        return None

    # -- actions -----------------------------------------------------------------------

    @staticmethod
    def _discover(host: SimHostState, host_id: str, params: dict[str, Any]) -> ActionOutcome:
        if host.snapshot is None:
            host.snapshot = _snapshot(host.os, host.facts)
        blob, what, lines = host.snapshot
        sections = params.get("sections")
        if sections is None and blob is not None:
            data: dict[str, Any] = marshal.loads(blob)
        else:
            data = {k: _copy(v) for k, v in host.facts.items() if sections is None or k in sections}
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary=f"discovered {host_id}: {what}",
            data=data,
            stdout_tail=f"{lines}\ncollected {len(data)} fact groups",
        )

    @staticmethod
    def _diagnose(host: SimHostState, host_id: str, params: dict[str, Any]) -> ActionOutcome:
        """What the facts the sim host has would show; a sim host is otherwise healthy."""
        topics = params.get("topics") or list(DIAGNOSE_TOPICS)
        facts = host.facts
        report = {
            "disk": "\n".join(
                f"{d.get('mount')} {d.get('size_gb')} GB {d.get('used_pct')}% used"
                for d in facts.get("disks", [])
            ),
            "packages": f"manager: {facts.get('package_manager', 'none')}\n#lock\n#broken\n",
            "service": "#state "
            + ("active" if params.get("service") in facts.get("services", []) else "inactive"),
            "network": "\n".join(str(a.get("addr")) for a in facts.get("addresses", [])),
            "time": "clock in sync (simulated)",
            "processes": "\n".join(str(s) for s in facts.get("services", [])),
        }
        report = {k: v for k, v in report.items() if k in topics}
        if "service" in report and not params.get("service"):
            report["service"] = "no service named: pass `service` to see its status and log"
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary=f"diagnose {host_id}: nothing abnormal found",
            data={"topics": list(topics), "report": report, "findings": []},
        )

    @staticmethod
    def _prepare(host: SimHostState, host_id: str, params: dict[str, Any]) -> ActionOutcome:
        wanted = params.get("items") or list(PREPARE_ITEMS[host.os])
        installed = [item for item in wanted if item not in host.installed]
        present = [item for item in wanted if item in host.installed]
        host.installed.update(installed)
        host.prepared = True
        if host.os == "linux" and "auditd" in host.installed:
            set_path(host.facts, ("auditd", "installed"), True)
            host.snapshot = None
        lines = [f"installed {item}" for item in installed] or ["nothing to install"]
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary=f"prepared {host_id}: {len(installed)} installed, {len(present)} present",
            data={"installed": installed, "already_present": present},
            stdout_tail="\n".join(lines),
        )

    @staticmethod
    def _baseline(
        host: SimHostState, host_id: str, params: dict[str, Any], *, needs_prepare: bool
    ) -> ActionOutcome:
        if needs_prepare and not host.prepared:
            missing = [i for i in PREPARE_ITEMS[host.os] if i not in host.installed]
            return _error(
                "PREREQ_MISSING",
                f"baseline needs {', '.join(missing)} on {host_id}",
                f"baseline: prerequisite missing: {', '.join(missing)}",
                {"missing": missing, "fix": f"{host.os}.prepare"},
            )
        catalog = BASELINE_ITEMS[host.os]
        names = params.get("items")
        if names is not None:
            unknown = sorted(set(names) - {item.name for item in catalog})
            if unknown:
                return _error(
                    "INVALID_PARAMS",
                    f"unknown baseline items: {', '.join(unknown)}",
                    f"baseline: unknown items {unknown}",
                )
            catalog = tuple(item for item in catalog if item.name in names)
        check = bool(params.get("check_mode", False))
        items: list[dict[str, Any]] = []
        lines: list[str] = []
        for item in catalog:
            before = get_path(host.facts, item.path)
            changed = before != item.want
            if changed and not check:
                set_path(host.facts, item.path, item.want)
                host.snapshot = None
            after = item.want if changed else before
            items.append({"name": item.name, "changed": changed, "before": before, "after": after})
            lines.append(f"{'changed' if changed else 'ok'}: [{item.name}]")
        n_changed = sum(1 for i in items if i["changed"])
        n_unchanged = len(items) - n_changed
        verb = "would change" if check else "changed"
        lines.append(f"RECAP {host_id}: ok={len(items)} {verb}={n_changed}")
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary=f"baseline on {host_id}: {n_changed} {verb}, {n_unchanged} unchanged",
            data={
                "items": items,
                "changed": n_changed,
                "unchanged": n_unchanged,
                "check_mode": check,
            },
            stdout_tail="\n".join(lines[-12:]),
        )
