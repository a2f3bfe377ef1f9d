"""The planner seam: what the engine asks, what a planner answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reaper.models import MissionState, PlannedTask, ResultEvent

__all__ = ["MissionPlanner", "Plan"]


@dataclass(slots=True)
class Plan:
    """A planner's answer for one step.

    `decision` goes to the event log as the `planner.decision` entry: planner name, model,
    prompt hash, usage, cost, repair and fallback details — whatever explains this step.
    `halt` stops planning for the mission (e.g. an LLM budget ran out) with `note` as reason.
    """

    tasks: list[PlannedTask] = field(default_factory=list)
    note: str = ""
    decision: dict[str, Any] = field(default_factory=dict)
    halt: bool = False


class MissionPlanner(Protocol):
    """The seed's two questions, async, and `next_tasks` takes every result since last time."""

    name: str

    async def initial_tasks(self, state: MissionState) -> Plan: ...

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan: ...
