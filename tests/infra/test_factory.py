"""Backend specs: parsing, defaults, overrides and the errors a user sees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reaper.errors import ConfigError
from reaper.infra import factory
from reaper.infra.factory import BackendSpec, open_backend, parse_spec
from reaper.infra.memory import MemoryMissionStore, MemoryTaskQueue
from reaper.infra.sqlite import SqliteMissionStore, SqliteTaskQueue


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("memory", [BackendSpec("memory")]),
        ("sqlite:////var/lib/reaper/r.db", [BackendSpec("sqlite", "/var/lib/reaper/r.db")]),
        ("/abs/path/r.db", [BackendSpec("sqlite", "/abs/path/r.db")]),
        ("redis://127.0.0.1:6379/2", [BackendSpec("redis", "redis://127.0.0.1:6379/2")]),
        ("rediss://u:p@cache:6380/0", [BackendSpec("redis", "rediss://u:p@cache:6380/0")]),
        ("postgresql://db/reaper", [BackendSpec("postgres", "postgresql://db/reaper")]),
        ("postgres://db/reaper", [BackendSpec("postgres", "postgres://db/reaper")]),
        (
            "redis+postgres",
            [
                BackendSpec("redis", "redis://127.0.0.1:6379/0"),
                BackendSpec("postgres", "postgresql://127.0.0.1:5432/test"),
            ],
        ),
    ],
)
def test_parse_spec(spec: str, expected: list[BackendSpec]) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["sqlite:///state/r.db", "state/r.db", "r.sqlite3"])
def test_relative_sqlite_paths_resolve_against_the_working_directory(spec: str) -> None:
    (part,) = parse_spec(spec)
    assert part.kind == "sqlite"
    assert part.target == os.path.join(os.getcwd(), spec.removeprefix("sqlite:///"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mysql://db/x", "valid: memory, sqlite:///PATH"),
        ("reaper", "unknown backend spec"),
        ("sqlite://", "no path"),
        ("sqlite://host/x.db", "host part"),
    ],
)
def test_bad_specs_say_what_is_valid(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)


async def test_default_is_the_given_database_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "reaper" / "reaper.db"
    backend = open_backend(None, default_db=path)
    try:
        assert isinstance(backend.store, SqliteMissionStore)
        assert isinstance(backend.queue, SqliteTaskQueue)
        # One file, one connection for all three parts.
        assert backend.store._db is backend.queue._db is backend.bus._db  # type: ignore[attr-defined]
        assert path.exists()
        assert backend.description == f"sqlite:///{path}"
    finally:
        await backend.close()


def test_no_spec_and_no_default_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no default database"):
        open_backend(None)


async def test_overrides_pick_parts(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    backend = open_backend("memory", store=f"sqlite:///{db}")
    try:
        assert isinstance(backend.store, SqliteMissionStore)
        assert isinstance(backend.queue, MemoryTaskQueue)
        assert "store=sqlite" in backend.description
    finally:
        await backend.close()
    backend = open_backend(f"sqlite:///{db}", queue="memory")
    try:
        assert isinstance(backend.store, SqliteMissionStore)
        assert isinstance(backend.queue, MemoryTaskQueue)
    finally:
        await backend.close()
    backend = open_backend("memory")
    assert isinstance(backend.store, MemoryMissionStore)
    await backend.close()


def test_a_queue_only_spec_needs_a_store() -> None:
    with pytest.raises(ConfigError, match="no mission store"):
        open_backend("redis://127.0.0.1:6379/0")
    # postgresql://… alone is complete (store, queue and bus): see test_postgres_queue.py.


def test_a_missing_module_says_the_backend_is_not_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(factory._EXTRAS, "redis", ("reaper.infra.no_such_module", "redis"))
    with pytest.raises(ConfigError, match="redis backend is not available"):
        open_backend("redis://127.0.0.1:6379/0", store="memory")


def test_a_missing_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "fake_reaper_postgres.py").write_text("import psycopg_not_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(
        factory._EXTRAS, "postgres", ("fake_reaper_postgres", "psycopg_not_installed_xyz")
    )
    with pytest.raises(ConfigError, match=r"pip install 'reaper-lab\[postgres\]'"):
        open_backend("postgresql://127.0.0.1:5432/test", queue="memory")


def test_descriptions_never_show_passwords() -> None:
    spec = BackendSpec("postgres", "postgresql://reaper:s3cret@127.0.0.1:5432/test")
    assert "s3cret" not in factory._describe(spec)
    assert factory._describe(spec) == "postgresql://reaper:***@127.0.0.1:5432/test"


def test_a_missing_pool_package_says_the_same_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """psycopg-pool comes with the postgres extra: its absence gets the same hint."""
    (tmp_path / "fake_reaper_pg_pool.py").write_text("import psycopg_pool.not_there_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(factory._EXTRAS, "postgres", ("fake_reaper_pg_pool", "psycopg"))
    with pytest.raises(ConfigError, match=r"pip install 'reaper-lab\[postgres\]'"):
        open_backend(None, store="postgresql://127.0.0.1:5432/test", queue="memory")


def test_url_options_name_a_schema_and_a_key_prefix() -> None:
    assert factory.url_option("postgresql://h/db?schema=s1&sslmode=off", "schema") == (
        "postgresql://h/db?sslmode=off",
        "s1",
    )
    assert factory.url_option("redis://h:1/0", "prefix") == ("redis://h:1/0", None)
    backend = open_backend(
        None,
        store="postgresql://127.0.0.1:5432/test?schema=ns_a",
        queue="redis://127.0.0.1:6379/0?prefix=ns-b",
    )
    assert backend.store.schema == "ns_a"  # type: ignore[attr-defined]
    assert backend.queue.stream_key("reaper-linux") == "ns-b:q:reaper-linux"  # type: ignore[attr-defined]
    assert backend.bus.stream_key("m1").startswith("ns-b:")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="empty schema="):
        open_backend("postgresql://127.0.0.1:5432/test?schema=")
