"""The action catalog as a desired-state mission's system prompt shows it: compact and scoped.

The full catalog as JSON schemas is ~10k tokens, more than a small local model's whole
context. A mission's lab fixes which OSes and resource kinds it has, so its system prompt
shows only those (plus the kinds whose actions fix causes outside a role: a service holding a
port or the time service, a repository, a resolver, a setting), each verb once with the OSes
it exists on, and parameters as a one-line signature instead of a JSON schema. The scope is
derived from the lab, not from the step, so the system prompt stays a stable prefix for the
whole mission (the server's prompt cache hits on it every step).

Signature notation (explained in the prompt): `name: T` required, `name?: T = default`
optional, `a|b` alternatives, `[T]` a list, `"x"` a literal value, `int 1..10` a range, a
capitalised name a resource type defined once after the actions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reaper.actions import CATALOG, ActionSpec
from reaper.models import MissionState

__all__ = ["FIX_KINDS", "CatalogScope", "compact_catalog", "scope_of", "scoped_actions"]

# Kinds whose ensure_* fixes a cause that is not in the role itself (README: the model may stop
# the service holding a port, start the time service, add a repository, point the resolver).
FIX_KINDS = frozenset({"service", "package_repository", "dns_client", "setting"})
# Stage-goal verbs: a desired-state mission never needs them.
_STAGE_VERBS = frozenset({"prepare", "baseline"})


@dataclass(frozen=True, slots=True)
class CatalogScope:
    oses: tuple[str, ...]
    kinds: tuple[str, ...]


def scope_of(state: MissionState) -> CatalogScope:
    """The OSes and declared resource kinds of the mission's lab (fixed for the mission)."""
    oses = sorted({h.os for h in state.hosts.values()})
    kinds = {str(r.get("kind")) for h in state.hosts.values() for r in h.desired if r.get("kind")}
    return CatalogScope(oses=tuple(oses), kinds=tuple(sorted(kinds | FIX_KINDS)))


def _in_scope(spec: ActionSpec, scope: CatalogScope) -> bool:
    if spec.os not in scope.oses or spec.verb in _STAGE_VERBS:
        return False
    if spec.verb.startswith("ensure_"):
        return spec.verb.removeprefix("ensure_") in scope.kinds
    return True


def scoped_actions(scope: CatalogScope) -> list[str]:
    """The action names the mission's prompt shows, sorted (also the plan schema's enum)."""
    return sorted(name for name, spec in CATALOG.items() if _in_scope(spec, scope))


def _literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _type(schema: Mapping[str, Any]) -> str:
    """One JSON-schema node as a short type expression (bounds on strings and patterns are
    left to the validation the engine does anyway; integer ranges are short and useful)."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "const" in schema:
        return _literal(schema["const"])
    if "enum" in schema:
        return "|".join(_literal(v) for v in schema["enum"])
    if "anyOf" in schema:
        return "|".join(_type(option) for option in schema["anyOf"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return "|".join(_type({"type": k}) for k in kind)
    if kind == "array":
        return f"[{_type(schema.get('items', {}))}]"
    if kind == "object":
        return _object(schema) if schema.get("properties") else "object"
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            return f"int {low}..{high}"
        return "int" if low is None else f"int>={low}"
    return {"string": "str", "boolean": "bool", "null": "null", "number": "num"}.get(
        str(kind), "any"
    )


def _object(schema: Mapping[str, Any]) -> str:
    required = set(schema.get("required", ()))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        if name == "after":  # dependency wiring: the operator's, never the planner's
            continue
        text = _type(prop)
        if name in required:
            fields.append(f"{name}: {text}")
            continue
        default = prop.get("default")
        if name == "kind" and "const" in prop:
            fields.append(f"{name}: {text}")  # optional only because it is implied
        elif default is None or default == []:
            # "optional" already says it may be left out: `|null` would repeat it.
            fields.append(f"{name}?: {text.removesuffix('|null')}")
        else:
            fields.append(f"{name}?: {text} = {_literal(default)}")
    return "{" + ", ".join(fields) + "}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _action_lines(names: Iterable[str]) -> tuple[list[str], dict[str, Any]]:
    # One line per verb and identical signature: the OSes it exists on are listed together.
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    defs: dict[str, Any] = {}
    for name in names:
        spec = CATALOG[name]
        schema = spec.params_schema()
        defs.update(schema.pop("$defs", {}))
        # The params model's docstring, where it has one, says what the params mean
        # (diagnose's topics, discover's resources) and contains the short description; an
        # ensure_*'s only repeats the prompt's header.
        about = "" if spec.verb.startswith("ensure_") else schema.get("description", "")
        text = _one_line(about or spec.description)
        key = (spec.verb, spec.risk.value, text, _object(schema))
        grouped.setdefault(key, []).append(spec.os)
    lines = [
        f"{verb} [{','.join(sorted(oses))}] {risk}: {description} {signature}"
        for (verb, risk, description, signature), oses in sorted(grouped.items())
    ]
    return lines, defs


def compact_catalog(scope: CatalogScope) -> str:
    """The scoped catalog: one line per verb, then one line per resource type it takes."""
    lines, defs = _action_lines(scoped_actions(scope))
    for def_name in sorted(defs):
        schema = defs[def_name]
        about = _one_line(schema.get("description", ""))
        lines.append(f"{def_name} {_object(schema)}" + (f" ({about})" if about else ""))
    return "\n".join(lines)
