"""Follow a mission that engine processes run: `reaper run --submit-only LAB` (the CLI)
creates the mission and follows it here, without an engine of its own, so it never
races the `reaper engine` processes for the mission's lease.

The engine runs in another process, which cannot notify this one through every backend, so
the event log is re-read with a backoff (50 ms, up to 0.5 s while nothing happens): the same
exception to "no polling" that SQLite's cross-process wait documents.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from reaper.cli.console import format_event
from reaper.errors import MissionNotFoundError
from reaper.infra.base import Backend
from reaper.models import EventKind, EventRecord, MissionState

if TYPE_CHECKING:
    from reaper.cli.context import Cli

__all__ = ["follow_mission"]

_MIN_S = 0.05
_MAX_S = 0.5


async def follow_mission(
    cli: Cli, backend: Backend, mission_id: str, *, stop: asyncio.Event | None = None
) -> MissionState:
    """Print the mission's events as they are committed until it ends (or `stop` is set);
    returns the last state read. Events are printed unless the CLI is in JSON mode."""
    quiet = bool(getattr(cli.args, "json", False))
    seq = 0
    delay = _MIN_S

    def show(events: list[EventRecord]) -> int:
        for event in events:
            if not quiet and event.kind is not EventKind.TASK_PLANNED:
                cli.err.print(format_event(event))
        return max((e.seq for e in events), default=seq)

    while True:
        events = await backend.store.events(mission_id, after_seq=seq)
        seq = show(events)
        state = await backend.store.load(mission_id)
        if state is None:
            raise MissionNotFoundError(mission_id)
        if state.status.terminal or (stop is not None and stop.is_set()):
            # The engine may have committed its last events between the two reads: the
            # state is newer than the events printed, so print what came with it.
            show(await backend.store.events(mission_id, after_seq=seq))
            return state
        delay = _MIN_S if events else min(delay * 2, _MAX_S)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: see MemoryEventBus.receive
                    await stop.wait()
