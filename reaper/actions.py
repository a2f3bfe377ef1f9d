"""The action catalog: every action Reaper can run, declared once.

Each entry says which OS it runs on, its typed params, its risk tier, its timeout, whether it
is idempotent and what stage a success brings the host to. The policy, the planners (the LLM
sees this catalog rendered from the code) and the agents all read it from here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from reaper.models import OS_NAMES, Stage

__all__ = [
    "CATALOG",
    "CLEARS",
    "DIAGNOSE_TOPICS",
    "RESOURCE_FAILURES",
    "SCRIPT_MAX",
    "ActionSpec",
    "BaselineParams",
    "CleanupParams",
    "DiagnoseParams",
    "DiscoverParams",
    "PrepareParams",
    "RebootParams",
    "Risk",
    "RunPowershellParams",
    "RunShellParams",
    "catalog_for",
    "get_action",
    "validate_params",
]


class Risk(StrEnum):
    READ_ONLY = "read-only"
    CHANGE = "change"
    DESTRUCTIVE = "destructive"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiscoverParams(_Params):
    """Collect facts. `sections` limits which groups are gathered (all when omitted)."""

    sections: list[str] | None = Field(default=None, max_length=32)
    # Desired-state missions: the host's declared resources, whose observed state the
    # discover reports under `resources` (`KIND/NAME` → properties, None when absent).
    resources: list[dict[str, Any]] | None = Field(default=None, max_length=500)


class PrepareParams(_Params):
    """Install or enable what the baseline needs (packages, services)."""

    items: list[str] | None = Field(default=None, max_length=32)


class BaselineParams(_Params):
    """Apply the declared baseline; `check_mode` reports what would change and changes nothing."""

    check_mode: bool = False
    items: list[str] | None = Field(default=None, max_length=64)


class RebootParams(_Params):
    delay_s: int = Field(default=0, ge=0, le=3600)
    reason: str = Field(default="", max_length=200)


DIAGNOSE_TOPICS = ("disk", "packages", "service", "network", "time", "processes")
DiagnoseTopic = Literal["disk", "packages", "service", "network", "time", "processes"]
# Names a service, a host or a domain: passed to commands as arguments, never spliced, but kept
# to a plain charset so a diagnose stays read-only whatever a planner puts in it. (A validator,
# not a JSON-schema pattern: the schema goes into the prompt, and stays short.)
_PLAIN = re.compile(r"[A-Za-z0-9@._:][A-Za-z0-9@._:-]{0,127}")


def _plain_name(value: str) -> str:
    if not _PLAIN.fullmatch(value):
        raise ValueError("1-128 letters, digits or @._:- (not starting with -)")
    return value


PlainName = Annotated[str, AfterValidator(_plain_name)]
SCRIPT_MAX = 4000


def _fits_a_command_line(value: str) -> str:
    # The script travels JSON-escaped inside an -EncodedCommand line (32,000 chars at most on
    # Windows): bound it as escaped, where a non-ASCII character costs 6 or 12.
    if len(json.dumps(value)) - 2 > SCRIPT_MAX:
        raise ValueError(f"longer than {SCRIPT_MAX} characters once JSON-escaped")
    return value


class DiagnoseParams(_Params):
    """Look before acting: read-only reports on the chosen topics (all when omitted).

    disk: usage per filesystem and inodes; packages: the package manager, its repositories,
    who holds its lock, broken packages; service: the status of `service` and the tail of its
    log; network: addresses, routes, resolvers, listening ports and, with `target`, whether that
    name resolves and its port answers; time: clock, time sync and its offset; processes: the
    busiest processes.
    """

    topics: list[DiagnoseTopic] | None = Field(default=None, min_length=1, max_length=6)
    service: PlainName | None = None
    target: PlainName | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    log_lines: int = Field(default=40, ge=1, le=200)


class CleanupParams(_Params):
    """Free space: package caches, temporary files and rotated logs older than N days.
    `check_mode` reports what would be removed and removes nothing."""

    targets: list[Literal["package_cache", "temp", "old_logs"]] | None = Field(
        default=None, min_length=1, max_length=3
    )
    older_than_days: int = Field(default=7, ge=1, le=3650)
    check_mode: bool = False


class RunShellParams(_Params):
    """A free-form `sh -c` command (as the connection's user, with sudo when the host has
    `become`). Every shipped policy asks an operator first; read-only denies it."""

    command: str = Field(min_length=1, max_length=4000)
    reason: str = Field(min_length=1, max_length=200)
    timeout_s: int = Field(default=300, ge=1, le=3600)


class RunPowershellParams(_Params):
    """A free-form PowerShell script. Every shipped policy asks an operator first; read-only
    denies it."""

    script: Annotated[str, AfterValidator(_fits_a_command_line)] = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=200)
    timeout_s: int = Field(default=300, ge=1, le=3600)


class ActionSpec(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    os: str
    verb: str
    description: str
    params_model: type[_Params]
    risk: Risk
    timeout_s: float
    idempotent: bool
    # The stage a successful run brings the host to (None: no progress, e.g. reboot).
    produces: Stage | None = None
    # The stage the host must have reached first (the rule-based planner honours it;
    # the policy does not: running a step early is the planner's mistake, not a danger).
    requires: Stage | None = None

    @property
    def supports_check_mode(self) -> bool:
        """Whether the action takes `check_mode` (report what would change, change nothing)."""
        return "check_mode" in self.params_model.model_fields

    def params_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()


_VERBS: tuple[
    tuple[str, str, type[_Params], Risk, float, bool, Stage | None, Stage | None], ...
] = (
    (
        "discover",
        "Collect OS, hardware, network, service and security facts.",
        DiscoverParams,
        Risk.READ_ONLY,
        120.0,
        True,
        Stage.DISCOVERED,
        None,
    ),
    (
        "prepare",
        "Install or enable the packages and services the baseline needs.",
        PrepareParams,
        Risk.CHANGE,
        600.0,
        True,
        Stage.PREPARED,
        Stage.DISCOVERED,
    ),
    (
        "baseline",
        "Apply the security baseline; report each setting changed or unchanged.",
        BaselineParams,
        Risk.CHANGE,
        600.0,
        True,
        Stage.BASELINED,
        Stage.DISCOVERED,
    ),
    ("reboot", "Restart the host.", RebootParams, Risk.DESTRUCTIVE, 900.0, False, None, None),
    (
        "diagnose",
        "Read-only reports on disk, packages, a service and its log, network, time, processes.",
        DiagnoseParams,
        Risk.READ_ONLY,
        120.0,
        True,
        None,
        None,
    ),
    (
        "cleanup",
        "Remove package caches, old temporary files and rotated logs.",
        CleanupParams,
        Risk.CHANGE,
        300.0,
        True,
        None,
        None,
    ),
)
# Free-form commands: one per shell, on the OSes that have it.
_SHELL_VERBS: dict[str, tuple[str, str, type[_Params]]] = {
    "linux": ("run_shell", "Run a free-form sh command (needs approval).", RunShellParams),
    "macos": ("run_shell", "Run a free-form sh command (needs approval).", RunShellParams),
    "windows": (
        "run_powershell",
        "Run a free-form PowerShell script (needs approval).",
        RunPowershellParams,
    ),
}


def _build() -> dict[str, ActionSpec]:
    catalog: dict[str, ActionSpec] = {}
    for os in OS_NAMES:
        for verb, desc, params, risk, timeout, idem, produces, requires in _VERBS:
            name = f"{os}.{verb}"
            catalog[name] = ActionSpec(
                name=name,
                os=os,
                verb=verb,
                description=desc,
                params_model=params,
                risk=risk,
                timeout_s=timeout,
                idempotent=idem,
                produces=produces,
                requires=requires,
            )
        verb, desc, shell_params = _SHELL_VERBS[os]
        catalog[f"{os}.{verb}"] = ActionSpec(
            name=f"{os}.{verb}",
            os=os,
            verb=verb,
            description=desc,
            params_model=shell_params,
            risk=Risk.DESTRUCTIVE,
            timeout_s=3600.0,
            idempotent=False,
        )
    return catalog


CATALOG: dict[str, ActionSpec] = _build()
_EMPTY_PARAMS_OK = frozenset(
    name
    for name, spec in CATALOG.items()
    if all(not f.is_required() for f in spec.params_model.model_fields.values())
)


# Failure classes of a resource (not of its host): they never count toward locking the host.
RESOURCE_FAILURES = frozenset(
    {
        "PACKAGE_NOT_FOUND", "PM_LOCKED", "REPO_UNREACHABLE", "DISK_FULL", "CONFIG_INVALID",
        "PORT_IN_USE", "DNS_MISCONFIGURED", "CLOCK_SKEW", "REBOOT_PENDING", "MISSING_DEPENDENCY",
        "COMMAND_FAILED", "SERVICE_FAILED", "DEPENDENCY_FAILED",
    }
)  # fmt: skip
# verb → the failure classes a success of it clears (the converger's known recoveries).
CLEARS: dict[str, frozenset[str]] = {
    "cleanup": frozenset({"DISK_FULL"}),
    "reboot": frozenset({"REBOOT_PENDING"}),
}


def get_action(name: str) -> ActionSpec | None:
    return CATALOG.get(name)


def catalog_for(os: str) -> Iterator[ActionSpec]:
    return (spec for spec in CATALOG.values() if spec.os == os)


def validate_params(spec: ActionSpec, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Return (normalised params, None) or (params, a one-line error)."""
    if not params and spec.name in _EMPTY_PARAMS_OK:
        return {}, None  # the common case: every field has a default
    try:
        model = spec.params_model.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        return params, f"{where}: {first['msg']}"
    return model.model_dump(exclude_defaults=True), None
