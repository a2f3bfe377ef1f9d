"""The cycle collector in engine and worker processes: kept off their long-lived objects.

A mission's state is many small long-lived objects, replaced as the mission moves on (a new
task record, a new host model per result). Each replacement survives, so every young
collection scanned thousands of them again, and every twentieth many more: at 10,000 hosts,
pauses of 200-270 ms, which set the p99 result latency (240 ms, against 80 ms without them;
a lower threshold gave 12 ms pauses, several a second, at a higher total cost).

A worker process is the same on a smaller scale: its per-mission caches (connections, sim
host states) trickle through the generations (frozen after each batch, it made half as many
middle-generation collections of ~6 ms each in `reaper bench`).

With the policy on, what is alive is frozen after each unit of work (`settle`: an engine's
commit, a worker's batch; `gc.freeze()` is O(1)). Frozen objects are still freed by reference
counting the moment they are replaced; only cyclic garbage waits, for the full collection
run every `full_every_s` (one pause of that length every few minutes, in place of several per
second). The CLI turns it on in its processes; elsewhere (a library user, the tests) `settle`
does nothing unless `enable` was called.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["disable", "enable", "settle"]


@dataclass(slots=True)
class _Policy:
    enabled: bool = False
    full_every_s: float = 300.0
    last_full: float = 0.0
    clock: Callable[[], float] = time.monotonic


_policy = _Policy()


def enable(*, full_every_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
    _policy.enabled = True
    _policy.full_every_s = full_every_s
    _policy.clock = clock
    _policy.last_full = clock()


def disable() -> None:
    """Turn the policy off and hand everything frozen back to the collector."""
    _policy.enabled = False
    gc.unfreeze()


def settle() -> None:
    """A unit of work is done (an engine's commit, a worker's batch)."""
    if not _policy.enabled:
        return
    now = _policy.clock()
    if now - _policy.last_full >= _policy.full_every_s:
        _policy.last_full = now
        gc.unfreeze()
        gc.collect()
    gc.freeze()
