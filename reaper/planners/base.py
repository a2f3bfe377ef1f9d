"""The planner seam: what the engine asks, what a planner answers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llm.base import LLMClient
from llm.errors import LLMError
from reaper.models import MissionState, PlannedTask, ResultEvent, trusted

__all__ = ["MissionPlanner", "Plan", "close_planner", "planned_task", "planner_clients"]

log = logging.getLogger(__name__)

_PLANNED_SET = frozenset({"host_id", "action", "reason"})  # as the constructor records them


def planned_task(
    host_id: str, action: str, reason: str, params: dict[str, Any] | None = None
) -> PlannedTask:
    """`PlannedTask(host_id=..., action=..., params=..., reason=...)` without re-validating
    what the rules built themselves (one per task on the engine's path; the policy checks
    every proposal, params included, anyway)."""
    values = {
        "host_id": host_id,
        "action": action,
        "params": {} if params is None else params,
        "reason": reason,
        "delay_s": 0.0,
    }
    fields_set = set(_PLANNED_SET)
    if params is not None:
        fields_set.add("params")
    return trusted(PlannedTask, values, fields_set)


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


def planner_clients(planner: MissionPlanner) -> list[LLMClient]:
    """The LLM clients a planner holds: an LLM planner's, a hybrid's LLM planner's."""
    found: list[LLMClient] = []
    for holder in (planner, getattr(planner, "llm", None)):
        client = getattr(holder, "client", None)
        if isinstance(client, LLMClient) and client not in found:
            found.append(client)
    return found


async def close_planner(planner: MissionPlanner) -> None:
    """Close what a mission's planner opened (HTTP pools, a real-time thread, a llama-server
    it started): one client failing to close is logged and hides nothing else."""
    for client in planner_clients(planner):
        try:
            await client.aclose()
        except (LLMError, OSError, RuntimeError) as exc:  # the mission is over: report, go on
            log.warning("closing %s/%s failed: %s", client.provider, client.model, exc)
