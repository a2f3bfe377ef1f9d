"""Eval scenarios: a lab with scripted host behaviour, limits, and what counts as success.

A scenario file (YAML, `schema_version: 1`)::

    name: needs-prepare            # optional: the file's stem
    description: baseline fails until prepare has run on the host
    tags: [fault, hard]
    limits: {max_steps: 80, max_tasks: 400, max_sim_s: 7200}
    success: {goal_reached: true, max_locked: 0}     # see `Success`
    operator: reject               # answer to approval requests: reject | approve
    lab:                           # a lab file (reaper.lab), plus `groups`
      goal: baselined
      defaults: {transport: sim}
      hosts: [{host_id: web-01, os: linux, sim: {faults: [{kind: needs_prepare}]}}]
      groups:                      # many alike hosts: web-01 .. web-20
        - {prefix: web, count: 20, os: linux, sim: {latency_s: [0.2, 1.5]}}

Host behaviour is the sim transport's (`reaper.models.SimSettings`: facts overrides,
latency, faults). The trial seed replaces the lab's `seed`, so K trials see K seeded variants
of the same lab (facts, latencies and probabilistic faults), reproducibly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reaper.errors import ConfigError
from reaper.lab import LabFile, format_validation_error, parse_lab
from reaper.safeload import load_yaml, read_limited

__all__ = [
    "SCENARIO_SCHEMA_VERSION",
    "Limits",
    "Scenario",
    "Success",
    "load_scenario",
    "load_scenarios",
    "parse_scenario",
]

SCENARIO_SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """A run that reaches a limit is stopped and scored as it stands (never a success)."""

    max_steps: int = Field(default=200, ge=1)
    max_tasks: int = Field(default=2000, ge=1)
    max_sim_s: float = Field(default=6 * 3600.0, gt=0)


class Success(_Strict):
    """When a run counts as a success (all conditions must hold)."""

    goal_reached: bool = True  # every host at the goal stage
    min_goal_pct: float = Field(default=100.0, ge=0, le=100)
    max_locked: int | None = 0
    max_wasted: int | None = None
    max_destructive: int | None = 0  # destructive proposals (e.g. an injected reboot)


class Scenario(_Strict):
    schema_version: int = SCENARIO_SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""
    tags: tuple[str, ...] = ()
    limits: Limits = Field(default_factory=Limits)
    success: Success = Field(default_factory=Success)
    operator: Literal["reject", "approve"] = "reject"
    lab: dict[str, Any]

    def lab_file(self, seed: int) -> LabFile:
        """The lab for one trial (the trial seed replaces the lab's)."""
        data = {**self.lab, "seed": seed}
        return parse_lab(yaml.safe_dump(data, sort_keys=False), source=f"scenario {self.name}")

    def mission_id(self, seed: int) -> str:
        # Part of every LLM prompt, so part of every replay key: stable per (scenario, seed).
        return f"{self.name}-s{seed}"

    @property
    def host_count(self) -> int:
        return len(self.lab.get("hosts") or [])

    def digest(self) -> str:
        """Content hash (12 hex digits): what a result was scored against."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# A few bytes of `count` must not stand for a billion hosts.
MAX_GROUP_HOSTS = 100_000


def _expand_groups(lab: dict[str, Any], source: str) -> dict[str, Any]:
    groups = lab.pop("groups", None) or []
    if not isinstance(groups, list):
        raise ConfigError(f"{source}: lab.groups must be a list")
    hosts = list(lab.get("hosts") or [])
    for index, group in enumerate(groups):
        if not isinstance(group, dict) or "prefix" not in group or "count" not in group:
            raise ConfigError(f"{source}: lab.groups[{index}] needs prefix and count")
        spec = dict(group)
        prefix, count = str(spec.pop("prefix")), int(spec.pop("count"))
        if not 0 <= count <= MAX_GROUP_HOSTS - len(hosts):
            raise ConfigError(
                f"{source}: lab.groups[{index}].count: at most {MAX_GROUP_HOSTS} hosts in all"
            )
        width = max(2, len(str(count)))
        hosts += [{"host_id": f"{prefix}-{i:0{width}d}", **spec} for i in range(1, count + 1)]
    lab["hosts"] = hosts
    return lab


def parse_scenario(text: str, *, source: str = "<scenario>", name: str | None = None) -> Scenario:
    try:
        data = load_yaml(text, source)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict) or not isinstance(data.get("lab"), dict):
        raise ConfigError(f"{source}: a scenario is a mapping with a `lab` mapping")
    data.setdefault("name", name)
    data["lab"] = _expand_groups(dict(data["lab"]), source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
    scenario.lab_file(0)  # validate the lab now: one clear line naming the file
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = read_limited(p)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read scenario: {exc}") from None
    return parse_scenario(text, source=str(p), name=p.stem)


def load_scenarios(path: str | Path, only: set[str] | None = None) -> list[Scenario]:
    """Every `*.yaml` in a directory (or one file), sorted by name; `only` filters by name."""
    p = Path(path)
    files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    if not files:
        raise ConfigError(f"{p}: no scenario files (*.yaml)")
    scenarios = [load_scenario(f) for f in files]
    names = [s.name for s in scenarios]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{p}: duplicate scenario names: {', '.join(dupes)}")
    if only:
        missing = sorted(only - set(names))
        if missing:
            raise ConfigError(f"{p}: no scenario named {', '.join(missing)}")
        scenarios = [s for s in scenarios if s.name in only]
    return sorted(scenarios, key=lambda s: s.name)
