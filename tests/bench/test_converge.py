"""`reaper bench ssh`'s converge row on 2 namespace hosts: Reaper's first run changes every
resource of the role, its second changes none; Ansible's row runs when ansible-core is in the
benchmark's venv, else says why it was skipped."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from reaper.bench.converge import converge_bench
from reaper.bench.converge_view import render_converge
from reaper.bench.role import ROLE
from tests.hosts.aptmirror import missing_tools
from tests.hosts.netns import USER, missing_requirements
from tests.needs import require_service

pytestmark = [pytest.mark.services, pytest.mark.slow]


async def test_converge_row_on_two_hosts(tmp_path: Path) -> None:
    why = missing_requirements() or missing_tools()
    require_service("network-namespace hosts and a local apt mirror", why is None, why or "")
    lines: list[str] = []
    rows = await converge_bench(2, USER, tmp_path, lines.append)
    mine = rows[0]
    assert (mine.tool, mine.status) == ("reaper", "ok"), mine
    assert mine.first_changed == 2 * len(ROLE) and mine.second_changed == 0
    assert mine.first_s is not None and mine.second_s is not None
    assert 0 < mine.second_s < mine.first_s
    theirs = rows[1]
    if theirs.first_s is None:
        assert theirs.status.startswith("Ansible skipped:"), theirs
    else:
        assert theirs.status == "ok" and theirs.second_changed == 0, theirs
        assert theirs.first_changed is not None and theirs.first_changed >= 2 * len(ROLE)
    out = StringIO()
    Console(file=out, width=200).print(render_converge(rows))
    assert "converge, one role of 8 resources" in out.getvalue()
