"""A lab's desired state resolved per host: which resources each host must have (from its
roles, or for a schema-1 lab from the shipped profile of its OS), checked against the host's
OS, and the dependency graph over all of them.

`reaper.lab` calls `resolve_desired` when a lab loads, so every error here is a load error:

    hosts[1].roles[0] (srv-01): unknown role 'membr' (did you mean 'member'?); defined roles: …
    hosts[3] (db-01, linux): roles.dc[0] windows_feature/AD-Domain-Services: windows_feature is
        not available on linux (runs on: windows)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from reaper.desired.base import ResourceBase
from reaper.desired.graph import ResourceGraph, build_graph
from reaper.desired.identity import Ref, ResourceId
from reaper.desired.kinds import CASELESS_KINDS, os_problem
from reaper.desired.parse import did_you_mean
from reaper.desired.profiles import profile_for_goal
from reaper.errors import ConfigError
from reaper.models import Stage

__all__ = ["DesiredState", "HostDesired", "HostSpec", "resolve_desired"]


class HostSpec(NamedTuple):
    """What the resolver needs of a lab host (the lab's `LabHost` is not imported here:
    `reaper.lab` imports this package)."""

    host_id: str
    os: str
    roles: tuple[str, ...] = ()  # named by the lab: each must be defined
    groups: tuple[str, ...] = ()  # inventory groups: those naming a role add it


@dataclass(frozen=True, slots=True)
class HostDesired:
    host_id: str
    os: str
    roles: tuple[str, ...]  # the roles applied, in order (`linux-baseline` for a profile)
    resources: tuple[ResourceBase, ...]
    by_id: Mapping[ResourceId, ResourceBase] = field(default_factory=dict, repr=False)

    def get(self, rid: ResourceId) -> ResourceBase | None:
        return self.by_id.get(rid)


@dataclass(frozen=True, slots=True)
class DesiredState:
    """Every host's resources and the graph over them. `origins` says where each resource
    was declared (`roles.web[2]`, `profile linux-baseline[4]`)."""

    hosts: Mapping[str, HostDesired]
    graph: ResourceGraph
    origins: Mapping[Ref, str]

    def resources(self, host_id: str) -> tuple[ResourceBase, ...]:
        return self.hosts[host_id].resources

    def resource(self, ref: Ref) -> ResourceBase:
        found = self.hosts[ref.host].get(ref.rid)
        if found is None:
            raise KeyError(str(ref))
        return found

    def __iter__(self) -> Iterator[tuple[Ref, ResourceBase]]:
        """(ref, resource) in graph order."""
        for ref in self.graph.order:
            yield ref, self.resource(ref)


def _roles_of(
    index: int, host: HostSpec, roles: Mapping[str, Sequence[ResourceBase]]
) -> tuple[str, ...]:
    chosen: list[str] = []
    for j, name in enumerate(host.roles):
        if name not in roles:
            defined = ", ".join(roles) or "none (the lab has no `roles:`)"
            raise ConfigError(
                f"hosts[{index}].roles[{j}] ({host.host_id}): unknown role {name!r}"
                f"{did_you_mean(name, list(roles))}; defined roles: {defined}"
            )
        if name not in chosen:
            chosen.append(name)
    chosen.extend(g for g in host.groups if g in roles and g not in chosen)
    return tuple(chosen)


class _Memo:
    """Per-object facts of the roles' resources, which every host of a role shares: computed
    once per resource (and OS), not once per host, so a 10,000-host lab loads quickly."""

    def __init__(self) -> None:
        self.rids: dict[int, ResourceId] = {}
        self.problems: dict[tuple[int, str], str | None] = {}
        self.origins: dict[tuple[str, int], str] = {}

    def rid(self, resource: ResourceBase) -> ResourceId:
        found = self.rids.get(id(resource))
        if found is None:
            found = self.rids[id(resource)] = resource.rid
        return found

    def problem(self, resource: ResourceBase, os: str) -> str | None:
        key = (id(resource), os)
        if key not in self.problems:
            self.problems[key] = os_problem(resource, os)
        return self.problems[key]

    def origin(self, where: str, i: int) -> str:
        found = self.origins.get((where, i))
        if found is None:
            found = self.origins[(where, i)] = f"{where}[{i}]"
        return found


def _host_resources(
    index: int,
    host: HostSpec,
    applied: Sequence[tuple[str, Sequence[ResourceBase]]],
    origins: dict[Ref, str],
    memo: _Memo,
) -> dict[ResourceId, ResourceBase]:
    out: dict[ResourceId, ResourceBase] = {}
    folded: dict[tuple[str, str], ResourceId] = {}
    for where, resources in applied:
        for i, resource in enumerate(resources):
            rid = memo.rid(resource)
            origin = memo.origin(where, i)
            problem = memo.problem(resource, host.os)
            if problem is not None:
                raise ConfigError(
                    f"hosts[{index}] ({host.host_id}, {host.os}): {origin} {rid}: {problem}"
                )
            ref = Ref(host.host_id, *rid)
            earlier = out.get(rid)
            if earlier is None:
                if rid.kind in CASELESS_KINDS:
                    _one_spelling(index, host, rid, origin, folded, origins)
                out[rid] = resource
                origins[ref] = origin
            elif earlier != resource:
                raise ConfigError(
                    f"hosts[{index}] ({host.host_id}): {rid} is declared differently by "
                    f"{origins[ref]} and {origin}; declare it in one role"
                )
    return out


def _one_spelling(
    index: int,
    host: HostSpec,
    rid: ResourceId,
    origin: str,
    folded: dict[tuple[str, str], ResourceId],
    origins: Mapping[Ref, str],
) -> None:
    other = folded.setdefault((rid.kind, rid.name.lower()), rid)
    if other != rid:
        raise ConfigError(
            f"hosts[{index}] ({host.host_id}): {rid} ({origin}) and {other} "
            f"({origins[Ref(host.host_id, *other)]}) are one resource: {rid.kind} names "
            "ignore case; spell it one way"
        )


def resolve_desired(
    hosts: Sequence[HostSpec],
    roles: Mapping[str, Sequence[ResourceBase]] | None,
    *,
    goal: Stage = Stage.BASELINED,
) -> DesiredState:
    """Each host's resources and their graph. `roles` None: a schema-1 lab, where `goal`
    picks the shipped profile of each host's OS (`reaper.desired.profiles`)."""
    origins: dict[Ref, str] = {}
    resolved: dict[str, HostDesired] = {}
    memo = _Memo()
    for index, host in enumerate(hosts):
        if host.host_id in resolved:
            raise ConfigError(f"hosts[{index}]: duplicate host_id {host.host_id!r}")
        if roles is None:
            name = f"{host.os}-baseline"
            applied: list[tuple[str, Sequence[ResourceBase]]] = [
                (f"profile {name}", profile_for_goal(host.os, goal))
            ]
            names: tuple[str, ...] = (name,) if applied[0][1] else ()
        else:
            names = _roles_of(index, host, roles)
            applied = [(f"roles.{n}", roles[n]) for n in names]
        by_id = _host_resources(index, host, applied, origins, memo)
        resolved[host.host_id] = HostDesired(
            host.host_id, host.os, names, tuple(by_id.values()), by_id
        )
    graph = build_graph([(h.host_id, h.resources) for h in resolved.values()], origins=origins)
    return DesiredState(resolved, graph, origins)
