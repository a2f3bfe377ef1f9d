"""Running a mission in this process with the live dashboard: what `reaper run`, `demo` and
`resume` share. Engines and workers run here; the console only renders and asks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.live import Live
from rich.markup import escape
from rich.text import Text

from reaper.cli.console import render_mission, render_recap
from reaper.clock import RealClock
from reaper.engine.core import Listener
from reaper.errors import ReaperError
from reaper.infra.base import Backend
from reaper.models import (
    EventKind,
    EventRecord,
    MissionState,
    MissionStatus,
    Task,
    TaskStatus,
)
from reaper.overseer import MissionReport, Overseer
from reaper.planners.base import MissionPlanner
from reaper.planners.budget import UsageLedger, is_synthetic, llm_part
from reaper.planners.rules import RuleBasedPlanner
from reaper.runtime import LocalWorkers
from reaper.signals import stop_on_signals

if TYPE_CHECKING:
    from reaper.cli.context import Cli

__all__ = ["drive", "llm_usage", "planner_factory", "report_end"]


def planner_factory(cli: Cli) -> Any:
    a = cli.args
    forced = getattr(a, "planner", None)

    def factory(state: MissionState) -> MissionPlanner:
        kind = forced or state.planner
        if kind not in ("llm", "hybrid"):
            return RuleBasedPlanner()
        from reaper.planners.llm_factory import planner_from_cli

        llm = planner_from_cli(
            cli.config, state, replay=getattr(a, "replay", None), record=getattr(a, "record", None)
        )
        if kind == "hybrid":
            from reaper.planners.hybrid import HybridPlanner

            return HybridPlanner(llm)
        return llm

    return factory


_REFRESH_S = 0.125


class _Dashboard:
    """Keeps the engine's latest state and a tail of its events for the live view."""

    def __init__(self, lines: int = 10, also: Listener | None = None) -> None:
        self.also = also  # another listener fed the same commits (e.g. a tape recorder)
        self.state: MissionState | None = None
        self.events: deque[EventRecord] = deque(maxlen=lines)
        self.approvals: asyncio.Queue[EventRecord] = asyncio.Queue()
        self.usage: dict[str, Any] | None = None
        self.decisions: list[EventRecord] = []
        self.refused = 0

    def listener(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        self.state = state
        llm_steps = [
            e
            for e in events
            if e.kind is EventKind.PLANNER_DECISION and llm_part(e.payload) is not None
        ]
        if llm_steps:  # only LLM steps change the usage: rule-planner steps cost nothing
            self.decisions.extend(llm_steps)
            self.usage = llm_usage(self.decisions)
        for event in events:
            if event.kind is EventKind.APPROVAL_REQUESTED:
                self.approvals.put_nowait(event)
            elif event.kind is EventKind.TASK_REFUSED:
                self.refused += 1
        self.events.extend(events)
        if self.also is not None:
            self.also(state, events)

    def render(self) -> Any:
        if self.state is None:
            return Text("starting…", style="dim")
        return render_mission(
            self.state, list(self.events), usage=self.usage, now=RealClock().now()
        )


def llm_usage(events: Sequence[EventRecord]) -> dict[str, Any] | None:
    """LLM usage of a mission (totals and per host) from its planner decisions, or None."""
    payloads = [
        part
        for e in events
        if e.kind is EventKind.PLANNER_DECISION and (part := llm_part(e.payload)) is not None
    ]
    if not payloads:
        return None

    summary = UsageLedger.from_decisions(payloads).summary()
    last: dict[str, Any] = next((p["totals"] for p in reversed(payloads) if p.get("totals")), {})
    usage = {"provider": last.get("provider", ""), "model": last.get("model", ""), **summary}
    if is_synthetic(usage["provider"]):
        # Scripted answers: no model wrote them, so no money was spent on them either.
        usage["synthetic"] = True
        usage["cost_usd"] = None
        for host in usage.get("hosts", {}).values():
            host["cost_usd"] = None
    return usage


def _deliver_line(line: asyncio.Future[str]) -> None:
    if not line.done():
        line.set_result(sys.stdin.readline())


async def _read_answer(cli: Cli, question: str) -> bool | None:
    """Ask y/n on the terminal without a blocking thread, so the prompt can be cancelled when
    the mission ends or the task is decided from another shell. None: no answer (EOF)."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    while True:
        cli.out.print(f"{question} [bold magenta]\\[y/n][/] ", end="")
        line: asyncio.Future[str] = loop.create_future()
        loop.add_reader(fd, _deliver_line, line)
        try:
            text = await line
        finally:
            loop.remove_reader(fd)
        if not text:
            return None
        answer = text.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no"):
            return False
        cli.out.print("[red]please answer y or n[/]")


def approval_question(task: Task, why_asked: str) -> str:
    """The console's y/n question (rich markup): what the task does (its planner's reason,
    "add package/curl"), then why the policy asks. Everything from the task is escaped: a
    reason may hold brackets that rich would read as markup."""
    return (
        f"Approve [bold]{escape(task.action)}[/] on [bold]{escape(task.host_id)}[/]: "
        f"{escape(task.reason[:200])} (task {escape(task.task_id)}; policy: {escape(why_asked)})?"
    )


async def _prompt_approvals(
    cli: Cli, overseer: Overseer, dash: _Dashboard, live: Live | None
) -> None:
    while True:
        event = await dash.approvals.get()
        p = event.payload
        task_id = str(p.get("task_id"))
        state = dash.state
        rec = None if state is None else state.tasks.get(task_id)
        if rec is None or rec.status is not TaskStatus.AWAITING_APPROVAL:
            continue  # decided meanwhile, e.g. with `reaper approve` from another shell
        if live is not None:
            live.stop()
        question = approval_question(rec.task, str(p.get("reason")))
        try:
            answer = await _read_answer(cli, question)
        except asyncio.CancelledError:
            cli.out.print()
            raise
        if answer is None:
            return  # stdin closed: approvals come from `reaper approve` from now on
        with contextlib.suppress(ReaperError):  # decided elsewhere in the meantime
            await overseer.decide(event.mission_id, task_id, approved=answer, by="console")
        if live is not None:
            live.start()


def _tape_recorder(cli: Cli, state: MissionState | None) -> Any:
    """`--tape FILE`: record the mission's planner steps for counterfactual replay."""
    path = getattr(cli.args, "tape", None)
    if not path:
        return None
    from evals.tapes import TapeRecorder

    recorder = TapeRecorder(path, meta={"source": "reaper " + cli.args.command})
    if state is not None:
        recorder.begin(state)
    return recorder


def _live(cli: Cli, dash: _Dashboard) -> Live | None:
    """The live dashboard, on a terminal and unless --no-live or --json. Refreshed by the
    driving loop (not rich's thread), so rendering never races the engine's state."""
    if cli.args.no_live or cli.args.json or not cli.out.is_terminal:
        return None
    return Live(
        get_renderable=dash.render,
        console=cli.out,
        auto_refresh=False,
        transient=False,
        redirect_stderr=False,
    )


async def drive(
    cli: Cli, backend: Backend, mission_id: str, *, seed: int, fresh: MissionState | None = None
) -> int:
    """Run a mission's engine (and local workers) with the live dashboard; print the recap.
    `fresh` is the mission as created (a tape starts from it)."""
    a = cli.args
    tape = _tape_recorder(cli, fresh)
    dash = _Dashboard(also=tape)
    overrides: dict[str, Any] = {"lease_ttl_s": cli.config.lease_ttl_s}
    if cli.config.stall_after_s is not None:
        overrides["stall_after_s"] = cli.config.stall_after_s
    overseer = Overseer(
        backend,
        planner_factory=planner_factory(cli),
        listener=dash.listener,
        engine_overrides=overrides,
    )
    workers = LocalWorkers(
        backend, concurrency=cli.config.concurrency, seed=seed, lease_s=cli.config.lease_ttl_s
    )
    if not a.no_workers:
        workers.start()
    stop = asyncio.Event()
    interactive = not (a.no_input or cli.args.json) and cli.out.is_terminal
    live = _live(cli, dash)
    engine_task = overseer.start(mission_id)
    stop_task = asyncio.create_task(stop.wait())
    helpers: list[asyncio.Task[Any]] = []
    if interactive:
        helpers.append(asyncio.create_task(_prompt_approvals(cli, overseer, dash, live)))
    interrupted = False
    try:
        with stop_on_signals(stop):
            if live is not None:
                live.start()
            while not engine_task.done():
                done, _ = await asyncio.wait({engine_task, stop_task}, timeout=_REFRESH_S)
                if live is not None and live.is_started:
                    live.refresh()
                if stop_task in done:
                    interrupted = True
                    break
    finally:
        if live is not None and live.is_started:
            live.refresh()
            live.stop()
        for h in (*helpers, stop_task):
            h.cancel()
        await overseer.stop_all(interrupted=interrupted)
        await workers.stop()
        if tape is not None:
            tape.close()
    if interrupted:
        return _report_interrupted(cli, mission_id)
    state = engine_task.result()
    return report_end(cli, state, dash.usage, dash.refused)


def _report_interrupted(cli: Cli, mission_id: str) -> int:
    said = f"mission {mission_id} stopped cleanly; resume it with `reaper resume {mission_id}`"
    if cli.args.json:  # as every error under --json: one JSON object on stderr
        sys.stderr.write(json.dumps({"error": f"interrupted: {said}", "code": 130}) + "\n")
    else:
        cli.err.print(Text.assemble(("interrupted: ", "yellow"), said))
    return 130


def report_end(
    cli: Cli, state: MissionState, usage: dict[str, Any] | None, refused: int = 0
) -> int:
    if cli.args.json:
        report = MissionReport.of(state).model_dump(mode="json")
        report["llm_usage"] = usage
        report["refused_tasks"] = refused
        cli.print_json(report)
    else:
        cli.out.print(render_recap(state, usage=usage))
        if refused:
            cli.out.print(
                f"[yellow]{refused} planned task(s) refused by the policy[/]: "
                f"reaper events {state.mission_id} --kind task.refused"
            )
    ok = state.status is MissionStatus.COMPLETED and state.goal_reached
    return 0 if ok else 3
