"""The converge row of `reaper bench ssh` as a table, and its entry point (a temp dir, the
netns user)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from reaper.bench.converge import ConvergeRow, checkout_module, converge_bench
from reaper.bench.role import ROLE

__all__ = ["converge_rows", "render_converge"]


async def converge_rows(n: int, say: Callable[[str], None]) -> list[ConvergeRow]:
    user = checkout_module("netns").USER
    with tempfile.TemporaryDirectory(prefix="reaper-bench-converge-") as tmp:
        return await converge_bench(n, user, Path(tmp), say)


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def render_converge(rows: list[ConvergeRow]) -> Table:
    table = Table(title=f"reaper bench ssh: converge, one role of {len(ROLE)} resources")
    cols = ("tool", "hosts", "first run s", "changed", "no-change run s", "changed", "tasks")
    for col in (*cols, "status"):
        table.add_column(col, justify="left" if col in ("tool", "status") else "right")
    for r in rows:
        table.add_row(
            escape(r.tool), str(r.hosts), _s(r.first_s), str(r.first_changed or 0),
            _s(r.second_s), str(r.second_changed or 0), str(r.tasks or "-"), escape(r.status),
        )  # fmt: skip
    mine, theirs = rows[0], rows[-1]
    if len(rows) > 1 and mine.second_s and theirs.second_s:
        table.caption = f"no-change run: Ansible / Reaper = {theirs.second_s / mine.second_s:.1f}x"
    return table
