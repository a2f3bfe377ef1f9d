"""Declared resources validated once per content, and dumped to JSON once per model.

A desired-state mission validates the same few resource mappings over and over: the lab's
roles give every host the same ones, and each ensure carries its resource through the policy
(`reaper.actions.validate_params`), the agent (`sim_actions.run_ensure`) and every discover's
`resources` list. Resource models are frozen and hold only immutable values (str, int, bool,
tuples), so one validated instance can stand for every equal mapping.

The key is the mapping marshalled (format 2: no back-references): equal bytes mean equal data
of the same types (True is not 1, a list is not a tuple), so a hit is exactly what validating
again would return; a mapping marshal cannot hold is validated uncached. A failed validation is
never cached: the caller sees the error every time.
"""

from __future__ import annotations

import marshal
from typing import Any, TypeVar

from pydantic import BaseModel

__all__ = ["as_json", "validated"]

_M = TypeVar("_M", bound=BaseModel)
_MAX = 4096  # distinct mappings kept; a lab has a few per role, and a full memo starts over

_models: dict[tuple[type[BaseModel], bytes], BaseModel] = {}
# id(model) → (the model, kept alive so the id is not reused, its JSON dump marshalled)
_dumps: dict[int, tuple[BaseModel, bytes]] = {}


def _key(data: Any) -> bytes | None:
    try:
        return marshal.dumps(data, 2)
    except ValueError:  # a value of a type marshal does not know (a date, an enum member)
        return None


def validated(cls: type[_M], data: Any) -> _M:
    """`cls.model_validate(data)`, memoised by content; only for frozen models whose fields
    are immutable (resources, and the ensure params that hold one)."""
    key = _key(data) if isinstance(data, dict) else None
    if key is None:
        return cls.model_validate(data)
    hit = _models.get((cls, key))
    if hit is not None:
        assert isinstance(hit, cls)
        return hit
    model = cls.model_validate(data)
    if len(_models) >= _MAX:
        _models.clear()
    _models[(cls, key)] = model
    return model


def as_json(model: BaseModel) -> dict[str, Any]:
    """`model.model_dump(mode="json")` of a frozen model, dumped once: each call returns a
    fresh copy, so a caller may change what it gets."""
    hit = _dumps.get(id(model))
    if hit is not None and hit[0] is model:
        data: dict[str, Any] = marshal.loads(hit[1])
        return data
    dumped = model.model_dump(mode="json")
    if len(_dumps) >= _MAX:
        _dumps.clear()
    _dumps[id(model)] = (model, marshal.dumps(dumped, 2))
    return dumped
