"""Policy as data: which planned tasks may run, must be approved first, or are refused.

Every task from every planner passes `check()` before it is queued. Structural checks come
first (unknown host, locked host, busy host, unknown action, wrong OS, invalid params), then the
lockout guard (`reaper.lockout`: nothing may cut Reaper's own access to the host), then the
rules, matched on action × OS × risk tier, first match wins, else the policy's default.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reaper.actions import CATALOG, ActionSpec, Risk, validate_params
from reaper.errors import ConfigError
from reaper.lockout import lockout
from reaper.models import HostState, PlannedTask
from reaper.validation import explain

__all__ = [
    "PRESETS",
    "Decision",
    "Policy",
    "PolicyRule",
    "Verdict",
    "check",
    "policy_from_spec",
]


class Decision(StrEnum):
    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"


class PolicyRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str = "*"  # glob on `<os>.<verb>`
    os: str = "*"
    risk: Risk | Literal["*"] = "*"
    decision: Decision
    reason: str = ""

    def matches(self, spec: ActionSpec) -> bool:
        return (
            fnmatchcase(spec.name, self.action)
            and fnmatchcase(spec.os, self.os)
            and (self.risk == "*" or self.risk == spec.risk)
        )


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    rules: tuple[PolicyRule, ...] = ()
    default: Decision = Decision.DENY
    max_tasks_per_step: int = Field(default=100_000, ge=1)

    def decide(self, spec: ActionSpec) -> tuple[Decision, str]:
        return _decide(self, spec.name)

    def _decide_uncached(self, spec: ActionSpec) -> tuple[Decision, str]:
        for rule in self.rules:
            if rule.matches(spec):
                return rule.decision, rule.reason or f"rule {rule.action}/{rule.os}/{rule.risk}"
        return self.default, f"default {self.default.value} of policy {self.name!r}"


# Decisions per (policy object, action): policies are frozen and the catalog is fixed, so a
# decision never changes, and the engine asks once per planned task. Keyed by identity, not
# by the policy's hash (which hashes every rule, on every call); the entry holds the policy,
# so its id cannot be reused while the entry lives.
_DECISIONS: dict[tuple[int, str], tuple[Policy, tuple[Decision, str]]] = {}
_DECISIONS_MAX = 1024


def _decide(policy: Policy, action: str) -> tuple[Decision, str]:
    key = (id(policy), action)
    hit = _DECISIONS.get(key)
    if hit is not None and hit[0] is policy:
        return hit[1]
    answer = policy._decide_uncached(CATALOG[action])
    if len(_DECISIONS) >= _DECISIONS_MAX:
        _DECISIONS.clear()
    _DECISIONS[key] = (policy, answer)
    return answer


# A free-form command can do anything, so no shipped policy runs one unasked, whatever risk
# tier it sits in; these rules come first in every preset.
_ASK_SHELL = (
    PolicyRule(
        action="*.run_shell", decision=Decision.ASK, reason="free-form shell: needs approval"
    ),
    PolicyRule(
        action="*.run_powershell", decision=Decision.ASK, reason="free-form shell: needs approval"
    ),
)
_DENY_SHELL = tuple(
    rule.model_copy(update={"decision": Decision.DENY, "reason": "free-form shell: read-only"})
    for rule in _ASK_SHELL
)


def _preset(name: str, *rules: PolicyRule, shell: tuple[PolicyRule, ...] = _ASK_SHELL) -> Policy:
    return Policy(name=name, rules=shell + rules, default=Decision.DENY)


PRESETS: dict[str, Policy] = {
    # Read-only and change run; destructive actions wait for an operator.
    "standard": _preset(
        "standard",
        PolicyRule(risk=Risk.READ_ONLY, decision=Decision.ALLOW),
        PolicyRule(risk=Risk.CHANGE, decision=Decision.ALLOW),
        PolicyRule(
            risk=Risk.DESTRUCTIVE, decision=Decision.ASK, reason="destructive: needs approval"
        ),
    ),
    # Every change is approved by hand.
    "cautious": _preset(
        "cautious",
        PolicyRule(risk=Risk.READ_ONLY, decision=Decision.ALLOW),
        PolicyRule(risk=Risk.CHANGE, decision=Decision.ASK, reason="change: needs approval"),
        PolicyRule(risk=Risk.DESTRUCTIVE, decision=Decision.DENY, reason="destructive: denied"),
    ),
    "read-only": _preset(
        "read-only",
        PolicyRule(risk=Risk.READ_ONLY, decision=Decision.ALLOW),
        shell=_DENY_SHELL,
    ),
}


def policy_from_spec(spec: str | dict[str, Any] | None) -> Policy:
    """A preset name, or a mapping with `rules` (and optionally `default`, `base`)."""
    if spec is None:
        return PRESETS["standard"]
    if isinstance(spec, str):
        try:
            return PRESETS[spec]
        except KeyError:
            raise ConfigError(f"unknown policy {spec!r} (presets: {', '.join(PRESETS)})") from None
    data = dict(spec)
    base = PRESETS.get(str(data.pop("base", ""))) if "base" in spec else None
    try:
        policy = Policy.model_validate({"name": "custom", **data})
    except ValidationError as exc:
        raise ConfigError(f"invalid policy: {explain(exc, Policy)}") from None
    if base is not None:
        policy = policy.model_copy(update={"rules": policy.rules + base.rules})
    return policy


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's answer for one planned task (a plain dataclass: one per planned task)."""

    decision: Decision
    code: str  # machine-readable reason: allowed, ask, unknown_host, locked_host, ...
    reason: str
    params: dict[str, Any] = field(default_factory=dict)
    spec: ActionSpec | None = None


_CODES = {Decision.ALLOW: "allowed", Decision.ASK: "ask", Decision.DENY: "risk_denied"}


def _refuse(code: str, reason: str) -> Verdict:
    return Verdict(decision=Decision.DENY, code=code, reason=reason)


class _HostLookup(Protocol):
    def get(self, host_id: str, /) -> HostState | None: ...


class _HasHosts(Protocol):
    @property
    def hosts(self) -> _HostLookup: ...


def check(
    planned: PlannedTask,
    state: _HasHosts,
    policy: Policy,
    busy_hosts: Container[str] = frozenset(),
) -> Verdict:
    """Decide one planned task. Pure: reads the state, changes nothing."""
    host = state.hosts.get(planned.host_id)
    if host is None:
        return _refuse("unknown_host", f"unknown host {planned.host_id!r}")
    if host.locked:
        return _refuse("locked_host", f"host {host.host_id} is locked ({host.lock_reason})")
    spec = CATALOG.get(planned.action)
    if spec is None:
        return _refuse("unknown_action", f"unknown action {planned.action!r}")
    if spec.os != host.os:
        return _refuse(
            "wrong_os", f"{spec.name} is a {spec.os} action; {host.host_id} runs {host.os}"
        )
    if planned.host_id in busy_hosts:
        return _refuse("host_busy", f"host {host.host_id} already has a task in flight")
    if (
        host.connection.transport == "local"
        and spec.risk is not Risk.READ_ONLY
        and not host.connection.allow_changes
    ):
        # The local transport is the machine Reaper itself runs on: changing it takes an
        # explicit `allow_changes: true` on that host, whatever the policy says.
        return _refuse(
            "local_change",
            f"{spec.name} would change the machine Reaper runs on "
            f"({host.host_id}, transport local); set allow_changes: true on the host to allow it",
        )
    params, error = validate_params(spec, planned.params)
    if error is not None:
        return _refuse("invalid_params", f"invalid params for {spec.name}: {error}")
    cut = lockout(spec.verb, params, host.connection, host.os, host.desired)
    if cut is not None:
        # Before any rule: no policy, however permissive, allows Reaper to lock itself out.
        return _refuse(
            "lockout",
            f"{spec.name} would lock Reaper out of {host.host_id}: {cut.reason} (hint: {cut.hint})",
        )
    decision, why = policy.decide(spec)
    if (
        decision is Decision.ASK
        and spec.verb == "reboot"
        and any(rs.reboot_required for rs in host.resources.values())
    ):
        # The restart a change already allowed says it needs (a feature, a promotion, a
        # join: Install-ADDSForest restarts by itself unless told not to) completes that
        # change; asking again would stall an unattended lab. A policy that denies reboots
        # still does.
        decision, why = Decision.ALLOW, "the restart an applied change reported it needs"
    code = _CODES[decision]
    if decision is Decision.DENY:
        why = f"{spec.risk.value} action {spec.name} denied: {why}"
    return Verdict(decision=decision, code=code, reason=why, params=params, spec=spec)
