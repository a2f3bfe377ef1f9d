"""The mission commands: `demo`, `run`, `resume`, `status`, `events`, `approve`, `reject`.
The app parses; this module acts."""

from __future__ import annotations

import os
import sys
from importlib import resources
from typing import Any

from reaper.cli.console import format_event, render_mission, render_missions
from reaper.cli.context import Cli, cli_backend
from reaper.cli.drive import drive, llm_usage, planner_factory, report_end
from reaper.errors import BadRequestError, ConfigError, MissionNotFoundError
from reaper.lab import LabFile, load_lab
from reaper.models import (
    EventKind,
    MissionControl,
    MissionState,
    SimSettings,
    Stage,
    TaskRecord,
)
from reaper.overseer import MissionReport, Overseer
from reaper.planners.base import close_planner

__all__ = [
    "cmd_approve",
    "cmd_demo",
    "cmd_events",
    "cmd_reject",
    "cmd_resume",
    "cmd_run",
    "cmd_status",
]


def _apply_planner_override(cli: Cli, lab: LabFile) -> LabFile:
    if getattr(cli.args, "planner", None):
        lab = lab.model_copy(
            update={"planner": lab.planner.model_copy(update={"kind": cli.args.planner})}
        )
    return lab


# `reaper demo --lab NAME`: the shipped labs (a path runs any other lab file).
DEMO_LABS = {"baseline": "demo.yaml", "ad": "ad-lab.yaml", "lockout": "lockout-lab.yaml"}


async def cmd_demo(cli: Cli) -> int:
    a = cli.args
    shipped = DEMO_LABS.get(a.lab or "baseline")
    if shipped is None:
        lab = load_lab(a.lab)
    else:
        text = resources.files("reaper.labs").joinpath(shipped).read_text("utf-8")
        from reaper.lab import parse_lab

        lab = _paced(parse_lab(text, source=shipped))
    lab = _apply_planner_override(cli, lab)
    if lab.planner.kind == "llm" and not a.replay and not cli.config.llm_provider:
        a.replay = str(resources.files("reaper.labs").joinpath("demo-llm.cassette.jsonl"))
    # The demo keeps nothing: an in-memory backend unless one is asked for.
    in_memory = (cli.config.backend or "memory") == "memory" and not cli.config.store
    async with cli_backend(cli, spec=cli.config.backend or "memory") as backend:
        overseer = Overseer(backend)
        state = await overseer.create_mission(lab, "demo" if in_memory else None)
        code = await drive(cli, backend, state.mission_id, seed=lab.seed, fresh=state)
    if in_memory and not cli.args.json:
        cli.err.print(
            "[dim]the demo ran in memory and kept nothing; to keep its mission for "
            "`reaper status` and `reaper events`, run `reaper demo --backend sqlite`[/]"
        )
    elif not cli.args.json:
        cli.err.print(f"[dim]kept: reaper status {state.mission_id}[/]")
    if shipped == "demo.yaml" and not cli.args.json:
        # The stage demo is the first thing a new user runs: point at desired state.
        cli.err.print(
            "[dim]next: `reaper demo --lab ad` converges an Active Directory lab declared as "
            "desired state; `reaper plan reaper/labs/ad-lab.yaml` shows what it would change[/]"
        )
    return code


# A shipped lab's simulated hosts answer at once unless they say otherwise: the demo gives them
# a few tenths of a second per task, so its dashboard can be watched (the AD lab converges in
# about 5 s instead of 0.1 s, its members visibly waiting for the domain controller).
DEMO_LATENCY_S = (0.2, 0.5)


def _paced(lab: LabFile) -> LabFile:
    hosts = [
        h.model_copy(update={"sim": sim.model_copy(update={"latency_s": DEMO_LATENCY_S})})
        if h.transport == "sim" and (sim := h.sim or SimSettings()).latency_s in (0, (0, 0))
        else h
        for h in lab.hosts
    ]
    return lab.model_copy(update={"hosts": hosts})


def _load_run_lab(cli: Cli) -> LabFile:
    a = cli.args
    if a.inventory and a.lab:
        raise ConfigError(
            f"give a lab file ({a.lab}) or --inventory ({a.inventory}), not both: an inventory "
            "makes its own lab"
        )
    if a.inventory:
        try:
            from reaper.inventory.load import load_inventory
        except ImportError:
            raise ConfigError("Ansible inventories are not supported in this build") from None
        return load_inventory(a.inventory)
    if not a.lab:
        raise ConfigError("run needs a lab file (or --inventory FILE)")
    return load_lab(a.lab)


async def _preflight(cli: Cli, lab: LabFile) -> None:
    """Build the planner once before the mission exists, so a missing API key, SDK or
    cassette is a one-line error and not a half-created mission."""
    await close_planner(planner_factory(cli)(lab.to_state(cli.args.mission_id or lab.mission_id)))


def checked(lab: LabFile) -> LabFile:
    """The lab in check mode: every ensure reports what it would change and changes nothing."""
    if lab.schema_version < 2:
        raise ConfigError("--check needs a desired-state lab (schema_version: 2 with roles)")
    settings = lab.settings.model_copy(update={"check_mode": True})
    return lab.model_copy(update={"settings": settings})


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


async def cmd_run(cli: Cli) -> int:
    lab = _apply_planner_override(cli, _load_run_lab(cli))
    if cli.args.goal:
        lab = lab.model_copy(update={"goal": Stage(cli.args.goal)})
    if cli.args.check:
        lab = checked(lab)
    if not cli.args.submit_only:
        await _preflight(cli, lab)
    async with cli_backend(cli) as backend:
        overseer = Overseer(backend)
        state = await overseer.create_mission(lab, cli.args.mission_id)
        if not cli.args.json:
            # A desired-state lab has no stage goal: say what it declares instead.
            aim = (
                _count(sum(len(h.desired) for h in state.hosts.values()), "declared resource")
                if state.converges
                else f"goal {state.goal.value}"
            )
            hosts = _count(len(state.hosts), "host")
            cli.err.print(f"mission [bold]{state.mission_id}[/] created ({hosts}, {aim})")
        if cli.args.submit_only:
            from reaper.cli.follow import follow_mission

            final = await follow_mission(cli, backend, state.mission_id)
            return report_end(cli, final, llm_usage(await backend.store.events(final.mission_id)))
        return await drive(cli, backend, state.mission_id, seed=lab.seed, fresh=state)


def _budget_flags(cli: Cli) -> dict[str, int | float]:
    a = cli.args
    limits = {"calls": a.budget_calls, "tokens": a.budget_tokens, "usd": a.budget_usd}
    return {k: v for k, v in limits.items() if v is not None}


async def cmd_resume(cli: Cli) -> int:
    from reaper.cli.lifecycle import engine_line

    async with cli_backend(cli) as backend:
        state = await backend.store.load(cli.args.mission)
        if state is None:
            raise MissionNotFoundError(cli.args.mission)
        if state.status.terminal:
            return report_end(cli, state, None)
        limits = _budget_flags(cli)
        lease = await backend.store.lease(state.mission_id)
        if lease is not None:
            # The engine waits this out (`MissionEngine._claim`): say so instead of a silence.
            cli.err.print(
                f"{engine_line(state, lease)}; waiting up to {lease.expires_in_s:.0f}s "
                f"for its lease to expire"
            )
            if limits:
                # Raise the budget once the mission is free, so the engine started here
                # builds its planner with it (a raise waiting on the bus would be read only
                # after a first step planned with the exhausted budget).
                from reaper.cli.lifecycle import wait_lease_free

                await wait_lease_free(backend, state.mission_id, lease.expires_in_s + 1.0)
        if limits:
            message = MissionControl(
                mission_id=state.mission_id,
                command="budget",
                budget=limits,
                by=os.environ.get("USER", "operator"),
            )
            await Overseer(backend).control(message)
            if not cli.args.json:
                raised = ", ".join(f"{k} {v:g}" for k, v in limits.items())
                cli.err.print(f"budget of {state.mission_id} raised: {raised}")
        return await drive(cli, backend, state.mission_id, seed=int(state.settings.get("seed", 0)))


async def cmd_status(cli: Cli) -> int:
    from reaper.cli.lifecycle import engine_info, engine_line

    async with cli_backend(cli) as backend:
        overseer = Overseer(backend)
        if cli.args.mission:
            state = await overseer.load(cli.args.mission)
            events = await backend.store.events(state.mission_id)
            usage = llm_usage(events)
            lease = await backend.store.lease(state.mission_id)
            if cli.args.json:
                report = MissionReport.of(state).model_dump(mode="json")
                report["llm_usage"] = usage
                report["engine"] = engine_info(lease)
                cli.print_json(report)
            else:
                cli.out.print(render_mission(state, events[-10:], usage=usage))
                line = engine_line(state, lease)
                if line:
                    cli.out.print(line, style="dim" if lease else "yellow")
            return 0
        missions = await overseer.list_missions()
        if cli.args.json:
            cli.print_json(
                [
                    {
                        "mission_id": m.mission_id,
                        "lab_type": m.lab_type,
                        "status": m.status.value,
                        "status_reason": m.status_reason,
                        "hosts": m.hosts,
                        "version": m.version,
                        "updated_at": m.updated_at.isoformat(),
                    }
                    for m in missions
                ]
            )
        elif not missions:
            cli.out.print(
                f"no missions in {cli.config.store or cli.config.backend or cli.config.db}: "
                "start one with `reaper run LAB.yaml` (`reaper demo` keeps nothing unless "
                "run with `--backend sqlite`)"
            )
        else:
            cli.out.print(render_missions(missions))
        if not cli.args.json:
            from reaper.cli.processes import show_processes  # workers/engines alive, alerts

            await show_processes(cli, backend)
        return 0


async def cmd_events(cli: Cli) -> int:
    a = cli.args
    async with cli_backend(cli) as backend:
        if await backend.store.load(a.mission) is None:
            raise MissionNotFoundError(a.mission)
        events = await backend.store.events(a.mission)
        if a.kind:
            valid = {k.value for k in EventKind}
            unknown = [k for k in a.kind if k not in valid]
            if unknown:
                raise ConfigError(
                    f"unknown event kind {unknown[0]!r} (kinds: {', '.join(sorted(valid))})"
                )
            events = [e for e in events if e.kind.value in a.kind]
        if a.limit:
            events = events[-a.limit :]
        if a.json:
            for e in events:
                cli.out.file.write(e.model_dump_json() + "\n")
        else:
            for e in events:
                cli.out.print(format_event(e))
        return 0


def _selected(cli: Cli, state: MissionState) -> list[TaskRecord]:
    """The waiting tasks `--all`, `--host` and `--action` select (several: each narrows)."""
    a = cli.args
    waiting = [state.tasks[t] for t in sorted(state.awaiting_approval)]
    if a.host:
        unknown = [h for h in a.host if h not in state.hosts]
        if unknown:
            raise BadRequestError(f"mission {state.mission_id} has no host {unknown[0]!r}")
        waiting = [r for r in waiting if r.task.host_id in a.host]
    if a.action:
        waiting = [r for r in waiting if r.task.action in a.action]
    return waiting


def _preview(records: list[TaskRecord], verb: str) -> Any:
    from rich.table import Table

    from reaper.actions import CATALOG

    table = Table(title=f"to {verb}", title_justify="left")
    for col in ("task", "action", "host", "params", "risk"):
        table.add_column(col)
    for r in records:
        spec = CATALOG.get(r.task.action)
        params = ", ".join(f"{k}={v!r}" for k, v in sorted(r.task.params.items())) or "-"
        risk = "?" if spec is None else str(spec.risk.value)
        table.add_row(r.task.task_id, r.task.action, r.task.host_id, params, risk)
    return table


def _confirm(cli: Cli, question: str) -> bool:
    cli.out.print(f"{question} [bold magenta]\\[y/N][/] ", end="")
    return sys.stdin.readline().strip().lower() in ("y", "yes")


async def _decide(cli: Cli, approved: bool) -> int:
    a = cli.args
    verb = "approve" if approved else "reject"
    done = "approved" if approved else "rejected"
    bulk = a.all or a.host or a.action
    if a.task and bulk:
        raise ConfigError("name a task or select with --all/--host/--action, not both")
    if not a.task and not bulk:
        raise ConfigError(
            f"{verb} which task? name one, or select with --all, --host H or --action A "
            f"(`reaper status {a.mission}` lists those waiting)"
        )
    async with cli_backend(cli) as backend:
        overseer = Overseer(backend)
        if a.task:
            await overseer.decide(a.mission, a.task, approved=approved, by=a.by, note=a.note)
            decided = [a.task]
        else:
            records = _selected(cli, await overseer.load(a.mission))
            if not records:
                raise BadRequestError(f"no task of mission {a.mission} awaits approval there")
            if not a.yes:
                if not sys.stdin.isatty() or a.json:
                    raise ConfigError(
                        f"{verb} {len(records)} task(s) without a terminal to confirm on: add --yes"
                    )
                cli.out.print(_preview(records, verb))
                if not _confirm(cli, f"{verb} these {len(records)} task(s)?"):
                    cli.out.print("nothing decided")
                    return 0
            decided = []
            for r in records:
                await overseer.decide(
                    a.mission, r.task.task_id, approved=approved, by=a.by, note=a.note
                )
                decided.append(r.task.task_id)
    if a.json:
        cli.print_json(
            {"mission_id": a.mission, "task_ids": decided, "decision": done}
            if bulk
            else {"mission_id": a.mission, "task_id": a.task, "decision": done}
        )
    else:
        cli.out.print(f"{done} {', '.join(decided)}; the mission's engine applies it")
    return 0


async def cmd_approve(cli: Cli) -> int:
    return await _decide(cli, True)


async def cmd_reject(cli: Cli) -> int:
    return await _decide(cli, False)
