"""Configuration: `reaper.toml`, overridden by `REAPER_*` variables, overridden by flags.

One frozen `Config` is built in the CLI and passed down; deep code never reads the environment
(the LLM clients read their SDK's API-key variable when built, and nothing else does).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from reaper.errors import ConfigError
from reaper.safeload import read_limited

__all__ = ["Config", "default_db_path", "load_config"]


def default_db_path(env: Mapping[str, str]) -> Path:
    """$REAPER_DB, else $XDG_DATA_HOME/reaper/reaper.db (~/.local/share/reaper/reaper.db)."""
    if env.get("REAPER_DB"):
        return Path(env["REAPER_DB"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "reaper" / "reaper.db"


@dataclass(frozen=True, slots=True)
class Config:
    db: Path = field(default_factory=lambda: default_db_path({}))
    backend: str | None = None
    store: str | None = None
    queue: str | None = None
    bus: str | None = None
    log_level: str = "WARNING"
    log_file: str | None = None
    concurrency: int = 32
    stall_after_s: float | None = None
    lease_ttl_s: float = 30.0
    heartbeat_s: float | None = None  # default: a third of the lease, within 0.1-5 s
    worker_grace_s: float = 10.0
    metrics_port: int | None = None
    llm_provider: str | None = None
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_model_path: str | None = None  # provider local: a GGUF file (`--model-path`)
    llm_timeout_s: float = 60.0
    llm_max_retries: int = 2
    llm_temperature: float | None = None
    llm_max_tokens: int = 2048
    prices: dict[str, Any] = field(default_factory=dict)

    def with_flags(self, **flags: Any) -> Config:
        """Flags win when given (None means 'not given')."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})


_ENV = {f.name: f"REAPER_{f.name.upper()}" for f in fields(Config) if f.name != "prices"}
_ENV["db"] = "REAPER_DB"


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Config)}[name]
    try:
        if name == "db":
            return Path(str(value)).expanduser()
        if "int" in str(kind) and "float" not in str(kind):
            return int(value)
        if "float" in str(kind):
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config {name}: {value!r} is not a number") from None
    return value


def load_config(path: str | Path | None, env: Mapping[str, str]) -> Config:
    values: dict[str, Any] = {"db": default_db_path(env)}
    cfg_path = Path(path) if path else Path("reaper.toml")
    if path or cfg_path.exists():
        try:
            data = tomllib.loads(read_limited(cfg_path))
        except FileNotFoundError:
            raise ConfigError(f"{cfg_path}: no such config file") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{cfg_path}: {exc}") from None
        except RecursionError:  # tomllib recurses once per nested array or inline table
            raise ConfigError(f"{cfg_path}: refused: nested too deep") from None
        section = data.get("reaper", data)
        known = {f.name for f in fields(Config)}
        for key, value in section.items():
            if key not in known:
                raise ConfigError(f"{cfg_path}: unknown setting {key!r}")
            values[key] = value if key == "prices" else _coerce(key, value)
    for name, var in _ENV.items():
        if env.get(var) and name != "db":
            values[name] = _coerce(name, env[var])
    return Config(**values)
