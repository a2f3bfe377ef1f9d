"""Pydantic validation errors as one line a person can act on: where (`hosts[2].os`), what, and
for a key the model does not know, the key it most likely meant (`did you mean 'address'?`,
difflib), found by walking the model along the error's location."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["close_key", "explain", "loc_path"]


def loc_path(loc: tuple[int | str, ...]) -> str:
    """`("hosts", 2, "os")` → `hosts[2].os`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation can hold (through Optional, unions, lists, dicts, tuples)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose fields are expected at `loc` (list indexes and dict keys skipped)."""
    current: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for m in current:
            field = m.model_fields.get(part)
            if field is not None:
                nxt += _models_in(field.annotation)
        if nxt:
            current = nxt
        # else: a dict key, a union tag or a type name in the location: stay on the model
    return current[0] if current else None


def close_key(key: str, valid: typing.Iterable[str]) -> str | None:
    """The valid key closest to `key`, if one is close enough."""
    matches = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _extra(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1]) if loc else "?"
    target = None if model is None else _model_at(model, loc[:-1])
    if target is None:
        return f"unknown key {key!r}"
    valid = sorted(
        {(f.alias or name) for name, f in target.model_fields.items() if not name.startswith("_")}
    )
    hint = close_key(key, valid)
    if hint is not None:
        return f"unknown key {key!r}: did you mean {hint!r}?"
    return f"unknown key {key!r} (valid: {', '.join(valid)})"


def explain(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line for a validation error: the first problem with its path; an unknown key (an
    `extra_forbidden` error) names the closest valid key of `model` at that place."""
    errors = exc.errors()
    # Unknown keys first: a misspelt key often causes a "missing" error beside it.
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        path = loc_path(loc[:-1])
        msg = _extra(model, loc)
    else:
        path = loc_path(loc)
        msg = str(err["msg"]).removeprefix("Value error, ")
    more = len(errors) - 1
    return f"{path + ': ' if path else ''}{msg}" + (f" (+{more} more)" if more else "")
