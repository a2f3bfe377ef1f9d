"""Scoring the world, not the trace: each simulated host's end state, resource by resource.

At the end of a run the harness reads every host's sim world (`SimRunner.host_state`) and
diffs each declared resource against it, the way a final `discover` would, but without the
planner's help: a planner that only ran check mode, applied one item, or never discovered
leaves resources unconverged here whatever its trace says. The same diff on a fresh world
(built from the host's seeded facts and conditions, as the run began) is the initial diff;
a resource that was `ok` there and is not at the end is a collateral change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from reaper.agents.transports.sim import SimRunner
from reaper.agents.transports.sim_actions import observed_resources
from reaper.agents.transports.sim_world import HostWorld, build_world
from reaper.desired.diff import diff_resource
from reaper.desired.identity import Ref
from reaper.desired.parse import declared_resources
from reaper.desired.progress import addresses
from reaper.errors import ConfigError
from reaper.models import MissionState

__all__ = ["WorldScore", "score_world"]


class WorldScore(BaseModel):
    model_config = ConfigDict(frozen=True)

    resources: int = 0  # declared, over every host
    initially_ok: int = 0  # needed no change at the start
    converged: int = 0  # match the desired state at the end
    collateral: int = 0  # were ok at the start, are not at the end
    unconverged: tuple[str, ...] = ()  # HOST:KIND/NAME, a few, for the report

    @property
    def converged_pct(self) -> float:
        return 100.0 * self.converged / self.resources if self.resources else 100.0


def _ok(
    world: HostWorld,
    peers: Mapping[str, HostWorld],
    host_id: str,
    declared: list[dict[str, Any]],
    facts: Mapping[str, Any],
    addrs: Mapping[str, str],
) -> dict[str, bool]:
    seen, _ = observed_resources(world, peers, declared)
    resources, _ = declared_resources(declared)
    out: dict[str, bool] = {}
    for _, resource in resources:
        rid = resource.rid
        try:
            diff = diff_resource(
                Ref(host_id, rid.kind, rid.name),
                resource,
                seen.get(str(rid)),
                facts=facts,
                addresses=addrs,
            )
        except ConfigError:
            out[str(rid)] = False  # a template that cannot resolve is not converged
            continue
        out[str(rid)] = diff.action == "ok"
    return out


def score_world(runner: SimRunner, final: MissionState) -> WorldScore | None:
    """The end state of a desired-state mission's sim hosts; None for a stage-based one."""
    if not any(h.desired for h in final.hosts.values()):
        return None
    end_worlds: dict[str, HostWorld] = {}
    start_worlds: dict[str, HostWorld] = {}
    for host_id in final.hosts:
        sim = runner.host_state(final.mission_id, host_id)
        if sim is None:
            continue  # never contacted: scored against a fresh world, at its start
        start_worlds[host_id] = build_world(sim.os, sim.facts, sim.world_settings)
        end_worlds[host_id] = sim.world if sim.world is not None else start_worlds[host_id]
    addrs = addresses(final)
    total = initially_ok = converged = collateral = 0
    missing: list[str] = []
    for host_id, host in final.hosts.items():
        if not host.desired:
            continue
        end = end_worlds.get(host_id)
        if end is None:
            total += len(host.desired)
            missing += [f"{host_id}:(never reached)"]
            continue
        at_end = _ok(end, end_worlds, host_id, host.desired, host.facts, addrs)
        at_start = _ok(
            start_worlds[host_id], start_worlds, host_id, host.desired, host.facts, addrs
        )
        for rid, ok in at_end.items():
            total += 1
            converged += ok
            initially_ok += at_start.get(rid, False)
            if at_start.get(rid, False) and not ok:
                collateral += 1
            if not ok:
                missing.append(f"{host_id}:{rid}")
    return WorldScore(
        resources=total,
        initially_ok=initially_ok,
        converged=converged,
        collateral=collateral,
        unconverged=tuple(missing[:10]),
    )
