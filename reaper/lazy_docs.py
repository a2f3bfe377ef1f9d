"""A read-only mapping of JSON documents, each validated into its model on first access.

A worker loads a whole mission's host connections in one store call but runs tasks on only
some of those hosts (the others' tasks go to other workers): validating every document up
front cost each worker process ~25 µs per host of the mission, per load, which at 1,000 hosts
and 4 processes came to more than the tasks themselves. A document that fails validation
raises when it is read, as an eager load would have raised on the first call.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from pydantic import BaseModel

__all__ = ["LazyDocs"]

M = TypeVar("M", bound=BaseModel)


class LazyDocs(Mapping[str, M], Generic[M]):
    def __init__(self, model: type[M], docs: dict[str, str]) -> None:
        self._model = model
        self._docs = docs
        self._parsed: dict[str, M] = {}

    def __getitem__(self, key: str) -> M:
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = self._parsed[key] = self._model.model_validate_json(self._docs[key])
        return parsed

    def __contains__(self, key: object) -> bool:
        return key in self._docs

    def __iter__(self) -> Iterator[str]:
        return iter(self._docs)

    def __len__(self) -> int:
        return len(self._docs)
