"""The action catalog: every action Reaper can run, declared once.

Each entry says which OS it runs on, its typed params, its risk tier, its timeout, whether it
is idempotent and what stage a success brings the host to. The policy, the planners (the LLM
sees this catalog rendered from the code) and the agents all read it from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reaper.models import OS_NAMES, Stage

__all__ = [
    "CATALOG",
    "ActionSpec",
    "BaselineParams",
    "DiscoverParams",
    "PrepareParams",
    "RebootParams",
    "Risk",
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
)


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
    return catalog


CATALOG: dict[str, ActionSpec] = _build()
_EMPTY_PARAMS_OK = frozenset(
    name
    for name, spec in CATALOG.items()
    if all(not f.is_required() for f in spec.params_model.model_fields.values())
)


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
