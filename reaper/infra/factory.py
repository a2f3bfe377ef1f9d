"""Backends by URL: `open_backend("sqlite:///reaper.db")`, `redis://…`, `postgresql://…`.

Specs (one for all three parts; `store=` and `queue=` override parts, `queue=` covering the
queue and the bus):

    memory                     in-process (tests, demos, benchmarks)
    sqlite                     the default database file (`default_db`, below)
    sqlite:///relative.db      store, queue and bus in one file (SQLAlchemy's convention:
    sqlite:////abs/path.db     three slashes then a relative path, four for an absolute one)
    /abs/path.db, x.db         a bare path ending .db (.sqlite, .sqlite3): same as sqlite
    redis://host:port/db       queue and bus (Redis Streams); the store must come from `store=`
    postgresql://…             store, queue and bus (queue: SKIP LOCKED, wake-ups: LISTEN/NOTIFY)
    redis+postgres             redis://127.0.0.1:6379/0 (queue, bus) plus
                               postgresql://127.0.0.1:5432/test (store)
    amqp://user:pass@host/vh   task queue on RabbitMQ (no bus: the bus comes from another part)
    kafka://host:port          event bus on Kafka (no queue: the queue comes from another part)
    a+b[+c]                    any of redis, postgres, amqp, kafka joined by `+`, each at its
                               local default URL (amqp: guest@127.0.0.1:5672, kafka:
                               127.0.0.1:9092): amqp+postgres, kafka+postgres,
                               redis+kafka+postgres

`bus=` overrides the event bus alone (`--bus kafka://…`). Where parts overlap, the queue is
the first of redis, amqp, postgres in the spec's parts and the bus is Kafka's if a part is
Kafka, else the queue's (or, for amqp, which has none, the next part's).
URL options of Reaper's own, taken out before connecting: `postgresql://…?schema=NAME` (the
PostgreSQL schema for the tables, default `reaper`) and `redis://…?prefix=NAME` (the key
prefix, default `reaper`): separate namespaces on one server (tests, benchmarks);
`amqp://…?prefetch=N`; `kafka://…?fetch_wait_ms=N` (how long the broker may hold an idle
fetch, default 10: see `reaper.infra.kafka_conn.FETCH_WAIT_MS`).

None means the default database file, `default_db`, which the CLI resolves from $REAPER_DB or
$XDG_DATA_HOME: deep code never reads the environment. Redis and PostgreSQL are optional
extras, imported only when a spec asks for them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from reaper.clock import Clock, RealClock
from reaper.errors import ConfigError
from reaper.infra.base import Backend, EventBus, MissionStore, TaskQueue
from reaper.infra.memory import MemoryEventBus, MemoryMissionStore, MemoryTaskQueue
from reaper.infra.sqlite import SqliteBackend

__all__ = [
    "DEFAULT_SCHEMA",
    "REDIS_POSTGRES_DEFAULTS",
    "BackendSpec",
    "open_backend",
    "parse_spec",
    "url_option",
]

Kind = Literal["memory", "sqlite", "redis", "postgres", "amqp", "kafka"]

REDIS_POSTGRES_DEFAULTS = ("redis://127.0.0.1:6379/0", "postgresql://127.0.0.1:5432/test")
# Each kind's local default, for combined specs (`amqp+postgres`, `redis+kafka+postgres`).
LOCAL_DEFAULTS: dict[str, str] = {
    "redis": REDIS_POSTGRES_DEFAULTS[0],
    "postgres": REDIS_POSTGRES_DEFAULTS[1],
    "amqp": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "kafka": "kafka://127.0.0.1:9092",
}
_VALID = (
    "memory, sqlite:///PATH (sqlite:////ABS/PATH), a path ending .db, redis://HOST:PORT/DB, "
    "postgresql://…, amqp://…, kafka://…, redis+postgres (any of redis, postgres, amqp, kafka "
    "joined by +)"
)
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_STORE_KINDS: tuple[Kind, ...] = ("memory", "sqlite", "postgres")
# Order matters where one spec has two parts: in redis+postgres the queue is Redis.
_QUEUE_KINDS: tuple[Kind, ...] = ("memory", "sqlite", "redis", "amqp", "postgres")
_BUS_KINDS: tuple[Kind, ...] = ("kafka", "memory", "sqlite", "redis", "postgres")
_EXTRAS = {
    "redis": ("reaper.infra.redis", "redis"),
    "postgres": ("reaper.infra.postgres", "psycopg"),
    "pgqueue": ("reaper.infra.postgres_queue", "psycopg"),
    "amqp": ("reaper.infra.amqp_queue", "aio_pika"),
    "kafka": ("reaper.infra.kafka_bus", "confluent_kafka"),
}
# Further top-level packages an extra brings (a missing one gets the same install hint).
_ALSO = {"psycopg": ("psycopg_pool",), "aio_pika": ("aiormq",)}
# The pip extra each optional part needs.
_EXTRA_NAME = {
    "redis": "redis",
    "postgres": "postgres",
    "pgqueue": "postgres",
    "amqp": "amqp",
    "kafka": "kafka",
}


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One parsed part: `target` is a file path (sqlite), a URL (redis, postgres) or ""."""

    kind: Kind
    target: str = ""


def _sqlite_path(raw: str) -> str:
    if raw in ("", "/"):
        raise ConfigError("sqlite spec has no path: use sqlite:///FILE.db or sqlite:////ABS.db")
    if raw == ":memory:":
        return raw
    return str(Path(raw).expanduser().absolute())


def parse_spec(spec: str) -> list[BackendSpec]:
    """Parse one spec into its parts (two for `redis+postgres`); ConfigError if unknown."""
    text = spec.strip()
    if text in ("memory", "memory://"):
        return [BackendSpec("memory")]
    if "+" in text and "://" not in text:
        names = [n.strip().lower() for n in text.split("+")]
        unknown = [n for n in names if n not in LOCAL_DEFAULTS]
        if unknown or len(set(names)) != len(names):
            raise ConfigError(f"unknown backend spec {spec!r}; valid: {_VALID}")
        return [parse_spec(LOCAL_DEFAULTS[n])[0] for n in names]
    url = urlsplit(text)
    scheme = url.scheme.lower()
    if scheme == "sqlite":
        if url.netloc:
            raise ConfigError(
                f"sqlite spec {spec!r} has a host part: use sqlite:///relative.db "
                "or sqlite:////absolute/path.db"
            )
        # urlsplit("sqlite:///x.db").path == "/x.db": the first slash ends the empty host.
        return [BackendSpec("sqlite", _sqlite_path(url.path[1:]))]
    if scheme in ("redis", "rediss", "unix"):
        return [BackendSpec("redis", text)]
    if scheme in ("postgresql", "postgres"):
        return [BackendSpec("postgres", text)]
    if scheme in ("amqp", "amqps"):
        return [BackendSpec("amqp", text)]
    if scheme == "kafka":
        if not url.netloc:
            raise ConfigError(f"kafka spec {spec!r} names no broker: kafka://HOST:PORT[,HOST:PORT]")
        return [BackendSpec("kafka", text)]
    if (not scheme or len(scheme) == 1) and text.lower().endswith(_DB_SUFFIXES):
        # No scheme (or a Windows drive letter): a bare database file path.
        return [BackendSpec("sqlite", _sqlite_path(text))]
    raise ConfigError(f"unknown backend spec {spec!r}; valid: {_VALID}")


def _pick(parts: list[BackendSpec], kinds: tuple[Kind, ...]) -> BackendSpec | None:
    return next((p for p in parts if p.kind in kinds), None)


def _import_extra(kind: str) -> ModuleType:
    module_name, package = _EXTRAS[kind]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(f"the {kind} backend is not available in this build") from exc
        if exc.name is not None and exc.name.split(".")[0] in (package, *_ALSO.get(package, ())):
            raise ConfigError(
                f"the {kind} backend needs an optional package: "
                f"pip install 'reaper-lab[{_EXTRA_NAME[kind]}]'"
            ) from exc
        raise


# Reaper's own URL option per kind (see the module docstring).
_URL_OPTION: dict[str, tuple[str, ...]] = {
    "postgres": ("schema",),
    "pgqueue": ("schema",),
    "redis": ("prefix",),
    "amqp": ("prefix", "prefetch"),
    "kafka": ("prefix", "fetch_wait_ms"),
}
# The PostgreSQL schema without `?schema=`.
DEFAULT_SCHEMA = "reaper"


def url_option(url: str, name: str) -> tuple[str, str | None]:
    """`url` without its query option `name`, and that option's value (None if absent)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    values = [v for k, v in query if k == name]
    if not values:
        return url, None
    rest = urlencode([(k, v) for k, v in query if k != name])
    return parts._replace(query=rest).geturl(), values[-1]


def _extra_part(kind: str, class_name: str, url: str, clock: Clock) -> Any:
    module = _import_extra(kind)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"the {kind} backend has no {class_name} in this build")
    # The optional modules' classes take the URL and the clock (and connect lazily).
    options: dict[str, str] = {}
    for option in _URL_OPTION[kind]:
        url, value = url_option(url, option)
        if value is None:
            continue
        if not value:
            raise ConfigError(f"empty {option}= in backend URL")
        options[option] = value
    return cls(url, clock=clock, **options)


class _Builder:
    """Builds parts, sharing one SqliteBackend per file and one clock across parts."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sqlite: dict[str, SqliteBackend] = {}

    def _sqlite(self, path: str) -> SqliteBackend:
        if path not in self.sqlite:
            self.sqlite[path] = SqliteBackend(path, clock=self.clock)
        return self.sqlite[path]

    def store(self, spec: BackendSpec) -> MissionStore:
        if spec.kind == "memory":
            return MemoryMissionStore(self.clock)
        if spec.kind == "sqlite":
            return self._sqlite(spec.target).store
        store: MissionStore = _extra_part(
            "postgres", "PostgresMissionStore", spec.target, self.clock
        )
        return store

    def queue(self, spec: BackendSpec) -> TaskQueue:
        if spec.kind == "memory":
            return MemoryTaskQueue(self.clock)
        if spec.kind == "sqlite":
            return self._sqlite(spec.target).queue
        kind, name = {
            "postgres": ("pgqueue", "PostgresTaskQueue"),
            "redis": ("redis", "RedisTaskQueue"),
            "amqp": ("amqp", "AmqpTaskQueue"),
        }[spec.kind]
        queue: TaskQueue = _extra_part(kind, name, spec.target, self.clock)
        return queue

    def bus(self, spec: BackendSpec) -> EventBus:
        if spec.kind == "memory":
            return MemoryEventBus()
        if spec.kind == "sqlite":
            return self._sqlite(spec.target).bus
        kind, name = {
            "postgres": ("pgqueue", "PostgresEventBus"),
            "redis": ("redis", "RedisEventBus"),
            "kafka": ("kafka", "KafkaEventBus"),
        }[spec.kind]
        bus: EventBus = _extra_part(kind, name, spec.target, self.clock)
        return bus


def _bus_spec(
    given: list[BackendSpec],
    queue_parts: list[BackendSpec],
    queue_spec: BackendSpec | None,
    main: list[BackendSpec],
) -> BackendSpec | None:
    """`bus=` if given; else Kafka among the parts; else the queue's own bus; else (amqp has
    none) the next part providing one."""
    if given:
        return _pick(given, _BUS_KINDS)
    for parts in (queue_parts, main):
        kafka = _pick(parts, ("kafka",))
        if kafka is not None:
            return kafka
    if queue_spec is not None and queue_spec.kind in _BUS_KINDS:
        return queue_spec
    return _pick(queue_parts, _BUS_KINDS) or _pick(main, _BUS_KINDS)


def _describe(spec: BackendSpec) -> str:
    if spec.kind == "sqlite":
        return f"sqlite:///{spec.target}"
    url = urlsplit(spec.target)
    if url.password:  # descriptions are shown and logged: never the password
        url = url._replace(netloc=url.netloc.replace(f":{url.password}@", ":***@", 1))
    return url.geturl() or spec.kind


def open_backend(
    spec: str | None,
    *,
    store: str | None = None,
    queue: str | None = None,
    bus: str | None = None,
    clock: Clock | None = None,
    default_db: Path | None = None,
) -> Backend:
    """Build the store, queue and bus from specs (see the module docstring). `sqlite` alone
    names the default database file (`default_db`)."""
    if spec is not None and spec.strip() in ("sqlite", "sqlite://") and default_db is not None:
        spec = None
    if spec is None:
        if default_db is None and (store is None or queue is None):
            raise ConfigError("no backend spec and no default database path")
        main = [] if default_db is None else [BackendSpec("sqlite", _sqlite_path(str(default_db)))]
    else:
        main = parse_spec(spec)
    store_spec = _pick(parse_spec(store) if store else main, _STORE_KINDS)
    queue_parts = parse_spec(queue) if queue else main
    queue_spec = _pick(queue_parts, _QUEUE_KINDS)
    bus_spec = _bus_spec(parse_spec(bus) if bus else [], queue_parts, queue_spec, main)
    if store_spec is None:
        raise ConfigError(
            f"{store or spec!r} provides no mission store: add a store spec "
            "(--store sqlite:///FILE.db, postgresql://…, or memory)"
        )
    if queue_spec is None:
        raise ConfigError(
            f"{queue or spec!r} provides no task queue: add a queue spec "
            "(--queue redis://…, postgresql://…, sqlite:///FILE.db, or memory)"
        )
    if bus_spec is None:
        raise ConfigError(
            f"{bus or queue or spec!r} provides no event bus: add a bus spec "
            "(--bus kafka://…, redis://…, postgresql://…)"
        )
    builder = _Builder(clock or RealClock())
    try:
        the_store = builder.store(store_spec)
        the_queue = builder.queue(queue_spec)
        the_bus = builder.bus(bus_spec)
    except BaseException:
        for backend in builder.sqlite.values():
            backend.db.close()
        raise
    if store_spec == queue_spec == bus_spec:
        description = _describe(store_spec)
    else:
        description = f"store={_describe(store_spec)} queue={_describe(queue_spec)}"
        if bus_spec != queue_spec:
            description += f" bus={_describe(bus_spec)}"
    return Backend(store=the_store, queue=the_queue, bus=the_bus, description=description)
