"""The mission lifecycle commands: `cancel`, `unlock`, `prune`, `facts`, and what `status` and
`resume` show of a mission's engine (its lease). Requests reach a mission through
`Overseer.control`: the bus when an engine holds it (wherever that engine runs), else applied
here under the mission's lease."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from reaper.cli.context import Cli, cli_backend
from reaper.errors import BadRequestError, ConfigError
from reaper.infra.base import Backend, LeaseInfo
from reaper.models import HostState, MissionControl, MissionState, MissionStatus
from reaper.overseer import ControlOutcome, Overseer

__all__ = [
    "PRUNABLE",
    "cmd_cancel",
    "cmd_facts",
    "cmd_prune",
    "cmd_unlock",
    "engine_info",
    "engine_line",
    "parse_age",
    "wait_for",
    "wait_lease_free",
]

# What `reaper prune` may delete: missions no engine runs (a held lease is skipped too).
PRUNABLE = (
    MissionStatus.COMPLETED,
    MissionStatus.FAILED,
    MissionStatus.CANCELLED,
    MissionStatus.STOPPED,
    MissionStatus.INTERRUPTED,
    MissionStatus.STALLED,
)
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_age(text: str) -> float:
    """`30d`, `12h`, `90m`, `45s`, `2w` or plain seconds, in seconds."""
    m = _AGE.match(text.strip().lower())
    if m is None:
        raise ValueError(f"{text!r} is not an age (e.g. 30d, 12h, 90m, 45s)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


# -- the engine behind a mission -----------------------------------------------------------


def _owner_process(owner: str) -> tuple[str, int] | None:
    """(hostname, pid) of an engine's lease owner (`engine-HOST-PID-HEX`), if it says."""
    parts = owner.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[0].startswith("engine-"):
        return None
    return parts[0].removeprefix("engine-"), int(parts[1])


def _alive(owner: str) -> bool | None:
    """Whether the owner's process runs: known only for an engine on this machine."""
    proc = _owner_process(owner)
    if proc is None or proc[0] != socket.gethostname():
        return None
    try:
        os.kill(proc[1], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def engine_info(lease: LeaseInfo | None) -> dict[str, Any]:
    """What runs the mission, as data (`status --json`'s `engine`)."""
    if lease is None:
        return {"owner": None, "alive": False, "expires_in_s": None}
    return {
        "owner": lease.owner,
        "alive": _alive(lease.owner),
        "expires_in_s": round(lease.expires_in_s, 1),
    }


def engine_line(state: MissionState, lease: LeaseInfo | None) -> str | None:
    """One line on the mission's engine for people, or None when there is nothing to say."""
    mid = state.mission_id
    if lease is None:
        if state.status.terminal:
            return None
        return f"no engine runs it: resume it with `reaper resume {mid}`"
    alive = _alive(lease.owner)
    left = f"{lease.expires_in_s:.0f}s"
    proc = _owner_process(lease.owner)
    if alive is False and proc is not None:
        return (
            f"engine {lease.owner} is gone (process {proc[1]} is not running); its lease "
            f"expires in {left}, then `reaper resume {mid}` takes over"
        )
    return f"engine {lease.owner} runs it (its lease expires in {left} unless renewed)"


async def wait_for(
    backend: Backend, mission_id: str, done: Callable[[MissionState], bool], *, timeout: float
) -> MissionState | None:
    """Follow a mission in the store (another process changes it) until `done(state)` or the
    timeout; the state then, or None on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.05
    while True:
        state = await backend.store.load(mission_id)
        if state is not None and done(state):
            return state
        if loop.time() >= deadline:
            return None
        # ok: another process changes the store; this only follows it, as `follow` does
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 0.5)


async def wait_lease_free(backend: Backend, mission_id: str, timeout: float) -> bool:
    """Wait (up to `timeout`) for no engine to hold the mission's lease; True if none does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.05
    while await backend.store.lease(mission_id) is not None:
        if loop.time() >= deadline:
            return False
        # ok: the lease is another process's; it expires or is released in its own time
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 0.5)
    return True


# -- commands ------------------------------------------------------------------------------


def _said(cli: Cli, outcome: ControlOutcome, what: str, data: dict[str, Any]) -> None:
    if cli.args.json:
        cli.print_json({**data, "outcome": outcome})
    else:
        cli.out.print(what)


async def cmd_cancel(cli: Cli) -> int:
    a = cli.args
    async with cli_backend(cli) as backend:
        overseer = Overseer(backend)
        state = await overseer.load(a.mission)
        if state.status.terminal:
            raise BadRequestError(
                f"mission {a.mission} already ended ({state.status.value}); nothing to cancel"
            )
        message = MissionControl(mission_id=a.mission, command="cancel", by=a.by, note=a.note)
        outcome = await overseer.control(message)
        data: dict[str, Any] = {"mission_id": a.mission}
        if outcome == "sent":
            outcome, final = await _follow_cancel(overseer, message, timeout=a.wait)
            if final is None:
                lease = await backend.store.lease(a.mission)
                owner = lease.owner if lease else "its engine"
                data["status"] = state.status.value
                _said(
                    cli,
                    outcome,
                    f"cancel sent to {owner}; it applies it at its next wake-up "
                    f"(`reaper status {a.mission}`)",
                    data,
                )
                return 0
            state = final
        else:
            state = await overseer.load(a.mission)
        data.update(status=state.status.value, status_reason=state.status_reason)
        _said(
            cli, outcome, f"mission {a.mission} {state.status.value}: {state.status_reason}", data
        )
        return 0


async def _follow_cancel(
    overseer: Overseer, message: MissionControl, *, timeout: float
) -> tuple[ControlOutcome, MissionState | None]:
    """After a cancel went to the engine holding the mission: its final state once the engine
    applied it; or, if the lease ends first (the engine stopped or was killed before reading
    it), the cancel applied here. None on timeout."""
    backend = overseer.backend
    mission_id = message.mission_id

    def settled(state: MissionState) -> bool:
        return state.status.terminal

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        final = await wait_for(backend, mission_id, settled, timeout=min(max(left, 0.0), 1.0))
        if final is not None:
            return "sent", final
        if await backend.store.lease(mission_id) is None:
            outcome = await overseer.control(message)
            if outcome != "sent":
                return outcome, await overseer.load(mission_id)
        if loop.time() >= deadline:
            return "sent", None


async def cmd_unlock(cli: Cli) -> int:
    a = cli.args
    async with cli_backend(cli) as backend:
        overseer = Overseer(backend)
        state = await overseer.load(a.mission)
        host = state.hosts.get(a.host)
        if host is None:
            raise BadRequestError(
                f"mission {a.mission} has no host {a.host!r} (hosts: "
                f"{', '.join(sorted(state.hosts)[:10])})"
            )
        if not host.locked:
            raise BadRequestError(f"host {a.host} of mission {a.mission} is not locked")
        message = MissionControl(
            mission_id=a.mission, command="unlock", host_id=a.host, by=a.by, note=a.note
        )
        outcome = await overseer.control(message)
    where = "the mission's engine applies it" if outcome == "sent" else "recorded in the event log"
    _said(
        cli,
        outcome,
        f"unlocked {a.host} (was: {host.lock_reason}); {where}",
        {"mission_id": a.mission, "host_id": a.host, "was": host.lock_reason},
    )
    return 0


async def cmd_prune(cli: Cli) -> int:
    a = cli.args
    try:
        older = parse_age(a.older_than)
    except ValueError as exc:
        raise ConfigError(f"--older-than: {exc}") from None
    statuses = [MissionStatus(s) for s in a.status] if a.status else list(PRUNABLE[:3])
    async with cli_backend(cli) as backend:
        removed = await Overseer(backend).prune(
            statuses=statuses, older_than_s=older, dry_run=a.dry_run
        )
    if a.json:
        cli.print_json(
            {
                "dry_run": a.dry_run,
                "missions": [
                    {
                        "mission_id": m.mission_id,
                        "status": m.status.value,
                        "updated_at": m.updated_at.isoformat(),
                        "rows": rows,
                    }
                    for m, rows in removed
                ],
            }
        )
        return 0
    if not removed:
        cli.out.print(
            f"nothing to prune: no {'/'.join(s.value for s in statuses)} mission "
            f"older than {a.older_than}"
        )
        return 0
    table = Table(title="would remove" if a.dry_run else "removed", title_justify="left")
    for col in ("mission", "status", "updated", "rows"):
        table.add_column(col)
    for m, rows in removed:
        table.add_row(
            m.mission_id,
            m.status.value,
            m.updated_at.strftime("%Y-%m-%d %H:%M"),
            "-" if a.dry_run else str(rows),
        )
    cli.out.print(table)
    verb = "would remove" if a.dry_run else "removed"
    cli.out.print(f"{verb} {len(removed)} mission(s)")
    return 0


def _facts_tree(label: str, value: Any, tree: Tree) -> None:
    if isinstance(value, dict):
        branch = tree.add(f"[bold]{label}[/]")
        for key in sorted(value):
            _facts_tree(str(key), value[key], branch)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        branch = tree.add(f"[bold]{label}[/] [dim]({len(value)})[/]")
        for i, item in enumerate(value):
            _facts_tree(f"[{i}]", item, branch)
    else:
        style = "" if isinstance(value, str) else "cyan"
        tree.add(Text.assemble(f"{label}: ", (str(value), style)))


async def cmd_facts(cli: Cli) -> int:
    a = cli.args
    async with cli_backend(cli) as backend:
        state = await Overseer(backend).load(a.mission)
    hosts = state.hosts
    if a.host is not None:
        if a.host not in hosts:
            raise BadRequestError(f"mission {a.mission} has no host {a.host!r}")
        hosts = {a.host: hosts[a.host]}
    if a.json:
        cli.print_json({hid: _with_resources(h) for hid, h in sorted(hosts.items())})
        return 0
    for hid, host in sorted(hosts.items()):
        tree = Tree(f"[bold]{hid}[/] [dim]{host.os}, {host.stage.value}[/]")
        if not host.facts:
            tree.add("[dim]no facts yet (a discover task gathers them)[/]")
        for key in sorted(host.facts):
            _facts_tree(key, host.facts[key], tree)
        if host.resources:
            # Desired state: what was observed of each declared resource, beside the facts.
            branch = tree.add("[bold]declared resources[/] [dim](observed)[/]")
            for rid, rs in host.resources.items():
                seen = "not read yet" if not rs.seen else rs.observed or "absent"
                outcome = f" [dim]({rs.outcome})[/]" if rs.outcome else ""
                _facts_tree(rid + outcome, seen, branch)
        cli.out.print(tree)
    return 0


def _with_resources(host: HostState) -> dict[str, Any]:
    """A host's facts, and for desired state what was observed of each declared resource
    (`resources`: KIND/NAME → properties, null when absent; `unread` until discovered)."""
    if not host.resources:
        return host.facts
    observed = {rid: (rs.observed if rs.seen else "unread") for rid, rs in host.resources.items()}
    return {**host.facts, "resources": observed}
