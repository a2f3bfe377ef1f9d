"""Running planners on scenarios: the real engine, workers and sim agents, in virtual time.

Each run gets its own world — an in-memory backend, one worker per agent type with the sim
runner, the `MissionEngine` with the planner under test — on its own fresh virtual-time loop
(`evals.vtime`), so nothing waits for real and a run's result depends only on (scenario,
planner, seed), never on which other runs share the process. Virtual time also means running
missions concurrently on one loop would buy nothing (no run ever waits), so parallelism is a
process pool over runs, and results are sorted afterwards.

The harness plays the operator for approval requests (the scenario's `operator`), and stops a
run that reaches a limit (steps, tasks, simulated time), stalls, or stops planning; the run is
then scored as it stands.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from evals.planners import LLMSource, build_planner, recorded_seeds, split_replay
from evals.provenance import provenance
from evals.scenario import Scenario
from evals.scorecard import Metrics, RunResult, meets, prompt_digest, score
from evals.tapes import TapeRecorder
from evals.variants import split_variant
from evals.vtime import LoopClock, run_virtual
from evals.world import score_world
from llm.errors import LLMError
from reaper.agents.transports.sim import SimRunner
from reaper.engine.core import EngineSettings, MissionEngine
from reaper.errors import ReaperError
from reaper.infra.base import Backend
from reaper.infra.memory import memory_backend
from reaper.models import ApprovalDecision, EventKind, EventRecord, MissionState, MissionStatus
from reaper.overseer import engine_settings_for
from reaper.planners.base import MissionPlanner, close_planner
from reaper.runtime import LocalWorkers
from reaper.secrets import redact_mission

__all__ = ["Job", "PlannerFactory", "code_version", "plan_jobs", "run_job", "run_suite"]

log = logging.getLogger(__name__)

# How many seeds per scenario the shipped cassettes hold (evals.make_fixtures' default trials).
DEFAULT_REPLAY_SEEDS = 3
# Statuses a mission would wait in for ever without an operator: the run ends there.
_HALTED = (MissionStatus.STALLED, MissionStatus.STOPPED)
# (scenario, lab seed) -> planner; tests pass these directly (jobs=1), the CLI uses names.
PlannerFactory = Callable[[Scenario, int], MissionPlanner]


@dataclass(frozen=True, slots=True)
class Job:
    scenario: Scenario
    planner: str  # the label in results
    spec: str  # rule | llm | module:attr
    trial: int
    seed: int
    source: LLMSource = field(default_factory=LLMSource)
    tape_dir: Path | None = None
    code_version: str = ""


def code_version() -> str:
    """Package version, plus `git describe` when run from a checkout."""
    try:
        version = metadata.version("reaper-lab")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    root = Path(__file__).resolve().parent.parent
    if (root / ".git").exists():
        try:
            described = subprocess.run(
                ["git", "describe", "--always", "--dirty"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            described = ""
        if described:
            version = f"{version}+{described}"
    return version


class _Watch:
    """The engine listener: keeps the log, plays the operator, enforces the limits."""

    def __init__(self, job: Job, backend: Backend, tape: TapeRecorder | None) -> None:
        self.job = job
        self.backend = backend
        self.tape = tape
        self.events: list[EventRecord] = []
        self.done = asyncio.Event()
        self.stop = ""
        self.end_time = 0.0
        self.tasks = 0
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        self.events.extend(events)
        if self.tape is not None:
            self.tape(state, events)
        limits = self.job.scenario.limits
        for event in events:
            if event.kind is EventKind.TASK_PLANNED:
                self.tasks += 1
            elif event.kind is EventKind.APPROVAL_REQUESTED:
                self._answer(state.mission_id, str(event.payload["task_id"]))
        stop = ""
        if state.status.terminal or state.status in _HALTED:
            stop = state.status.value
        elif state.step >= limits.max_steps:
            stop = "limit:steps"
        elif self.tasks >= limits.max_tasks:
            stop = "limit:tasks"
        if stop and not self.stop:
            self.stop = stop
            self.end_time = asyncio.get_running_loop().time()
            self.done.set()

    def _answer(self, mission_id: str, task_id: str) -> None:
        decision = ApprovalDecision(
            mission_id=mission_id,
            task_id=task_id,
            approved=self.job.scenario.operator == "approve",
            by="eval-operator",
        )
        task = asyncio.get_running_loop().create_task(self.backend.bus.publish(decision))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def _settings(job: Job, state: MissionState) -> EngineSettings:
    """The engine settings `reaper run` would use: a model-driven planner runs in lockstep
    unless the lab says otherwise (the lab's own `planner:` is not the planner under test)."""
    if not _is_llm(job.spec):
        return engine_settings_for(state.model_copy(update={"planner": "rule"}))
    if state.settings.get("lockstep") is not None:
        return engine_settings_for(state)  # the lab says
    return engine_settings_for(state, lockstep=job.source.llm_lockstep())


def _is_llm(spec: str) -> bool:
    return spec == "llm" or split_variant(spec) is not None


def _asks_model(spec: str) -> bool:
    """Whether a planner's answers come from a model (live, recorded or scripted). The hybrid
    does, but runs unlocked, as `reaper run --planner hybrid` does."""
    return _is_llm(spec) or spec == "hybrid"


async def _run(job: Job, planner: MissionPlanner) -> RunResult:
    scenario = job.scenario
    lab = scenario.lab_file(job.seed)
    state = redact_mission(lab.to_state(scenario.mission_id(job.seed)))
    initial = state.model_copy(deep=True)
    clock = LoopClock()
    store, queue, bus = memory_backend(clock)
    backend = Backend(store, queue, bus, description="memory")
    tape = None
    if job.tape_dir is not None:
        name = f"{job.planner.replace(':', '_')}--{state.mission_id}.tape.jsonl"
        tape = TapeRecorder(
            job.tape_dir / name,
            meta={"scenario": scenario.name, "planner": job.planner, "seed": job.seed},
        )
        tape.begin(state)
    watch = _Watch(job, backend, tape)
    engine = MissionEngine(
        state.mission_id,
        store=store,
        queue=queue,
        bus=bus,
        planner=planner,
        policy=lab.resolved_policy(),
        clock=clock,
        settings=_settings(job, state),
        owner=f"eval-{state.mission_id}",
        listener=watch,
    )
    workers = LocalWorkers(backend, clock=clock, seed=job.seed)
    workers.start()
    error: str | None = None
    try:
        await engine.start(state)
        running = asyncio.create_task(engine.run())
        waiter = asyncio.create_task(watch.done.wait())
        await asyncio.wait(
            {running, waiter}, timeout=scenario.limits.max_sim_s, return_when="FIRST_COMPLETED"
        )
        for task in (running, waiter):
            task.cancel()
        outcome = (await asyncio.gather(running, waiter, return_exceptions=True))[0]
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            error = f"{type(outcome).__name__}: {outcome}"
    finally:
        await workers.stop()
        if tape is not None:
            tape.close()
        await close_planner(planner)
    final = engine.state or initial
    sim = (workers.runners or {}).get("sim")
    world = score_world(sim, final) if isinstance(sim, SimRunner) else None
    loop_time = asyncio.get_running_loop().time()
    stop = "error" if error else (watch.stop or "limit:time")
    metrics, llm = score(
        scenario,
        initial,
        final,
        watch.events,
        stop=stop,
        sim_time_s=watch.end_time if watch.stop else loop_time,
    )
    versions = llm.get("prompt_versions", {})
    fields = metrics.model_dump()
    if world is not None:
        # The world decides: a trace that looks finished but left a resource unconverged,
        # or broke one that was fine, is no success.
        fields["goal_reached"] = world.converged == world.resources and not world.collateral
        fields["goal_pct"] = round(world.converged_pct, 2)
        fields["success"] = stop == "completed" and meets(scenario, Metrics(**fields))
    return RunResult(
        **fields,
        world_resources=None if world is None else world.resources,
        world_converged=None if world is None else world.converged,
        world_collateral=None if world is None else world.collateral,
        planner=job.planner,
        provider=llm.get("provider", ""),
        model=llm.get("model", ""),
        prompt_hash=prompt_digest(versions),
        prompt_versions=versions,
        scenario=scenario.name,
        scenario_hash=scenario.digest(),
        code_version=job.code_version,
        seed=job.seed,
        trial=job.trial,
        hosts=len(final.hosts),
        stop=stop,
        status=final.status.value,
        status_reason=final.status_reason,
        error=error,
        **_labels(job),
    )


def _labels(job: Job) -> dict[str, str]:
    """What every row of a job carries, whatever the run did: where its answers came from
    and the fault type it is reported under."""
    faults = [t.removeprefix("fault:") for t in job.scenario.tags if t.startswith("fault:")]
    return {
        "provenance": provenance(job.source, job.scenario.name) if _asks_model(job.spec) else "",
        "fault": faults[0] if faults else "",
    }


def run_job(job: Job, factory: PlannerFactory | None = None) -> RunResult:
    """One run, on its own virtual-time loop. Errors (a cassette miss, a planner crash) are
    recorded in the result, not raised, so one bad run does not hide the others."""
    try:
        if factory is not None:
            planner = factory(job.scenario, job.seed)
        else:
            lab = job.scenario.lab_file(job.seed)
            planner = build_planner(
                job.spec, lab, seed=job.seed, scenario=job.scenario.name, source=job.source
            )
    except (ReaperError, LLMError) as exc:
        return _error_result(job, f"{type(exc).__name__}: {exc}")
    return run_virtual(_run(job, planner))


def _error_result(job: Job, error: str) -> RunResult:
    return RunResult(
        planner=job.planner,
        scenario=job.scenario.name,
        scenario_hash=job.scenario.digest(),
        code_version=job.code_version,
        seed=job.seed,
        trial=job.trial,
        hosts=job.scenario.host_count,
        stop="error",
        error=error,
        **_labels(job),
    )


def plan_jobs(
    scenarios: Sequence[Scenario],
    planners: Sequence[tuple[str, str]],
    *,
    trials: int,
    source: LLMSource | None = None,
    tape_dir: Path | None = None,
    version: str = "",
    replay_seeds: int | None = None,
) -> list[Job]:
    """Every (planner label, spec) × scenario × trial; trial t uses seed lab.seed + t, except
    that a replayed model cycles over the seeds its scenario's cassette was recorded on (the
    seed is in every request, so trial 4 of 3 recorded ones would miss): later trials repeat
    earlier seeds, which replay identically. `replay_seeds` N instead cycles lab.seed + 0..N-1
    (without a readable cassette: DEFAULT_REPLAY_SEEDS)."""
    jobs = []
    for label, given in planners:
        spec, replayed = split_replay(given)
        own = LLMSource(mode="replay", path=replayed) if replayed is not None else source
        for scenario in scenarios:
            base = int(scenario.lab.get("seed", 0))
            seeds = _seeds(scenario, spec, own, trials, replay_seeds)
            for trial in range(trials):
                jobs.append(
                    Job(
                        scenario=scenario,
                        planner=label,
                        spec=spec,
                        trial=trial,
                        seed=seeds[trial] if seeds else base + trial,
                        source=own or LLMSource(),
                        tape_dir=tape_dir,
                        code_version=version,
                    )
                )
    return jobs


def _seeds(
    scenario: Scenario,
    spec: str,
    source: LLMSource | None,
    trials: int,
    replay_seeds: int | None,
) -> list[int]:
    """One seed per trial for a replayed model; [] when each trial takes lab.seed + trial."""
    source = source or LLMSource()
    if not _asks_model(spec) or source.mode != "replay":
        return []
    base = int(scenario.lab.get("seed", 0))
    recorded = recorded_seeds(source.path, scenario.name) if replay_seeds is None else []
    if not recorded:
        recorded = [base + t for t in range(max(1, replay_seeds or DEFAULT_REPLAY_SEEDS))]
    return [recorded[t % len(recorded)] for t in range(trials)]


def run_suite(
    jobs: Sequence[Job],
    *,
    processes: int | None = None,
    factory: PlannerFactory | None = None,
) -> list[RunResult]:
    """Run every job; `processes` > 1 spreads them over a fork-based process pool (not with a
    `factory`, which may not survive pickling, nor when recording, which appends to shared
    cassette files). Results come back sorted by (planner, scenario, seed)."""
    if processes is None:
        processes = os.cpu_count() or 1
    recording = any(j.source.mode == "record" and j.spec != "rule" for j in jobs)
    if factory is not None or recording or processes <= 1 or len(jobs) <= 1:
        results = [run_job(job, factory) for job in jobs]
    else:
        # Biggest labs first, so the pool does not end on one long run.
        ordered = sorted(jobs, key=lambda j: -j.scenario.host_count)
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            results = list(pool.map(run_job, ordered, chunksize=1))
    return sorted(results, key=lambda r: (r.planner, r.scenario, r.seed))
