"""The mission commands: `demo`, `run`, `resume`, `status`, `events`, `approve`, `reject`.
The app parses; this module acts."""

from __future__ import annotations

from importlib import resources

from reaper.cli.console import format_event, render_mission, render_missions
from reaper.cli.context import Cli, cli_backend
from reaper.cli.drive import drive, llm_usage, planner_factory, report_end
from reaper.errors import ConfigError, MissionNotFoundError
from reaper.lab import LabFile, load_lab
from reaper.models import (
    EventKind,
    Stage,
)
from reaper.overseer import MissionReport, Overseer

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


async def cmd_demo(cli: Cli) -> int:
    a = cli.args
    if a.lab:
        lab = load_lab(a.lab)
    else:
        text = resources.files("reaper.labs").joinpath("demo.yaml").read_text("utf-8")
        from reaper.lab import parse_lab

        lab = parse_lab(text, source="demo.yaml")
    lab = _apply_planner_override(cli, lab)
    if lab.planner.kind == "llm" and not a.replay and not cli.config.llm_provider:
        a.replay = str(resources.files("reaper.labs").joinpath("demo-llm.cassette.jsonl"))
    # The demo keeps nothing: an in-memory backend unless one is asked for.
    async with cli_backend(cli, spec=cli.config.backend or "memory") as backend:
        overseer = Overseer(backend)
        mission_id = "demo" if (cli.config.backend or "memory") == "memory" else None
        state = await overseer.create_mission(lab, mission_id)
        return await drive(cli, backend, state.mission_id, seed=lab.seed, fresh=state)


def _load_run_lab(cli: Cli) -> LabFile:
    a = cli.args
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
    planner = planner_factory(cli)(lab.to_state(cli.args.mission_id or lab.mission_id))
    client = getattr(planner, "client", None)
    close = getattr(client, "aclose", None)
    if close is not None:
        await close()


def checked(lab: LabFile) -> LabFile:
    """The lab in check mode: every ensure reports what it would change and changes nothing."""
    if lab.schema_version < 2:
        raise ConfigError("--check needs a desired-state lab (schema_version: 2 with roles)")
    settings = lab.settings.model_copy(update={"check_mode": True})
    return lab.model_copy(update={"settings": settings})


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
            cli.err.print(
                f"mission [bold]{state.mission_id}[/] created "
                f"({len(state.hosts)} hosts, goal {state.goal.value})"
            )
        if cli.args.submit_only:
            from reaper.cli.follow import follow_mission

            final = await follow_mission(cli, backend, state.mission_id)
            return report_end(cli, final, llm_usage(await backend.store.events(final.mission_id)))
        return await drive(cli, backend, state.mission_id, seed=lab.seed, fresh=state)


async def cmd_resume(cli: Cli) -> int:
    async with cli_backend(cli) as backend:
        state = await backend.store.load(cli.args.mission)
        if state is None:
            raise MissionNotFoundError(cli.args.mission)
        if state.status.terminal:
            return report_end(cli, state, None)
        return await drive(cli, backend, state.mission_id, seed=int(state.settings.get("seed", 0)))


async def cmd_status(cli: Cli) -> int:
    async with cli_backend(cli) as backend:
        overseer = Overseer(backend)
        if cli.args.mission:
            state = await overseer.load(cli.args.mission)
            events = await backend.store.events(state.mission_id)
            usage = llm_usage(events)
            if cli.args.json:
                report = MissionReport.of(state).model_dump(mode="json")
                report["llm_usage"] = usage
                cli.print_json(report)
            else:
                cli.out.print(render_mission(state, events[-10:], usage=usage))
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
                f"no missions in {cli.config.store or cli.config.backend or cli.config.db}"
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


async def _decide(cli: Cli, approved: bool) -> int:
    a = cli.args
    async with cli_backend(cli) as backend:
        await Overseer(backend).decide(a.mission, a.task, approved=approved, by=a.by, note=a.note)
    verb = "approved" if approved else "rejected"
    if a.json:
        cli.print_json({"mission_id": a.mission, "task_id": a.task, "decision": verb})
    else:
        cli.out.print(f"{verb} {a.task}; the mission's engine applies it")
    return 0


async def cmd_approve(cli: Cli) -> int:
    return await _decide(cli, True)


async def cmd_reject(cli: Cli) -> int:
    return await _decide(cli, False)
