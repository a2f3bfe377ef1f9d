"""`reaper sim reset [LAB] [--host H]`: forget the stored worlds of simulated hosts (all,
one lab's, one host's), so the next run of the lab starts from freshly built worlds.

`reaper sim drift LAB HOST KIND/NAME`: change one declared resource on a simulated host's
stored world by hand (a service stopped, a file edited, a package removed), as an operator
might: the next `reaper plan` shows that drift and the next `reaper run` fixes it alone.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from reaper.agents.transports.sim_drift import drift
from reaper.agents.transports.sim_record import dump_world, load_world
from reaper.cli.context import Cli, cli_backend
from reaper.errors import ConfigError, StaleStateError
from reaper.infra.base import WorldWrite, sim_worlds_of
from reaper.lab import load_lab

__all__ = ["cmd_sim"]

_LAB_SUFFIXES = (".yaml", ".yml")


async def cmd_sim(cli: Cli) -> int:
    return await (_drift(cli) if cli.args.sim_command == "drift" else _reset(cli))


def _lab_name(given: str | None) -> str | None:
    """A lab name as given, or a lab file's `lab_type` (the name its worlds are kept by)."""
    if given is None:
        return None
    if not given.strip():
        raise ConfigError("sim reset: LAB is empty: give a lab name (its lab_type) or file")
    if given.endswith(_LAB_SUFFIXES):
        if not Path(given).is_file():
            raise ConfigError(f"sim reset: no lab file {given!r}")
        return load_lab(given).lab_type
    return given


async def _reset(cli: Cli) -> int:
    a = cli.args
    if a.host is not None and a.lab is None:
        raise ConfigError("sim reset: --host needs the LAB it belongs to")
    lab = _lab_name(a.lab)
    async with cli_backend(cli) as backend:
        worlds = sim_worlds_of(backend.store)
        if worlds is None:
            raise ConfigError(f"sim reset: the store {backend.description} keeps no sim worlds")
        removed = await worlds.clear_worlds(lab, a.host)
    if a.json:
        cli.print_json({"cleared": [{"lab": name, "host_id": host} for name, host in removed]})
        return 0
    scope = "any lab" if lab is None else f"lab {lab!r}" + (f", host {a.host!r}" if a.host else "")
    if not removed:
        cli.out.print(f"nothing to clear: no stored sim world for {scope}")
        return 0
    cli.out.print(f"cleared {len(removed)} sim world(s) of {scope}:")
    for name, host in removed:
        cli.out.print(f"  {name}/{host}")
    return 0


async def _drift(cli: Cli) -> int:
    a = cli.args
    if not Path(a.lab).is_file():
        raise ConfigError(f"sim drift: no lab file {a.lab!r} (it names the resource's declaration)")
    lab = load_lab(a.lab)
    host = next((h for h in lab.hosts if h.host_id == a.host), None)
    if host is None:
        known = ", ".join(h.host_id for h in lab.hosts)
        raise ConfigError(f"sim drift: no host {a.host!r} in {a.lab}; hosts: {known}")
    if host.transport != "sim":
        raise ConfigError(f"sim drift: {a.host} is a real host ({host.transport}), not simulated")
    declared = {str(r.rid): r for r in lab.desired.resources(a.host)}
    resource = declared.get(a.resource)
    if resource is None:
        close = difflib.get_close_matches(a.resource, declared, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"sim drift: {a.host} declares no {a.resource!r}{hint}; it declares: "
            + ", ".join(declared)
        )
    async with cli_backend(cli) as backend:
        worlds = sim_worlds_of(backend.store)
        if worlds is None:
            raise ConfigError(f"sim drift: the store {backend.description} keeps no sim worlds")
        stored = await worlds.load_world(lab.lab_type, a.host)
        if stored is None or stored.data is None:
            raise ConfigError(
                f"sim drift: no stored world for {a.host} of lab {lab.lab_type!r} yet: "
                f"run the lab first (reaper run {a.lab})"
            )
        world = load_world(stored.data, f"sim world {lab.lab_type}/{a.host}")
        try:
            done = drift(world, resource)
        except ConfigError as exc:
            raise ConfigError(f"sim drift: {a.host}:{exc}") from None
        try:
            await worlds.save_worlds(
                lab.lab_type, [WorldWrite(a.host, dump_world(world), stored.version)]
            )
        except StaleStateError:
            raise ConfigError(
                f"sim drift: the world of {a.host} changed meanwhile (a run on it?): try again"
            ) from None
    ref = f"{a.host}:{resource.rid}"
    if a.json:
        cli.print_json({"lab": lab.lab_type, "resource": ref, "done": done})
        return 0
    cli.out.print(f"drifted {ref}: {done}")
    cli.out.print(f"[dim]`reaper plan {a.lab}` shows it; `reaper run {a.lab}` fixes it[/]")
    return 0
