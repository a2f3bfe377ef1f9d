"""Alerts: a host locked, a mission stalled, a worker stopped heart-beating.

Each alert is a value (`Alert`); `raise_alert` turns it into a WARNING log record (and a
metric, when given one); `render_banners` makes console banners of a list of them for
`reaper status`. The engine process raises the first two from its listener as they are
committed and the third when a heartbeat goes stale; `reaper status` derives all three from
the store and the process registry, so a banner shows whoever is looking.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from reaper.models import EventKind, EventRecord, MissionState, MissionStatus
from reaper.services.registry import DEAD_AFTER_INTERVALS, ProcessInfo

if TYPE_CHECKING:
    from reaper.services.metrics import Metrics

__all__ = [
    "Alert",
    "AlertKind",
    "alerts_from_events",
    "alerts_from_processes",
    "alerts_from_state",
    "raise_alert",
    "render_banners",
]

log = logging.getLogger(__name__)

AlertKind = Literal["host_locked", "mission_stalled", "worker_silent"]


class Alert(BaseModel):
    kind: AlertKind
    subject: str  # "mission/host", mission id, or process id
    message: str


def alerts_from_events(mission_id: str, events: Sequence[EventRecord]) -> list[Alert]:
    """Alerts in one engine commit: host.locked, status.changed to stalled."""
    out: list[Alert] = []
    for e in events:
        p = e.payload
        if e.kind is EventKind.HOST_LOCKED:
            host = str(p.get("host_id", "?"))
            out.append(
                Alert(
                    kind="host_locked",
                    subject=f"{mission_id}/{host}",
                    message=f"host {host} of mission {mission_id} locked: {p.get('reason', '')}",
                )
            )
        elif e.kind is EventKind.STATUS_CHANGED and p.get("to") == MissionStatus.STALLED.value:
            out.append(
                Alert(
                    kind="mission_stalled",
                    subject=mission_id,
                    message=f"mission {mission_id} stalled: {p.get('reason', '')}",
                )
            )
    return out


def alerts_from_state(state: MissionState) -> list[Alert]:
    """Standing alerts of a stored mission (for `reaper status`)."""
    out = [
        Alert(
            kind="host_locked",
            subject=f"{state.mission_id}/{h.host_id}",
            message=f"host {h.host_id} of mission {state.mission_id} locked: {h.lock_reason}",
        )
        for h in state.hosts.values()
        if h.locked
    ]
    if state.status is MissionStatus.STALLED:
        out.append(
            Alert(
                kind="mission_stalled",
                subject=state.mission_id,
                message=f"mission {state.mission_id} stalled: {state.status_reason}",
            )
        )
    return out


def alerts_from_processes(processes: Iterable[ProcessInfo], now: datetime) -> list[Alert]:
    """A worker silent for over DEAD_AFTER_INTERVALS heartbeat intervals."""
    return [
        Alert(
            kind="worker_silent",
            subject=p.process_id,
            message=(
                f"worker {p.process_id} ({p.agent_type}, pid {p.pid} on {p.host}) "
                f"stopped heart-beating {p.silent_for(now):.0f}s ago "
                f"(interval {p.interval_s:g}s, dead after {DEAD_AFTER_INTERVALS})"
            ),
        )
        for p in processes
        if p.role == "worker" and not p.alive(now)
    ]


def raise_alert(alert: Alert, metrics: Metrics | None = None) -> None:
    log.warning("ALERT %s: %s", alert.kind, alert.message, extra={"alert": alert.kind})
    if metrics is not None:
        metrics.alert(alert.kind)


_STYLE = {"host_locked": "red", "mission_stalled": "yellow", "worker_silent": "red"}
_TITLE = {
    "host_locked": "host locked",
    "mission_stalled": "mission stalled",
    "worker_silent": "worker silent",
}


def render_banners(alerts: Sequence[Alert], *, limit: int = 10) -> RenderableType:
    lines = [
        Text.assemble((f"{_TITLE[a.kind]}: ", f"bold {_STYLE[a.kind]}"), a.message)
        for a in alerts[:limit]
    ]
    if len(alerts) > limit:
        lines.append(Text(f"… and {len(alerts) - limit} more", style="dim"))
    return Panel(Group(*lines), title=f"{len(alerts)} alert(s)", border_style="red")
