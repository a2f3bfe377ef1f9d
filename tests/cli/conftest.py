"""The `cli` fixture: `reaper ARGS` in this process, as the CLI tests run it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reaper.cli import main
from tests.missions import keep_root_logging

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """`reaper ARGS` in this process, in tmp_path, with a default database under it."""
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("REAPER_")]:
        monkeypatch.delenv(var)
    monkeypatch.delenv("COLUMNS", raising=False)  # as when output goes to a file or pipe
    monkeypatch.setenv("REAPER_DB", str(tmp_path / "reaper.db"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    keep_root_logging(monkeypatch)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            rc = main(list(args))
        except SystemExit as exc:  # argparse exits instead of returning
            rc = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return rc, out, err

    return run
