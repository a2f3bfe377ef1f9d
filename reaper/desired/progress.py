"""Where a desired-state mission stands: each declared resource's status, from the mission
state alone (pure), for the converger, the engine's completion check, the console and the recap.

A resource is

    unknown    not read yet (its host's discover has not reported it)
    ok         observed as declared and read back (or, in check mode, would change)
    settled    ensured as declared, not yet read back: dependents may go on
    todo       differs from its declaration and every prerequisite is settled
    waiting    differs, and some prerequisite is not settled yet, or its change waits for
               the host's restart (a promotion: nothing of the domain works before it)
    failed     its ensure failed, or it still differs after `MAX_ATTEMPTS` ensures
    blocked    a prerequisite failed or is blocked: it will not be tried

Completion means every resource is ok, failed or blocked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Literal, NamedTuple, Protocol

from reaper.desired.base import ResourceBase
from reaper.desired.diff import ResourceDiff, diff_resource, only_password
from reaper.desired.graph import ResourceGraph, build_graph
from reaper.desired.identity import Ref
from reaper.desired.parse import parse_resource
from reaper.models import HostState, MissionState, ResourceState

__all__ = [
    "CONVERGE_COUNTS",
    "MAX_ATTEMPTS",
    "Addresses",
    "Lab",
    "Progress",
    "Status",
    "addresses",
    "converge_counts",
    "host_has_unseen",
    "lab_of",
    "progress",
    "resolve_servers",
    "would_change_counts",
]

Status = Literal["unknown", "ok", "settled", "todo", "waiting", "failed", "blocked"]
MAX_ATTEMPTS = 2  # ensures of one resource before "did not converge" is a failure
_SETTLED = frozenset({"ok", "settled"})
_UNSEEN = ResourceState()


class _Hosts(Protocol):
    def get(self, host_id: str, /) -> HostState | None: ...


_DEAD = frozenset({"failed", "blocked"})
_SEEN_OF = attrgetter("seen")


@dataclass(frozen=True)
class Lab:
    """A mission's declared resources, parsed once, with their graph."""

    resources: Mapping[Ref, ResourceBase]
    graph: ResourceGraph
    by_host: Mapping[str, tuple[Ref, ...]]
    # node → its `KIND/NAME`, the key of HostState.resources (made once, not per lookup)
    keys: dict[Ref, str] = field(default_factory=dict)
    # node → (the ResourceState and facts it was computed from, the diff): see Progress.diff
    diffs: dict[Ref, tuple[ResourceState, object, ResourceDiff]] = field(default_factory=dict)
    # node → its status as last derived, with what it was derived from: see Progress.status
    memo: dict[Ref, _Memo] = field(default_factory=dict)
    # the nodes whose diff reads the host's facts (files rendered from a template)
    templated: frozenset[Ref] = frozenset()


class _Memo(NamedTuple):
    """A status and its inputs: the ResourceState object (never mutated: a fold installs a
    new one), the facts a template read, the mode, and the prerequisites' statuses when the
    status depended on them (None: it did not). A tuple: made on every status derived, and a
    frozen dataclass's __init__ costs several times as much."""

    rs: ResourceState
    facts: object
    check_mode: bool
    before: tuple[tuple[Status, bool, bool], ...] | None
    status: Status
    why: str | None


_CACHE: dict[tuple[str, str], Lab] = {}


def lab_of(state: MissionState) -> Lab:
    """The parsed lab of a mission. Declared resources never change during a mission, so it
    is cached by the mission's identity (id and creation time)."""
    key = (state.mission_id, state.created_at.isoformat())
    hit = _CACHE.get(key)
    if hit is not None and len(hit.by_host) == len(state.hosts):
        return hit
    hosts = [
        (
            h.host_id,
            tuple(parse_resource(d, f"{h.host_id}.desired[{i}]") for i, d in enumerate(h.desired)),
        )
        for h in state.hosts.values()
    ]
    graph = build_graph(hosts)
    resources = {r.rid.on(host): r for host, rs in hosts for r in rs}
    by_host: dict[str, list[Ref]] = {host: [] for host, _ in hosts}
    for node in graph.order:
        by_host[node.host].append(node)
    lab = Lab(
        resources,
        graph,
        {h: tuple(v) for h, v in by_host.items()},
        keys={node: f"{node.kind}/{node.name}" for node in resources},
        # read from the model's __dict__: a getattr of a field another kind lacks goes
        # through pydantic's slow __getattr__
        templated=frozenset(n for n, r in resources.items() if r.__dict__.get("template")),
    )
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = lab
    return lab


class Addresses(Mapping[str, str]):
    """Host id → the address other hosts reach it at (`servers_from`), looked up per host
    when asked: a diff names a host or two, never all of them."""

    def __init__(self, state: MissionState, hosts: _Hosts | None = None) -> None:
        # `hosts`: a view of them newer than `state` (the engine's, mid-batch).
        self._ids = state.hosts
        self._hosts: _Hosts = hosts if hosts is not None else state.hosts

    def __getitem__(self, host_id: str) -> str:
        host = self._hosts.get(host_id)
        addr = None if host is None else host.connection.address or _first_address(host.facts)
        if not addr:
            raise KeyError(host_id)
        return addr

    def __iter__(self) -> Iterator[str]:
        return (h for h in self._ids if h in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def addresses(state: MissionState) -> Addresses:
    return Addresses(state)


def resolve_servers(
    resource: Mapping[str, Any], known: Mapping[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """A dns_client declaration (JSON) with `servers_from` turned into addresses appended to
    `servers`, as an agent takes it (hosts have no lab to look names up in); and the hosts
    named whose address is not known yet (then the declaration is returned unchanged)."""
    named = [str(h) for h in resource.get("servers_from") or ()]
    missing = [h for h in named if h not in known]
    if not named or missing:
        return dict(resource), missing
    servers = [*resource.get("servers", ()), *(known[h] for h in named)]
    return {**resource, "servers": servers, "servers_from": []}, []


def _first_address(facts: Mapping[str, Any]) -> str | None:
    for entry in facts.get("addresses") or ():
        addr = str(entry.get("addr") or "") if isinstance(entry, Mapping) else ""
        # IPv4, and not loopback: the address the other hosts of the lab reach it at.
        if addr and ":" not in addr and not addr.startswith("127."):
            return addr
    return None


@dataclass
class Progress:
    """Each resource's status and, for those that differ, the diff (one pass, memoised)."""

    state: MissionState
    lab: Lab
    statuses: dict[Ref, Status] = field(default_factory=dict)
    diffs: dict[Ref, ResourceDiff] = field(default_factory=dict)
    why: dict[Ref, str] = field(default_factory=dict)
    _addresses: Addresses | None = None
    _check_mode: bool = field(init=False)

    def __post_init__(self) -> None:
        self._check_mode = self.state.check_mode

    def resource_state(self, node: Ref) -> ResourceState:
        host = self.state.hosts.get(node.host)
        found = host.resources.get(self.lab.keys[node]) if host is not None else None
        return found if found is not None else _UNSEEN

    def diff(self, node: Ref) -> ResourceDiff:
        if node not in self.diffs:
            rs = self.resource_state(node)
            host = self.state.hosts[node.host]
            # Across wake-ups: a resource's diff changes only when what was observed of it
            # or its host's facts (templates) change: a read-back that finds what the ensure
            # reported (a new ResourceState, equal `observed`) keeps the diff. A dns_client
            # naming other hosts also reads their addresses: never cached.
            facts = self._facts(node)
            cached = self.lab.diffs.get(node)
            if (
                cached is not None
                and cached[1] is facts
                and (cached[0] is rs or cached[0].observed == rs.observed)
            ):
                self.lab.diffs[node] = (rs, facts, cached[2])
                self.diffs[node] = cached[2]
                return cached[2]
            if self._addresses is None:
                self._addresses = addresses(self.state)
            self.diffs[node] = diff_resource(
                node, self.lab.resources[node], rs.observed, facts=host.facts,
                addresses=self._addresses,
            )  # fmt: skip
            if node.kind != "dns_client":
                self.lab.diffs[node] = (rs, facts, self.diffs[node])
        return self.diffs[node]

    def status(self, node: Ref) -> Status:
        """Memoised within this Progress, and across wake-ups in the Lab: a status is derived
        again only when its resource's state, its facts or a prerequisite's status changed,
        so a wake-up costs a few lookups per resource it looks at, not a diff each."""
        statuses = self.statuses
        found = statuses.get(node)
        if found is not None:
            return found
        # resource_state and _facts, inlined: this runs for every resource a wake-up looks at
        lab = self.lab
        host = self.state.hosts.get(node.host)
        rs = host.resources.get(lab.keys[node]) if host is not None else None
        if rs is None:
            rs = _UNSEEN
        facts = host.facts if host is not None and node in lab.templated else None
        check_mode = self._check_mode
        memo = lab.memo.get(node)
        if (
            memo is not None
            and memo.rs is rs
            and memo.facts is facts
            and memo.check_mode is check_mode
            and memo.before is None
        ):
            result, why = memo.status, memo.why  # the common case: no prerequisite to ask
            if why is not None:
                self.why[node] = why
            statuses[node] = result
            return result
        statuses[node] = "waiting"  # a guard: the graph has no cycles, but be finite
        if (
            memo is not None
            and memo.rs is rs
            and memo.facts is facts
            and memo.check_mode is check_mode
            and memo.before == self._before(node)
        ):
            result, why = memo.status, memo.why
        else:
            result, depends = self._status(node, rs)
            why = self.why.get(node)
            # A dns_client's diff reads other hosts' addresses: never memoised (as its diff).
            if node.kind != "dns_client":
                before = self._before(node) if depends else None
                self.lab.memo[node] = _Memo(rs, facts, check_mode, before, result, why)
        if why is not None:
            self.why[node] = why
        self.statuses[node] = result
        return result

    def host_statuses(self, host_id: str) -> Iterator[tuple[Ref, Status]]:
        """`(node, status(node))` for each of the host's resources in graph order, lazily: a
        caller that stops at the first `todo` derives no more."""
        return ((node, self.status(node)) for node in self.host_nodes(host_id))

    def _facts(self, node: Ref) -> object:
        """What a status or diff read of the host's facts: only a file rendered from a
        template reads them (None: nothing)."""
        if node not in self.lab.templated:
            return None
        host = self.state.hosts.get(node.host)
        return None if host is None else host.facts

    def _before(self, node: Ref) -> tuple[tuple[Status, bool, bool], ...]:
        """What a status reads of its prerequisites (a memo is good while this is equal)."""
        check = self._check_mode
        return tuple(
            (self.status(b), self.resource_state(b).reboot_required, check and self.would_change(b))
            for b in self.lab.graph.prerequisites(node)
        )

    def _status(self, node: Ref, rs: ResourceState) -> tuple[Status, bool]:
        """The status derived afresh, and whether it depends on the prerequisites'."""
        if rs.outcome == "failed":
            self.why[node] = rs.error or "failed"
            return "failed", False
        if rs.seen:
            if rs.outcome == "would_change" and self.state.check_mode:
                return "ok", False
            diff = self.diff(node)
            # An `update_password: always` account differs by its password until an ensure
            # of this mission set it (it cannot be read back).
            if diff.action == "ok" or (only_password(diff) and rs.outcome == "changed"):
                return ("ok" if rs.verified else "settled"), False
        return self._after_prerequisites(node, rs), True

    def _after_prerequisites(self, node: Ref, rs: ResourceState) -> Status:
        for before in self.lab.graph.prerequisites(node):
            if self.status(before) in _DEAD:
                self.why[node] = f"blocked by {before} ({self.status(before)})"
                return "blocked"
        if not rs.seen:
            return "unknown"
        if rs.attempts >= MAX_ATTEMPTS:
            self.why[node] = f"still differs after {rs.attempts} ensures: {self.diff(node)}"
            return "failed"
        if self._check_mode:
            # Its own check would run against a host without the change it needs (a service
            # before its package is installed) and fail: it would change, after that one.
            for before in self.lab.graph.prerequisites(node):
                if self.would_change(before):
                    self.why[node] = f"would change after {before} (checked once that is done)"
                    return "ok"
        for before in self.lab.graph.prerequisites(node):
            if self.status(before) not in _SETTLED:
                self.why[node] = f"waiting for {before}"
                return "waiting"
            if self.resource_state(before).reboot_required:
                self.why[node] = f"waiting for {before} (a restart of {before.host})"
                return "waiting"
        return "todo"

    def would_change(self, node: Ref) -> bool:
        """In check mode, whether a run would change `node`: its check said so, or it differs
        and needs a prerequisite's change first (so it was not checked)."""
        if not self._check_mode or self.status(node) != "ok":
            return False
        rs = self.resource_state(node)
        return rs.outcome == "would_change" or (rs.seen and self.diff(node).action != "ok")

    def host_nodes(self, host_id: str) -> tuple[Ref, ...]:
        return self.lab.by_host.get(host_id, ())

    def tally(self, host_id: str | None = None) -> Counter[Status]:
        nodes = self.host_nodes(host_id) if host_id is not None else self.lab.graph.order
        return Counter(self.status(n) for n in nodes)

    def finished(self) -> bool:
        """Every resource ok, failed or blocked: nothing is left to converge."""
        return all(self.status(n) in ("ok", "failed", "blocked") for n in self.lab.graph.order)

    def __iter__(self) -> Iterator[tuple[Ref, Status]]:
        return ((n, self.status(n)) for n in self.lab.graph.order)


# What a desired-state recap counts per host (`converge_counts`).
CONVERGE_COUNTS = ("added", "changed", "ok", "failed", "blocked")


def converge_counts(p: Progress, host: HostState) -> dict[str, int]:
    """Per host: resources added and changed by this mission, already ok, failed, blocked
    (added and changed are ok too: `ok` counts those that needed nothing). In check mode,
    added and changed count what a run would add (or remove) and change."""
    counts = dict.fromkeys(CONVERGE_COUNTS, 0)
    for node in p.host_nodes(host.host_id):
        status = p.status(node)
        rs = host.resources.get(str(node.rid))
        if status in ("failed", "blocked"):
            counts[status] += 1
        elif p.would_change(node):  # check mode: what a run would add or change
            counts["changed" if p.diff(node).action == "change" else "added"] += 1
        elif rs is not None and rs.change in ("added", "removed"):
            counts["added"] += 1
        elif rs is not None and rs.change == "changed":
            counts["changed"] += 1
        elif status == "ok":
            counts["ok"] += 1
    return counts


def would_change_counts(p: Progress) -> tuple[int, int]:
    """In check mode, the resources a run would change, and how many of those were not
    checked (they need a prerequisite's change first)."""
    would = [n for n in p.lab.graph.order if p.would_change(n)]
    unchecked = sum(1 for n in would if p.resource_state(n).outcome != "would_change")
    return len(would), unchecked


def progress(state: MissionState) -> Progress:
    return Progress(state, lab_of(state))


def host_has_unseen(host: HostState) -> bool:
    # map/attrgetter: the loop runs in C (the converger asks this of every host it plans)
    return not all(map(_SEEN_OF, host.resources.values()))
