"""gc_policy: live state frozen after each commit, cyclic garbage collected on schedule."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from reaper import gc_policy


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def clock() -> Iterator[list[float]]:
    now = [0.0]
    gc.collect()
    yield now
    gc_policy.disable()


def test_off_unless_enabled(clock: list[float]) -> None:
    before = gc.get_freeze_count()
    gc_policy.settle()
    assert gc.get_freeze_count() == before


def test_commit_freezes_and_the_full_collection_comes_on_schedule(clock: list[float]) -> None:
    gc_policy.enable(full_every_s=60.0, clock=lambda: clock[0])
    garbage = _cycle()  # unreachable, but only the cycle collector can free it
    gc_policy.settle()
    assert gc.get_freeze_count() > 0
    gc.collect()
    assert garbage() is not None  # frozen: no collection sees it
    clock[0] = 59.0
    gc_policy.settle()
    assert garbage() is not None
    clock[0] = 60.0
    gc_policy.settle()  # the full collection: unfreeze, collect, freeze again
    assert garbage() is None
    assert gc.get_freeze_count() > 0


def test_objects_alive_when_frozen_are_still_freed_by_reference_counting(
    clock: list[float],
) -> None:
    gc_policy.enable(clock=lambda: clock[0])
    node = _Node()
    ref = weakref.ref(node)
    gc_policy.settle()
    del node
    assert ref() is None
