"""The LLM planner's answer: a pydantic model, its wire JSON schema, and validation.

The schema sent to the provider fits the strictest common subset of structured output
(OpenAI ``strict: true``, Anthropic tool ``input_schema`` and native JSON output): every
object has ``additionalProperties: false`` and lists every property as required, with no
string or numeric constraints (except for a grammar-decoded local model, below). Every
array is bounded with ``maxItems`` (OpenAI strict mode and llama-server's grammar enforce it;
a tool ``input_schema`` carries it as documentation): an unbounded array lets a small model
with constrained decoding repeat items until it hits ``max_tokens``. Strict mode allows no
free-form object, so an action's params travel as ``params_json``, a JSON-encoded object,
decoded and checked here.

``bounded=True`` (providers in ``GRAMMAR_PROVIDERS``) adds ``maxLength`` to every free string:
under grammar-constrained decoding a small model that never emits the closing quote otherwise
writes one string (``"reason": "1000000…"``, measured with SmolLM2-135M) until ``max_tokens``,
and every such answer is lost. llama-server's grammar enforces the bound.

``parse_plan`` raises ``PlanValidationError`` with a message meant to be quoted back to the
model in the repair turn. Unknown hosts and actions are checked only to give the model a
chance to repair; the engine's policy still checks every task that is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from reaper.actions import CATALOG
from reaper.models import HostState, PlannedTask

__all__ = [
    "GRAMMAR_PROVIDERS",
    "MAX_SCHEMA_TASKS",
    "SCHEMA_NAME",
    "LLMPlan",
    "LLMPlanTask",
    "PlanValidationError",
    "parse_plan",
    "plan_json_schema",
]

SCHEMA_NAME = "plan"
# The planner's default per-step cap; a lower cap is checked by parse_plan with a message the
# model can repair from, which a schema bound cannot give.
MAX_SCHEMA_TASKS = 50
# Providers that decode under a grammar built from the schema (llama-server): they get
# bounded strings. The cloud providers' strict subsets have no string bounds.
GRAMMAR_PROVIDERS = frozenset({"local"})
# Characters per free string when bounded: room for a resource declaration in params_json,
# one sentence in reason and note.
_MAX_CHARS = {"params_json": 600, "reason": 80, "note": 80}


class LLMPlanTask(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host_id: str
    action: str
    params_json: str
    reason: str


class LLMPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[LLMPlanTask]
    done: bool
    note: str


class PlanValidationError(Exception):
    """The model's answer is unusable; ``kind`` is a short machine-readable cause."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def plan_json_schema(
    actions: Sequence[str] | None = None,
    hosts: Sequence[str] | None = None,
    *,
    bounded: bool = False,
) -> dict[str, Any]:
    """The schema of ``LLMPlan`` as sent to providers (written out, not generated, so that it
    stays inside the strict subset and byte-stable: it is part of every replay key).

    ``actions`` and ``hosts`` narrow the enums to a mission's own (desired state: the scoped
    catalog and the lab's hosts), so a grammar-constrained local model cannot name others.
    ``bounded`` caps every free string's length (see the module docstring)."""
    host_id: dict[str, Any] = {"type": "string", "description": "a host id from the hosts section"}
    max_items = MAX_SCHEMA_TASKS
    if hosts is not None:
        host_id = {"type": "string", "enum": sorted(hosts), **host_id}
        # At most one task per host per turn (a rule of the prompt): a small model decoding
        # under this grammar cannot run on repeating tasks past it.
        max_items = max(1, min(MAX_SCHEMA_TASKS, len(hosts)))
    task: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "host_id": host_id,
            "action": {
                "type": "string",
                "enum": sorted(CATALOG) if actions is None else sorted(actions),
                "description": "an action name from the catalog, matching the host's OS",
            },
            "params_json": {
                "type": "string",
                "description": 'the action params as a JSON object, "{}" for the defaults',
            },
            "reason": {"type": "string", "description": "one short sentence: why this task"},
        },
        "required": ["host_id", "action", "params_json", "reason"],
    }
    plan: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "tasks": {"type": "array", "items": task, "maxItems": max_items},
            "done": {"type": "boolean", "description": "true when nothing more is useful"},
            "note": {"type": "string", "description": "one line summarising this decision"},
        },
        "required": ["tasks", "done", "note"],
    }
    if bounded:
        for props in (task["properties"], plan["properties"]):
            for name, limit in _MAX_CHARS.items():
                if name in props:
                    props[name] = {**props[name], "maxLength": limit}
    return plan


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(root)"
    extra = f" ({exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{extra}"


def parse_plan(
    text: str, *, hosts: Mapping[str, HostState], max_tasks: int
) -> tuple[LLMPlan, list[PlannedTask]]:
    """Validate the raw answer; return the plan and its tasks as ``PlannedTask``s."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanValidationError("invalid_json", f"the answer is not valid JSON: {exc}") from None
    try:
        plan = LLMPlan.model_validate(data)
    except ValidationError as exc:
        raise PlanValidationError(
            "schema", f"the answer does not match the plan schema: {_first_error(exc)}"
        ) from None
    if len(plan.tasks) > max_tasks:
        raise PlanValidationError(
            "too_many_tasks",
            f"{len(plan.tasks)} tasks proposed; at most {max_tasks} are allowed per step: "
            "keep the most useful ones",
        )
    tasks: list[PlannedTask] = []
    for index, item in enumerate(plan.tasks):
        where = f"tasks[{index}]"
        if item.host_id not in hosts:
            raise PlanValidationError(
                "unknown_host", f"{where}.host_id: unknown host {item.host_id!r}"
            )
        if item.action not in CATALOG:
            raise PlanValidationError(
                "unknown_action",
                f"{where}.action: {item.action!r} is not in the action catalog",
            )
        try:
            params = json.loads(item.params_json) if item.params_json.strip() else {}
        except json.JSONDecodeError as exc:
            raise PlanValidationError(
                "invalid_params", f"{where}.params_json is not valid JSON: {exc}"
            ) from None
        if not isinstance(params, dict):
            raise PlanValidationError(
                "invalid_params", f"{where}.params_json must encode a JSON object"
            )
        tasks.append(
            PlannedTask(host_id=item.host_id, action=item.action, params=params, reason=item.reason)
        )
    return plan, tasks
