"""`reaper actions`: the action catalog as the planners and the policy see it."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from reaper.actions import CATALOG, ActionSpec
from reaper.cli.context import EXIT_OK, Cli
from reaper.errors import ConfigError
from reaper.policy import PRESETS

__all__ = ["cmd_actions"]


def _row(spec: ActionSpec, policy: str) -> dict[str, Any]:
    decision, why = PRESETS[policy].decide(spec)
    return {
        "name": spec.name,
        "os": spec.os,
        "verb": spec.verb,
        "description": spec.description,
        "risk": spec.risk.value,
        "timeout_s": spec.timeout_s,
        "idempotent": spec.idempotent,
        "check_mode": spec.supports_check_mode,
        "policy": {"name": policy, "decision": decision.value, "reason": why},
        "params": spec.params_schema(),
    }


async def cmd_actions(cli: Cli) -> int:
    a = cli.args
    if a.policy not in PRESETS:
        raise ConfigError(f"unknown policy {a.policy!r} (presets: {', '.join(PRESETS)})")
    specs = [s for s in CATALOG.values() if a.os is None or s.os == a.os]
    rows = [_row(s, a.policy) for s in specs]
    if a.json:
        cli.print_json(rows)
        return EXIT_OK
    # Params are in --json (with their schema): a table of them does not fit a terminal.
    table = Table(
        title=f"{len(rows)} actions (decisions of policy {a.policy!r})", box=box.SIMPLE_HEAD
    )
    for column in ("action", "risk", a.policy, "timeout", "idem", "check"):
        table.add_column(column, no_wrap=True)
    table.add_column("what it does", overflow="fold", ratio=1)
    for row in rows:
        table.add_row(
            row["name"],
            row["risk"],
            row["policy"]["decision"],
            f"{row['timeout_s']:.0f}s",
            "yes" if row["idempotent"] else "no",
            "yes" if row["check_mode"] else "—",
            row["description"],
        )
    cli.out.print(table)
    return EXIT_OK
