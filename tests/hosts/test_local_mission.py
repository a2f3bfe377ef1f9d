"""`reaper run` on a lab with `transport: local`: discovers the machine the tests run on, with
no SSH, through the real CLI, engine, worker and Linux action code. Goal `discovered` only:
the tests never baseline the machine they run on."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from reaper.infra.factory import open_backend
from reaper.models import Stage

LAB = """\
schema_version: 1
mission_id: local-discover
lab_type: this-machine
goal: discovered
hosts:
  - {host_id: this-machine, os: linux, transport: local}
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux action code")
def test_reaper_run_discovers_this_machine(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(LAB)
    db = tmp_path / "reaper.db"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "REAPER_DB": str(db)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reaper.cli",
            "run",
            str(lab),
            "--db",
            str(db),
            "--no-live",
            "--no-input",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert (report["status"], report["goal_reached"]) == ("completed", True)
    assert report["hosts"]["this-machine"]["stage"] == "discovered"

    async def facts() -> dict[str, object]:
        backend = open_backend(f"sqlite:///{db}")
        try:
            state = await backend.store.load("local-discover")
        finally:
            await backend.close()
        assert state is not None and state.hosts["this-machine"].stage is Stage.DISCOVERED
        assert "baseline" not in state.hosts["this-machine"].facts
        return state.hosts["this-machine"].facts

    found = asyncio.run(facts())
    assert found["hostname"] == socket.gethostname()
    assert found["kernel"] == os.uname().release
    # The full command output went to the logs directory under XDG_STATE_HOME.
    assert any((tmp_path / "state").rglob("*.log"))
