"""Lab files: the YAML an operator writes to describe a mission.

    schema_version: 1
    mission_id: baseline-2026-11        # optional: made from lab_type when absent
    lab_type: baseline-lab
    goal: baselined                     # discovered | prepared | baselined
    policy: standard                    # a preset, or {rules: [...], default: deny}
    planner: rule                       # or {kind: llm, provider: anthropic, model: ...}
    budget: {calls: 40, tokens: 400000, usd: 2.0}
    settings: {max_failures: 3, retry_attempts: 3, stall_after_s: 300}
    defaults: {transport: ssh, user: admin, key_file: ~/.ssh/lab}
    hosts:
      - {host_id: web-01, os: linux, address: 10.0.0.5}
      - {host_id: dc-01, os: windows, transport: sim, sim: {faults: [{kind: flaky, times: 2}]}}

Schema 2 declares what each host must become (`reaper.desired`): `roles:` maps a role name to
a list of typed resources and `hosts[].roles` names the roles a host has (inventory groups
naming a role add it too). A schema-1 lab's `goal` picks the shipped profile of each host's OS.

    schema_version: 2
    roles:
      web:
        - {kind: package, name: nginx}
        - {kind: service, name: nginx, state: running, after: ["db-01:service/postgresql"]}
    hosts:
      - {host_id: web-01, os: linux, roles: [web]}

`LabFile.desired` is the result: each host's resources and the dependency graph.

Every error is one line naming the file and the field.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from reaper.desired import (
    DesiredState,
    HostSpec,
    Resource,
    ResourceBase,
    parse_roles,
    resolve_desired,
)
from reaper.errors import ConfigError
from reaper.models import (
    ID_RE,
    ID_RULE,
    MISSION_ID_RE,
    HostConnection,
    HostState,
    MissionState,
    OsName,
    ResourceState,
    Stage,
)
from reaper.policy import Policy, policy_from_spec
from reaper.safeload import load_yaml, read_limited
from reaper.validation import explain

__all__ = [
    "Budget",
    "LabFile",
    "LabHost",
    "LabSettings",
    "PlannerSpec",
    "format_validation_error",
    "load_lab",
    "parse_lab",
]

LAB_SCHEMA_VERSION = 1
LAB_SCHEMA_VERSIONS = (1, 2)  # 2: desired state (roles of resources)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Budget(_Strict):
    calls: int | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)
    usd: float | None = Field(default=None, ge=0)


class PlannerSpec(_Strict):
    kind: Literal["rule", "llm", "hybrid"] = "rule"
    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


class LabSettings(_Strict):
    max_failures: int = Field(default=3, ge=1)
    retry_attempts: int = Field(default=3, ge=1)
    retry_backoff_s: float = Field(default=1.0, ge=0)
    retry_backoff_max_s: float = Field(default=30.0, ge=0)
    stall_after_s: float = Field(default=300.0, gt=0)
    # Tasks queued or running at once (Ansible's forks); the rest wait their turn.
    max_in_flight: int = Field(default=256, ge=1)
    # Within it, fewer while results wait on the engine longer than this (0: always the cap).
    latency_target_s: float = Field(default=0.025, ge=0)
    # Plan between steps only (deterministic planner input); default: on for the LLM planner.
    lockstep: bool | None = None
    # Desired state: run every ensure in check mode (report, change nothing): `run --check`.
    check_mode: bool = False


class LabHost(HostConnection):
    host_id: str = Field(min_length=1, max_length=128)
    os: OsName
    roles: list[str] = Field(default_factory=list)  # schema 2: roles the lab defines
    groups: list[str] = Field(default_factory=list)  # inventory groups (naming a role adds it)

    @field_validator("host_id")
    @classmethod
    def _valid_host_id(cls, value: str) -> str:
        if not ID_RE.match(value):
            raise ValueError(f"host_id {value!r}: {ID_RULE}")
        return value

    def connection(self) -> HostConnection:
        return HostConnection.model_validate(
            self.model_dump(exclude={"host_id", "os", "roles", "groups"}, exclude_unset=True)
        )


class LabFile(_Strict):
    schema_version: int = LAB_SCHEMA_VERSION
    mission_id: str | None = None
    lab_type: str = Field(default="lab", min_length=1)
    goal: Stage = Stage.BASELINED
    policy: str | dict[str, Any] | None = None
    planner: PlannerSpec = Field(default_factory=PlannerSpec)
    budget: Budget = Field(default_factory=Budget)
    settings: LabSettings = Field(default_factory=LabSettings)
    seed: int = 0
    roles: dict[str, tuple[Resource, ...]] = Field(default_factory=dict)
    hosts: list[LabHost] = Field(min_length=1)
    # (the goal, hosts and roles it was resolved from, the result): see `desired`.
    _desired: tuple[Stage, object, object, DesiredState] | None = PrivateAttr(default=None)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in LAB_SCHEMA_VERSIONS:
            raise ValueError(f"unsupported lab schema_version {value} (this Reaper reads 1, 2)")
        return value

    @field_validator("roles", mode="before")
    @classmethod
    def _typed_roles(cls, value: Any) -> Any:
        # ConfigError, not ValueError: its message already names `roles.web[2]` and the field.
        return parse_roles(value)

    @field_validator("mission_id")
    @classmethod
    def _valid_mission_id(cls, value: str | None) -> str | None:
        if value is not None and not MISSION_ID_RE.match(value):
            raise ValueError(f"mission_id {value!r}: {ID_RULE}")
        return value

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        try:
            policy_from_spec(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("planner", mode="before")
    @classmethod
    def _planner_shorthand(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _unique_hosts(self) -> LabFile:
        seen: set[str] = set()
        for host in self.hosts:
            if host.host_id in seen:
                raise ValueError(f"duplicate host_id {host.host_id!r}")
            seen.add(host.host_id)
        return self

    @model_validator(mode="after")
    def _desired_state(self) -> LabFile:
        if self.schema_version == 1:
            if self.roles:
                raise ValueError("roles: needs schema_version: 2")
            for i, host in enumerate(self.hosts):
                if host.roles:
                    raise ValueError(f"hosts[{i}].roles: needs schema_version: 2")
        else:
            _ = self.desired  # schema 2 is checked now: its errors are load errors
        return self

    @property
    def desired(self) -> DesiredState:
        """Each host's resolved resources and their dependency graph (`reaper.desired`).
        A schema-1 lab's come from the shipped profiles, which cannot fail, so they are
        resolved on first use. A `model_copy` carries the cache along, so it is kept only
        while it was made from these very hosts and roles (`is`) and this goal."""
        cached = self._desired
        if cached is None or not (
            cached[0] is self.goal and cached[1] is self.hosts and cached[2] is self.roles
        ):
            hosts = [HostSpec(h.host_id, h.os, tuple(h.roles), tuple(h.groups)) for h in self.hosts]
            roles = self.roles if self.schema_version >= 2 else None
            state = resolve_desired(hosts, roles, goal=self.goal)
            cached = self._desired = (self.goal, self.hosts, self.roles, state)
        return cached[3]

    def resolved_policy(self) -> Policy:
        return policy_from_spec(self.policy)

    def to_state(self, mission_id: str | None = None) -> MissionState:
        """The new mission this lab describes (secrets stay out: only references are kept)."""
        mid = mission_id or self.mission_id or _mission_id_for(self.lab_type)
        if not MISSION_ID_RE.match(mid):
            raise ConfigError(f"mission id {mid!r}: {ID_RULE}")
        # Schema 2 converges declared resources; schema 1 keeps its stage goal.
        converge = self.schema_version >= 2
        hosts = {
            h.host_id: HostState(
                host_id=h.host_id,
                os=h.os,
                max_failures=self.settings.max_failures,
                connection=h.connection(),
                **(_declared(self.desired.resources(h.host_id)) if converge else {}),
            )
            for h in self.hosts
        }
        return MissionState(
            mission_id=mid,
            lab_type=self.lab_type,
            goal=self.goal,
            hosts=hosts,
            planner=self.planner.kind,
            policy=self.resolved_policy().model_dump(mode="json"),
            settings={
                "seed": self.seed,
                "planner": self.planner.model_dump(mode="json", exclude_none=True),
                "budget": self.budget.model_dump(mode="json", exclude_none=True),
                **self.settings.model_dump(mode="json"),
                **({"converge": True} if converge else {}),
            },
        )


def _declared(resources: tuple[ResourceBase, ...]) -> dict[str, Any]:
    return {
        "desired": [r.model_dump(mode="json") for r in resources],
        "resources": {str(r.rid): ResourceState() for r in resources},
    }


def _mission_id_for(lab_type: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", lab_type.lower()).strip("-") or "mission"
    return f"{slug[:40]}-{uuid.uuid4().hex[:6]}"


def format_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line: the first problem, with a path like `hosts[2].os`; an unknown key gets the
    closest valid one of `model` (`reaper.validation`)."""
    return explain(exc, model)


def _merge_defaults(data: dict[str, Any]) -> dict[str, Any]:
    defaults = data.pop("defaults", None) or {}
    if not isinstance(defaults, dict):
        raise ConfigError("defaults: must be a mapping of connection settings")
    hosts = data.get("hosts")
    if isinstance(hosts, list) and defaults:
        data["hosts"] = [{**defaults, **h} if isinstance(h, dict) else h for h in hosts]
    return data


def _no_accidental_sim(lab: LabFile, source: str) -> None:
    """A host is simulated only when the lab says so: a host with no transport (and no
    `defaults.transport`) would otherwise be a sim host by accident, and a run against it
    would report a lab converged that nobody touched."""
    for i, host in enumerate(lab.hosts):
        if "transport" not in host.model_fields_set:
            raise ConfigError(
                f"{source}: hosts[{i}] ({host.host_id}): no transport; say how to reach it "
                "(transport: ssh | winrm | local), or transport: sim to simulate it "
                "(defaults.transport sets it for every host)"
            )


def parse_lab(text: str, *, source: str = "<lab>") -> LabFile:
    try:
        data = load_yaml(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a lab file is a YAML mapping with a `hosts` list")
    try:
        lab = LabFile.model_validate(_merge_defaults(data))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc, LabFile)}") from None
    _no_accidental_sim(lab, source)
    return lab


def load_lab(path: str | Path) -> LabFile:
    p = Path(path)
    try:
        text = read_limited(p)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such lab file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read lab file: {exc}") from None
    return parse_lab(text, source=str(p))
