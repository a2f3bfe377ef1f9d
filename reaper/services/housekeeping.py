"""One housekeeping round over a backend: what finished missions leave behind.

For missions finished (completed, failed) longer than `grace_s` ago (late duplicate results
of a mission that just finished are still absorbed by its engine meanwhile), the queue forgets
their acked tasks (`prune`) and the bus drops their messages (`retire`). (Dead processes need
nothing here: the registries drop entries silent for 15 minutes whenever they are listed.)
Every step is idempotent: engines run rounds without coordinating (`reaper engine`'s janitor),
and `reaper housekeep` runs one by hand or from cron where no engine service runs (a SQLite
setup driven by `reaper run`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from reaper.infra.base import Backend

__all__ = ["GRACE_S", "HousekeepingReport", "housekeep"]

GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class HousekeepingReport:
    finished: int  # finished missions past the grace period
    pruned: int  # queue entries forgotten
    retired: int  # bus streams or rows dropped

    def summary(self) -> str:
        return (
            f"{self.finished} finished missions, {self.pruned} queue entries pruned, "
            f"{self.retired} bus entries retired"
        )


async def housekeep(
    backend: Backend,
    *,
    now: datetime,
    grace_s: float = GRACE_S,
    only: Collection[str] | None = None,
) -> HousekeepingReport:
    """One round (see the module docstring); `only` limits it to those missions. A backend
    failure raises BackendError: what was done stays done, the next round does the rest."""
    cutoff = now - timedelta(seconds=grace_s)
    finished = [
        m.mission_id
        for m in await backend.store.list_missions()
        if m.status.terminal and m.updated_at <= cutoff and (only is None or m.mission_id in only)
    ]
    pruned = retired = 0
    if finished:
        pruned = await backend.queue.prune(finished)
        retired = await backend.bus.retire(finished)
    return HousekeepingReport(len(finished), pruned, retired)
