"""`reaper bench ssh`: its refusal without root, and its measuring parts on namespace hosts
(the Ansible half is left to the benchmark itself: it installs ansible-core)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from reaper.bench.ssh import command_latency, reaper_discover
from reaper.cli import main
from tests.hosts.netns import USER, NsLab


@pytest.fixture(autouse=True)
def _keep_root_logging() -> Iterator[None]:
    # main() configures logging for a CLI process; give the next tests theirs back.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_refuses_clearly_without_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["bench", "ssh", "--hosts", "1", "--db", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err
    assert "reaper bench ssh needs root" in err and "not root" in err


def test_bad_host_counts_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "ssh", "--hosts", "1,x", "--db", str(tmp_path / "r.db")]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err


@pytest.mark.services
async def test_discover_mission_and_latency_measure(mission_lab: NsLab, tmp_path: Path) -> None:
    hosts = [mission_lab.hosts[n] for n in ("m1", "m2", "m3")]
    seconds, status = await reaper_discover(mission_lab, hosts, USER, "sqlite", tmp_path)
    assert status == "ok" and 0 < seconds < 30
    latency = await command_latency(mission_lab, hosts[0], USER, tmp_path, runs=20)
    assert latency.reaper_ms > 0 and latency.paramiko_ms > 0
    # The target is within 2x of bare paramiko; a loaded CI machine gets some slack.
    assert latency.ratio < 4, latency
