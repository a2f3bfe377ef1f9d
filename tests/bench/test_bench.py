"""`reaper bench`: every backend's row completes; on a backend processes can share, the
workers really are separate `reaper worker --os all` processes; bad flags are one line."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from reaper.bench.run import BenchResult, render
from reaper.cli import main
from tests.missions import keep_root_logging


def _bench(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    keep_root_logging(monkeypatch)
    capsys.readouterr()
    try:
        rc = main(["bench", *args])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def test_memory_in_process_and_sqlite_in_worker_processes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("REAPER_DB", str(tmp_path / "unused.db"))
    rc, out, err = _bench(
        capsys, monkeypatch,
        "--backend", "memory,sqlite", "--hosts", "300", "--workers", "2", "--repeat", "1",
        "--max-in-flight", "8", "--json",
    )  # fmt: skip
    assert rc == 0, err
    rows = {r["backend"]: r for r in json.loads(out)}
    assert rows["memory"]["workers"] == "in-process"
    assert rows["sqlite"]["workers"] == "2 processes"
    for r in rows.values():
        assert r["status"] == "completed" and r["tasks"] == 600
        assert r["tasks_per_s"] > 0 and r["p99_latency_ms"] >= r["p50_latency_ms"] > 0
    # The worker processes did the work: they used CPU, as measured from /proc (in clock
    # ticks of 10 ms: 600 tasks make some ten of them, where 60 could make none).
    assert rows["sqlite"]["worker_cpu_us_per_task"] > 0
    assert rows["memory"]["worker_cpu_us_per_task"] == 0


def test_in_process_flag_keeps_workers_here(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    rc, out, err = _bench(
        capsys, monkeypatch,
        "--backend", "sqlite", "--hosts", "12", "--repeat", "1", "--in-process", "--json",
    )  # fmt: skip
    assert rc == 0, err
    [row] = json.loads(out)
    assert row["workers"] == "in-process" and row["status"] == "completed"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--hosts", "10,x"], "--hosts"),
        (["--max-in-flight", "0"], "--max-in-flight"),
        (["--backend", "carrier-pigeon://x", "--hosts", "5"], "unknown backend spec"),
        (["--backend", "redis://127.0.0.1:1/0", "--hosts", "5"], "no mission store"),
    ],
)
def test_bad_flags_are_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    expected: str,
):
    rc, out, err = _bench(capsys, monkeypatch, *args, "--repeat", "1")
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], err


@pytest.mark.parametrize("value", ["bsd", "linux,solaris", ","])
def test_worker_os_list_is_checked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str
):
    keep_root_logging(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        main(["worker", "--os", value])
    assert exc.value.code == 2
    assert "expected windows, linux, macos" in capsys.readouterr().err


def _leftovers() -> tuple[set[str], set[str]]:
    import psycopg
    import redis

    with psycopg.connect("postgresql://127.0.0.1:5432/test", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'reaper_bench_%'"
        ).fetchall()
    client = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    try:
        keys = {k.split(":")[0] for k in client.scan_iter(match="reaper-bench-*", count=1000)}
    finally:
        client.close()
    return {r[0] for r in rows}, keys


def test_redis_postgres_bench_leaves_nothing_on_the_servers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    from tests.needs import port_open, require_service

    require_service("redis", port_open("127.0.0.1", 6379), "no Redis on 127.0.0.1:6379")
    require_service("postgres", port_open("127.0.0.1", 5432), "no PostgreSQL on :5432")
    schemas, prefixes = _leftovers()
    rc, out, err = _bench(
        capsys, monkeypatch,
        "--backend", "redis+postgres", "--hosts", "15", "--workers", "1", "--repeat", "2",
        "--json",
    )  # fmt: skip
    assert rc == 0, err
    [row] = json.loads(out)
    assert row["status"] == "completed" and row["workers"] == "1 process"
    assert _leftovers() == (schemas, prefixes)  # its own schema and keys are gone


def _row(backend: str, status: str = "completed") -> BenchResult:
    return BenchResult(
        backend=backend,
        workers="4 processes",
        hosts=10_000,
        tasks=20_000,
        seconds=4.2,
        tasks_per_s=4_761.9,
        cpu_us_per_task=118.4,
        worker_cpu_us_per_task=101.0,
        machine_cpu_us_per_task=345.0,
        p50_latency_ms=21.6,
        p99_latency_ms=37.25,
        status=status,
        slowest_tasks_per_s=3_912.0,
    )


def test_the_table_keeps_every_figure_whole_in_80_columns():
    console = Console(file=StringIO(), width=80, color_system=None)
    console.print(render([_row("redis+postgres"), _row("sqlite")], repeat=3))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert max(len(line) for line in out.splitlines()) <= 80
    for figure in ("redis+postgres", "4 processes", "10,000", "4,762", "3,912", "21.6", "37.2"):
        assert figure in out
    for figure in ("118", "101", "345"):
        assert figure in out
    assert "every run completed" in out and "status" not in out


def test_a_run_that_did_not_complete_gets_a_status_column():
    console = Console(file=StringIO(), width=120, color_system=None)
    console.print(render([_row("sqlite"), _row("memory", "stalled: no result for 600s")], 1))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "status" in out and "stalled: no result for 600s" in out
