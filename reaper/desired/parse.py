"""Raw YAML data → typed resources, with one-line errors that say where (`roles.web[2]`), which
resource (`package/nginx`), which field, and what would have been valid.

Errors never quote a field's value: a mistyped field may hold a secret.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from reaper.desired.base import ResourceBase
from reaper.desired.kinds import KINDS
from reaper.desired.memo import validated
from reaper.errors import ConfigError

__all__ = ["declared_resources", "did_you_mean", "parse_resource", "parse_resources", "parse_roles"]

_ROLE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _label(data: Mapping[str, Any], kind: str) -> str:
    cls = KINDS[kind]
    name = data.get(cls._name_field) or data.get("name")
    return f" ({kind}/{name})" if isinstance(name, str | int) else ""


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(exc: ValidationError, cls: type[ResourceBase]) -> str:
    err = exc.errors(include_input=False)[0]
    field = _loc(tuple(err["loc"]))
    kind = cls.model_fields["kind"].default
    fields = [f for f in cls.model_fields if f != "kind"]
    if err["type"] == "extra_forbidden":
        return (
            f"unknown field {field!r}{did_you_mean(field, fields)}; "
            f"fields of {kind}: {', '.join(fields)}"
        )
    if err["type"] == "missing":
        return f"{field}: required for {kind}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch":
        info = cls.model_fields.get(str(err["loc"][0]))
        shape = info.description if info is not None else None
        msg = f"must be {shape}" if shape else f"must match {err.get('ctx', {}).get('pattern')}"
    more = len(exc.errors()) - 1
    return f"{field + ': ' if field and not msg.startswith(field) else ''}{msg}" + (
        f" (+{more} more)" if more else ""
    )


def parse_resource(data: Any, where: str) -> ResourceBase:
    """One resource from its mapping; `where` (e.g. `roles.web[2]`) prefixes every error."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a resource is a mapping with a `kind`")
    kind = data.get("kind")
    valid = ", ".join(KINDS)
    if kind is None:
        raise ConfigError(f"{where}: `kind` is missing; valid kinds: {valid}")
    if not isinstance(kind, str) or kind not in KINDS:
        hint = did_you_mean(kind, list(KINDS)) if isinstance(kind, str) else ""
        raise ConfigError(f"{where}: unknown kind {kind!r}{hint}; valid kinds: {valid}")
    cls = KINDS[kind]
    try:
        return validated(cls, data)
    except ValidationError as exc:
        raise ConfigError(f"{where}{_label(data, kind)}: {_explain(exc, cls)}") from None


def parse_resources(items: Any, where: str) -> tuple[ResourceBase, ...]:
    """A list of resources (one role); a second resource with the same identity is an error."""
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{where}: a role is a list of resources")
    out: list[ResourceBase] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        resource = parse_resource(item, f"{where}[{i}]")
        rid = str(resource.rid)
        if rid in seen:
            raise ConfigError(f"{where}[{i}]: {rid} is declared twice (also {where}[{seen[rid]}])")
        seen[rid] = i
        out.append(resource)
    return tuple(out)


def parse_roles(raw: Any) -> dict[str, tuple[ResourceBase, ...]]:
    """`roles:` of a schema-2 lab: role name → its resources."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("roles: a mapping of role name → list of resources")
    roles: dict[str, tuple[ResourceBase, ...]] = {}
    for name, items in raw.items():
        if not isinstance(name, str) or not name or not set(name) <= _ROLE_NAME_CHARS:
            raise ConfigError(f"roles: {name!r} is not a role name (letters, digits, . _ -)")
        roles[name] = (
            tuple(items) if _already_parsed(items) else parse_resources(items, f"roles.{name}")
        )
    return roles


def _already_parsed(items: Any) -> bool:
    # A LabFile rebuilt from another one (model_copy, model_validate of a dump) hands over
    # resources that are already models.
    return isinstance(items, tuple | list) and all(isinstance(i, ResourceBase) for i in items)


def declared_resources(
    items: Sequence[Any],
) -> tuple[list[tuple[str, ResourceBase]], dict[str, str]]:
    """The resources a discover was asked to read (its `resources` param), each with its
    index, and a one-line problem for each entry that is no valid resource, by its index: an
    agent reads the others and reports these, rather than failing the whole discover."""
    out: list[tuple[str, ResourceBase]] = []
    problems: dict[str, str] = {}
    for i, item in enumerate(items):
        kind = item.get("kind") if isinstance(item, Mapping) else None
        cls = KINDS.get(str(kind))
        if cls is None:
            problems[str(i)] = f"kind: {kind!r} is not a resource kind"
            continue
        try:
            out.append((str(i), validated(cls, item)))
        except ValidationError as exc:
            problems[str(i)] = f"{kind}: {exc.errors()[0]['msg']}"
    return out, problems
