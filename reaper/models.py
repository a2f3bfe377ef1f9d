"""The data contract: tasks, results, host and mission state, and the event log.

Field names follow the seed design (`Task`, `ResultEvent`, `HostState`, `MissionState`); what a
real mission needs on top (attempts, reasons, stages, status, versions) is added beside them.
Every model round-trips through JSON losslessly and every timestamp is timezone-aware UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    field_validator,
)
from pydantic_core import PydanticUndefined

__all__ = [
    "AGENT_TYPES",
    "ID_RE",
    "ID_RULE",
    "INBOUND",
    "MISSION_ID_RE",
    "OS_NAMES",
    "SCHEMA_VERSION",
    "ApprovalDecision",
    "EventKind",
    "EventRecord",
    "HostConnection",
    "HostState",
    "HostStatus",
    "InboundMessage",
    "MissionControl",
    "MissionState",
    "MissionStatus",
    "PlannedTask",
    "ResourceState",
    "ResultEvent",
    "ResultStatus",
    "SimFault",
    "SimSettings",
    "SimWorldSettings",
    "Stage",
    "Task",
    "TaskRecord",
    "TaskStatus",
    "WinRMSettings",
    "agent_type_for",
    "replace",
    "trusted",
    "utcnow",
]

SCHEMA_VERSION = 1
OS_NAMES = ("windows", "linux", "macos")
OsName = Literal["windows", "linux", "macos"]
AGENT_TYPES = tuple(f"reaper-{os}" for os in OS_NAMES)
# One rule for mission and host ids (they meet in task ids, keys, file names and Ansible
# inventories, whose host names are often FQDNs).
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
ID_RULE = (
    "an id starts with a letter or digit and holds only letters, digits, '.', '_' and '-' "
    "(at most 128 characters)"
)
MISSION_ID_RE = ID_RE


def utcnow() -> datetime:
    return datetime.now(UTC)


def agent_type_for(os: str) -> str:
    return f"reaper-{os}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


_M = TypeVar("_M", bound=BaseModel)
_setattr = object.__setattr__


def replace(model: _M, /, **changes: Any) -> _M:
    """`model.model_copy(update=changes)` without its generic overhead (it is on the engine's
    per-task path, several times per task): a shallow copy with `changes` set, unvalidated
    like model_copy's, so callers pass values of the fields' types."""
    new = model.__class__.__new__(model.__class__)
    values = model.__dict__.copy()
    values.update(changes)
    _setattr(new, "__dict__", values)
    fields_set = set(model.__pydantic_fields_set__)
    fields_set.update(changes)
    _setattr(new, "__pydantic_fields_set__", fields_set)
    extra = model.__pydantic_extra__
    _setattr(new, "__pydantic_extra__", None if extra is None else dict(extra))
    private = model.__pydantic_private__
    if private is not None:
        private = {k: v for k, v in private.items() if v is not PydanticUndefined}
    _setattr(new, "__pydantic_private__", private)
    return new


def trusted(cls: type[_M], values: dict[str, Any], fields_set: set[str]) -> _M:
    """An instance from values the engine itself produced, skipping validation: `values`
    holds every field, in declaration order (repr follows it), of the right type; `fields_set`
    names those the caller passed explicitly, as `cls(**those)` would record them. Only for
    models without private attributes, on the per-task path."""
    new = cls.__new__(cls)
    _setattr(new, "__dict__", values)
    _setattr(new, "__pydantic_fields_set__", fields_set)
    _setattr(new, "__pydantic_extra__", None)
    _setattr(new, "__pydantic_private__", None)
    return new


class ResultStatus(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    PARTIAL = "partial"


class HostStatus(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    ERROR = "error"


class Stage(StrEnum):
    """Progress toward the goal, separate from health (`HostStatus`)."""

    NEW = "new"
    DISCOVERED = "discovered"
    PREPARED = "prepared"
    BASELINED = "baselined"

    @property
    def rank(self) -> int:
        return _STAGE_RANK[self]


_STAGE_RANK = {Stage.NEW: 0, Stage.DISCOVERED: 1, Stage.PREPARED: 2, Stage.BASELINED: 3}


class MissionStatus(StrEnum):
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    STALLED = "stalled"
    STOPPED = "stopped"
    # Stopped in this process (Ctrl-C, SIGTERM): resumable, no engine runs it.
    INTERRUPTED = "interrupted"
    # `reaper cancel`: ended on purpose; never resumed.
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({MissionStatus.COMPLETED, MissionStatus.FAILED, MissionStatus.CANCELLED})


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RETRY_WAIT = "retry_wait"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"

    @property
    def pending(self) -> bool:
        return self in _PENDING

    @property
    def done(self) -> bool:
        return self in _DONE


# Sets, not tuples: these are asked several times per task on the engine's hot path.
_PENDING = frozenset({TaskStatus.QUEUED, TaskStatus.RETRY_WAIT})
_DONE = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.REJECTED})


class PlannedTask(_Model):
    """What a planner proposes; the engine validates it and mints the `Task`."""

    host_id: str
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    # Wait this long before the task goes out (a converger waiting for a held lock to clear).
    delay_s: float = Field(default=0.0, ge=0.0, le=3600.0)


class Task(_Model):
    """Work for an agent. `task_id` is minted from (mission, step, index); a retry keeps it."""

    task_id: str
    mission_id: str
    host_id: str
    agent_type: str
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    attempt: int = 1
    reason: str = ""
    timeout_s: float = 300.0

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.attempt)


class ResultEvent(_Model):
    """The result of one attempt of one task, as published by an agent."""

    event_type: Literal["task.result"] = "task.result"
    task_id: str
    mission_id: str
    host_id: str
    agent_type: str
    action: str
    attempt: int = 1
    status: ResultStatus
    summary: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    logs_ref: str | None = None
    ts: AwareDatetime = Field(default_factory=utcnow)
    retriable: bool = False
    error_code: str | None = None
    duration_s: float = 0.0

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.attempt)

    @property
    def ok(self) -> bool:
        return self.status is ResultStatus.SUCCESS


class ApprovalDecision(_Model):
    """An operator's answer to an `ask` task, sent to the engine through the bus."""

    event_type: Literal["approval.decision"] = "approval.decision"
    mission_id: str
    task_id: str
    approved: bool
    by: str = "operator"
    note: str = ""
    ts: AwareDatetime = Field(default_factory=utcnow)


class MissionControl(_Model):
    """An operator's request to a mission (`reaper cancel`, `unlock`, `resume --budget-*`),
    sent to the engine through the bus as approvals are, or applied by the CLI itself when no
    engine holds the mission (`Overseer.control`). `budget` holds the new limits (calls,
    tokens, usd) for `command="budget"`."""

    event_type: Literal["mission.control"] = "mission.control"
    mission_id: str
    command: Literal["cancel", "unlock", "budget"]
    host_id: str | None = None
    budget: dict[str, int | float] = Field(default_factory=dict)
    by: str = "operator"
    note: str = ""
    ts: AwareDatetime = Field(default_factory=utcnow)


InboundMessage = ResultEvent | ApprovalDecision | MissionControl
# Every bus decodes its messages with this one adapter: a message kind added here reaches
# every backend (a bus with its own copy once missed MissionControl).
INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(
    Annotated[InboundMessage, Field(discriminator="event_type")]
)


class TaskRecord(_Model):
    """The engine's view of a task over its life (stored as a row, one per task)."""

    task: Task
    status: TaskStatus = TaskStatus.QUEUED
    step: int = 0
    last_error: str | None = None
    not_before: AwareDatetime | None = None
    planned_by: str = ""


class SimFault(_Model):
    """A scripted misbehaviour of a simulated host."""

    kind: Literal["flaky", "down", "auth_failure", "needs_prepare", "slow", "command_failed"]
    action: str = "*"  # verb or `<os>.<verb>`; `*` for every action
    # flaky: fail this many attempts, or fail each with `rate` (seeded).
    times: int | None = None
    rate: float | None = None
    # down: fail every action after this many tasks ran on the host (0 = from the start),
    # for `for_tasks` tasks (None = forever).
    after: int = 0
    for_tasks: int | None = None
    delay_s: float = 0.0  # slow: extra latency


class SimWorldSettings(_Model):
    """Conditions of a simulated host's world (see docs/sim-world.md): each shows as the real
    tools print it and has a right fix in the action vocabulary."""

    disk_free_mb: int | None = Field(default=None, ge=0)  # None: plenty
    # What `cleanup` can free: the package cache, temporary files, rotated logs (MiB).
    reclaimable_mb: dict[str, int] = Field(
        default_factory=lambda: {"package_cache": 1200, "temp": 300, "old_logs": 500}
    )
    pm_lock_held_by: str | None = None  # e.g. "unattended-upgr (pid 812)"
    pm_lock_attempts: int = Field(default=2, ge=1, le=100)  # failed tries before it clears
    repo_unreachable: bool = False
    clock_offset_s: float = 0.0
    port_in_use: dict[int, str] = Field(default_factory=dict)  # port → process holding it
    pending_reboot: bool = False
    # Hand edits: path → the content someone wrote there (root's, 0644): a drift from the
    # lab, or a stray config file that breaks its service's config test.
    files: dict[str, str] = Field(default_factory=dict)


class SimSettings(_Model):
    facts: dict[str, Any] = Field(default_factory=dict)
    latency_s: float | tuple[float, float] = 0.0
    faults: list[SimFault] = Field(default_factory=list)
    seed: int | None = None
    world: SimWorldSettings | None = None


class WinRMSettings(_Model):
    scheme: Literal["https", "http"] = "https"
    port: int | None = None
    auth: Literal["ntlm", "kerberos", "credssp", "basic", "certificate"] = "ntlm"
    ca_file: str | None = None
    cert_file: str | None = None  # client certificate (PEM) for `certificate` auth
    validate_certs: bool = True
    allow_unencrypted: bool = False
    message_encryption: Literal["auto", "always", "never"] = "auto"
    path: str = "wsman"


class HostConnection(_Model):
    """How to reach a host. Secrets are references (env var names, files), never values."""

    transport: Literal["sim", "local", "ssh", "winrm"] = "sim"
    address: str | None = None
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    password_env: str | None = None
    use_agent: bool = True
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    jump_host: str | None = None
    become: bool = False
    # Only for `transport: local`: allow change and destructive actions on this machine.
    allow_changes: bool = False
    become_password_env: str | None = None
    connect_timeout_s: float = 10.0
    winrm: WinRMSettings | None = None
    sim: SimSettings | None = None


class ResourceState(_Model):
    """What Reaper knows of one declared resource of a host (desired-state missions).

    `observed` is what the last discover or ensure reported (None: it does not exist);
    `outcome` is the last ensure's (`changed`, `unchanged`, `would_change`) or `failed`, with
    the error and the tail of the tool's output; `verified` is False after a change until a
    discover has read the resource back (completion requires it)."""

    seen: bool = False
    observed: dict[str, Any] | None = None
    outcome: Literal["changed", "unchanged", "would_change", "failed"] | None = None
    change: Literal["added", "changed", "removed"] | None = None  # what the last change did
    error: str | None = None
    error_code: str | None = None
    output_tail: str = ""
    attempts: int = 0
    verified: bool = True
    # The last successful ensure said the change waits for a restart (Windows features, a
    # promotion, a join): the converger reboots the host, then reads it back.
    reboot_required: bool = False


class HostState(_Model):
    host_id: str
    os: OsName
    last_status: HostStatus = HostStatus.UNKNOWN
    last_tasks: list[str] = Field(default_factory=list)
    failure_count: int = 0
    max_failures: int = 3
    locked: bool = False
    facts: dict[str, Any] = Field(default_factory=dict)
    stage: Stage = Stage.NEW
    current_action: str | None = None
    last_error: str | None = None
    lock_reason: str | None = None
    connection: HostConnection = Field(default_factory=HostConnection)
    # Desired-state missions: the host's declared resources as JSON, in lab order (the graph
    # is rebuilt from every host's, `reaper.desired.progress.lab_of`), and per declared
    # resource (`KIND/NAME`) what is known of it.
    desired: list[dict[str, Any]] = Field(default_factory=list)
    resources: dict[str, ResourceState] = Field(default_factory=dict)
    # The last few proposals the policy or the loop guard refused on this host (desired
    # state), as one line each: what a planner is shown so it does not repeat them.
    refusals: list[str] = Field(default_factory=list)

    @property
    def agent_type(self) -> str:
        return agent_type_for(self.os)


class MissionState(_Model):
    schema_version: int = SCHEMA_VERSION
    mission_id: str
    lab_type: str
    goal: Stage = Stage.BASELINED
    hosts: dict[str, HostState]
    status: MissionStatus = MissionStatus.RUNNING
    status_reason: str = ""
    goal_reached: bool = False
    version: int = 0
    step: int = 0
    planner: str = "rule"
    policy: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: AwareDatetime = Field(default_factory=utcnow)
    updated_at: AwareDatetime = Field(default_factory=utcnow)
    # Every task of the mission by task_id: the source of truth for the seed's
    # `pending_tasks` / `completed_tasks`, which are derived views below.
    tasks: dict[str, TaskRecord] = Field(default_factory=dict)
    _open: set[str] = PrivateAttr(default_factory=set)

    def model_post_init(self, context: Any, /) -> None:
        self._open = {tid for tid, rec in self.tasks.items() if not rec.status.done}

    @property
    def open_task_ids(self) -> set[str]:
        """Tasks not yet finished (queued, waiting for a retry or for approval)."""
        # Read straight from pydantic's private storage: `self._open` goes through
        # BaseModel.__getattr__, a slow path on the engine's per-task route.
        open_ids: set[str] = self.__pydantic_private__["_open"]  # type: ignore[index]
        return open_ids

    @property
    def converges(self) -> bool:
        """A desired-state mission (lab schema 2): hosts carry declared resources."""
        return bool(self.settings.get("converge"))

    @property
    def check_mode(self) -> bool:
        """`reaper run --check`: every ensure runs in check mode and nothing changes."""
        return bool(self.settings.get("check_mode"))

    @property
    def pending_tasks(self) -> list[str]:
        return [tid for tid in self.open_task_ids if self.tasks[tid].status.pending]

    @property
    def awaiting_approval(self) -> list[str]:
        return [
            tid
            for tid in self.open_task_ids
            if self.tasks[tid].status is TaskStatus.AWAITING_APPROVAL
        ]

    @property
    def completed_tasks(self) -> list[str]:
        return [tid for tid, rec in self.tasks.items() if rec.status.done]

    def detached(self) -> MissionState:
        """A copy with its own containers; host and task models are shared, since Reaper
        replaces them on change rather than mutating them."""
        copy = self.model_copy(update={"hosts": dict(self.hosts), "tasks": dict(self.tasks)})
        copy._open = set(self._open)
        return copy

    def put_task(self, record: TaskRecord) -> None:
        """Insert or replace a task record, keeping the open-task index in step."""
        task_id = record.task.task_id
        self.tasks[task_id] = record
        open_ids: set[str] = self.__pydantic_private__["_open"]  # type: ignore[index]
        if record.status in _DONE:
            open_ids.discard(task_id)
        else:
            open_ids.add(task_id)

    @field_validator("mission_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not MISSION_ID_RE.match(value):
            raise ValueError(f"mission id {value!r}: {ID_RULE}")
        return value


class EventKind(StrEnum):
    MISSION_CREATED = "mission.created"
    TASK_PLANNED = "task.planned"
    TASK_REFUSED = "task.refused"
    TASK_RESULT = "task.result"
    TASK_RETRY = "task.retry"
    HOST_LOCKED = "host.locked"
    HOST_OS_CORRECTED = "host.os_corrected"
    PLANNER_DECISION = "planner.decision"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_GRANTED = "approval.granted"
    APPROVAL_REJECTED = "approval.rejected"
    STATUS_CHANGED = "status.changed"
    HOST_UNLOCKED = "host.unlocked"
    BUDGET_RAISED = "budget.raised"
    TASK_ABANDONED = "task.abandoned"


class EventRecord(_Model):
    """One entry of a mission's append-only event log (the decision ledger)."""

    schema_version: int = SCHEMA_VERSION
    seq: int = 0
    ts: AwareDatetime = Field(default_factory=utcnow)
    mission_id: str
    kind: EventKind
    payload: dict[str, Any] = Field(default_factory=dict)

    def result(self) -> ResultEvent | None:
        """The result a `task.result` entry carries (stored as a model or, once loaded from
        a persistent store, as its JSON form)."""
        raw = self.payload.get("result")
        if raw is None or isinstance(raw, ResultEvent):
            return raw
        return ResultEvent.model_validate(raw)
