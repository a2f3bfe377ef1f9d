"""`reaper sim reset [LAB] [--host H]`: forget the stored worlds of simulated hosts (all,
one lab's, one host's), so the next run of the lab starts from freshly built worlds."""

from __future__ import annotations

from pathlib import Path

from reaper.cli.context import Cli, cli_backend
from reaper.errors import ConfigError
from reaper.infra.base import sim_worlds_of
from reaper.lab import load_lab

__all__ = ["cmd_sim"]

_LAB_SUFFIXES = (".yaml", ".yml")


async def cmd_sim(cli: Cli) -> int:
    return await _reset(cli)  # the only `sim` command so far


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
