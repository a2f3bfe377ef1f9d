"""The action catalog: every action Reaper can run, declared once.

Each entry says which OS it runs on, its typed params, its risk tier, its timeout, whether it
is idempotent and what stage a success brings the host to. The policy, the planners (the LLM
sees this catalog rendered from the code) and the agents all read it from here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from reaper.desired import KIND_OS, KINDS
from reaper.desired.memo import as_json, validated
from reaper.models import OS_NAMES, Stage

__all__ = [
    "CATALOG",
    "CLEARS",
    "DIAGNOSE_TOPICS",
    "ENSURE_KINDS",
    "FAILURE_CLASSES",
    "RESOURCE_FAILURES",
    "SCRIPT_MAX",
    "ActionSpec",
    "BaselineParams",
    "CleanupParams",
    "DiagnoseParams",
    "DiscoverParams",
    "EnsureKind",
    "PrepareParams",
    "RebootParams",
    "Risk",
    "RunPowershellParams",
    "RunShellParams",
    "catalog_for",
    "checked_params",
    "ensure_action",
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
    """Collect facts. `sections` limits which groups are gathered (all when omitted).
    `resources` (each a declared resource as JSON) asks for the observed state of each:
    the result's `data["resources"]` maps `KIND/NAME` to its properties, or null when it
    does not exist."""

    sections: list[str] | None = Field(default=None, max_length=32)
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


@dataclass(frozen=True, slots=True)
class EnsureKind:
    """How `<os>.ensure_<kind>` runs: its risk tier, timeout and what it does."""

    risk: Risk
    timeout_s: float
    description: str


# One `ensure_<kind>` per resource kind, on every OS the kind runs on (`KIND_OS`). Every tier is
# `change`: an ensure converges what the lab declares, and the shipped labs (an AD forest, a
# hardened sshd) must run unattended under the standard policy, which asks before destructive
# actions. What makes some of them dangerous is answered more precisely elsewhere: the lockout
# guard (`reaper.lockout`) refuses the sshd options, firewall rules, service stops and user
# changes that would cut Reaper's access, whatever the policy. Promoting a DC or joining a
# domain reboots the host (`reboot_required` in the result); a deployment that wants an
# operator there raises those two to `destructive` here, or asks for them in its policy.
ENSURE_KINDS: dict[str, EnsureKind] = {
    "package": EnsureKind(Risk.CHANGE, 900.0, "Install or remove a package (optional version)."),
    "service": EnsureKind(Risk.CHANGE, 180.0, "Start or stop a service; enable it at boot."),
    "file": EnsureKind(Risk.CHANGE, 60.0, "Write a file (content or template), mode, owner."),
    "directory": EnsureKind(Risk.CHANGE, 60.0, "Create or remove a directory, mode, owner."),
    "user": EnsureKind(Risk.CHANGE, 120.0, "Create, change, lock or remove a local user."),
    "group": EnsureKind(Risk.CHANGE, 60.0, "Create or remove a local group."),
    "setting": EnsureKind(Risk.CHANGE, 60.0, "Set a sysctl key, registry value or defaults key."),
    "sshd_option": EnsureKind(Risk.CHANGE, 120.0, "Set an sshd_config option and reload sshd."),
    "firewall": EnsureKind(Risk.CHANGE, 120.0, "Add or remove an inbound firewall rule."),
    "dns_client": EnsureKind(Risk.CHANGE, 60.0, "Point the resolver at DNS servers."),
    "package_repository": EnsureKind(
        Risk.CHANGE, 300.0, "Add or remove an apt/dnf repository and its key."
    ),
    "windows_feature": EnsureKind(Risk.CHANGE, 1800.0, "Install or remove a Windows feature."),
    "ad_domain": EnsureKind(
        Risk.CHANGE, 3600.0, "Promote this host to the first DC of a new forest (reboots)."
    ),
    "domain_membership": EnsureKind(Risk.CHANGE, 1200.0, "Join or leave an AD domain (reboots)."),
    "ad_user": EnsureKind(Risk.CHANGE, 120.0, "Create, change or remove a directory user."),
    "ad_group": EnsureKind(Risk.CHANGE, 120.0, "Create or remove a directory group."),
}
assert set(ENSURE_KINDS) == set(KINDS), "every resource kind has its ensure action"

# The failure classes an ensure answers in `error_code` (a real tool's output in the tails):
# code → (retriable, what it means). Anything else is a plain COMMAND_FAILED.
FAILURE_CLASSES: dict[str, tuple[bool, str]] = {
    "PACKAGE_NOT_FOUND": (False, "no package of that name in this distro's repositories"),
    "PM_LOCKED": (True, "another process holds the package manager's lock"),
    "REPO_UNREACHABLE": (False, "a package repository cannot be reached"),
    "DISK_FULL": (False, "no space left on the filesystem"),
    "CONFIG_INVALID": (False, "a service's configuration fails its syntax check"),
    "PORT_IN_USE": (False, "another process listens on the service's port"),
    "DNS_MISCONFIGURED": (False, "the domain's DNS records cannot be resolved from this host"),
    "CLOCK_SKEW": (False, "the clock differs from the domain controller's (Kerberos)"),
    "REBOOT_PENDING": (False, "a reboot is pending; the change waits for it"),
    "MISSING_DEPENDENCY": (False, "something this resource needs is not there yet"),
}


def _ensure_params(kind: str) -> type[_Params]:
    model = KINDS[kind]
    params: type[_Params] = create_model(
        f"Ensure{model.__name__}Params",
        __base__=_Params,
        __doc__=f"`resource`: the declared {kind} (validated as the lab's own); `check_mode` "
        "reports what would change and changes nothing.",
        resource=(model, ...),
        check_mode=(bool, False),
    )
    return params


_ENSURE_PARAMS: dict[str, type[_Params]] = {kind: _ensure_params(kind) for kind in KINDS}
_ENSURE_MODELS: frozenset[type[_Params]] = frozenset(_ENSURE_PARAMS.values())


def ensure_action(os: str, kind: str) -> str:
    """The catalog name of the action that converges a `kind` resource on `os`."""
    return f"{os}.ensure_{kind}"


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
        for kind, how in ENSURE_KINDS.items():
            if os not in KIND_OS[kind]:
                continue
            name = ensure_action(os, kind)
            catalog[name] = ActionSpec(
                name=name,
                os=os,
                verb=f"ensure_{kind}",
                description=how.description,
                params_model=_ENSURE_PARAMS[kind],
                risk=how.risk,
                timeout_s=how.timeout_s,
                idempotent=True,
            )
    return catalog


CATALOG: dict[str, ActionSpec] = _build()
_EMPTY_PARAMS_OK = frozenset(
    name
    for name, spec in CATALOG.items()
    if all(not f.is_required() for f in spec.params_model.model_fields.values())
)


# Failure classes of a resource (not of its host): they never count toward locking the host.
RESOURCE_FAILURES = frozenset(FAILURE_CLASSES) | {"COMMAND_FAILED", "UNSUPPORTED"}
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
        model = checked_params(spec, params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        return params, f"{where}: {first['msg']}"
    resource = getattr(model, "resource", None)
    if not isinstance(resource, BaseModel):
        return model.model_dump(exclude_defaults=True), None
    if spec.params_model in _ENSURE_MODELS:
        # its other field, `check_mode`, dumped as exclude_defaults would (False is the default)
        out: dict[str, Any] = {"check_mode": True} if getattr(model, "check_mode") else {}  # noqa: B009
    else:
        out = model.model_dump(exclude_defaults=True, exclude={"resource"})
    # A resource travels whole, as the lab declares it (its `kind` and defaults included):
    # the lockout guard, the agents and the ledger read it without re-validating.
    out["resource"] = as_json(resource)
    return out, None


def checked_params(spec: ActionSpec, params: Mapping[str, Any]) -> BaseModel:
    """`params` validated by the action's model (raises ValidationError). An ensure's params
    (a frozen resource and a flag, nothing mutable) are memoised by content: the same
    declared resource is checked by the policy and again by the agent, on every host."""
    if spec.params_model in _ENSURE_MODELS:
        return validated(spec.params_model, dict(params))
    return spec.params_model.model_validate(params)
