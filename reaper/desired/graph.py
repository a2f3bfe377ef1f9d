"""The dependency graph of a lab's resources, within and across hosts.

Nodes are `Ref`s (`HOST:KIND/NAME`). An edge says one resource runs after another, either
because the lab said so (`after:`) or because the kinds imply it:

    service/X            after package/X on its host
    service/X            after every file that notifies it (the file runs first)
    domain_membership/D  after ad_domain/D on whichever host declares it, and after its
                         host's dns_client (a member must resolve the domain before joining)
    ad_user, ad_group    after their domain's ad_domain (`domain:`, else their host's)
    ad_user              after the ad_groups it belongs to, on its host
    ad_domain            after windows_feature/AD-Domain-Services on its host
    user                 after the groups it belongs to, on its host
    file, directory      after their parent directory and their owner user / group, on its host
    package              after every package_repository on its host

A reference to nothing (a dangling `after`, a `notify` of an undeclared service, a
`servers_from` naming no lab host) and a cycle are load-time errors; a cycle's message walks
it: `web-01:service/nginx -> db-01:service/postgresql -> web-01:service/nginx` (each arrow
reads "runs after").

Order is deterministic: among the resources whose prerequisites are done, the one declared
first (hosts in lab order, resources in role order) comes first.
"""

from __future__ import annotations

import graphlib
import heapq
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from reaper.desired.base import ResourceBase
from reaper.desired.identity import Ref, ResourceId, parse_ref
from reaper.desired.parse import did_you_mean
from reaper.errors import ConfigError

__all__ = ["Edge", "ResourceGraph", "build_graph"]


@dataclass(frozen=True, slots=True)
class Edge:
    """`node` runs after `before`; `why` says which rule or declaration made the edge."""

    node: Ref
    before: Ref
    why: str


class ResourceGraph:
    """Immutable once built (by `build_graph`); every query is deterministic."""

    def __init__(self, nodes: Sequence[Ref], edges: Iterable[Edge]) -> None:
        self.nodes: tuple[Ref, ...] = tuple(nodes)
        index = self._index = {node: i for i, node in enumerate(self.nodes)}
        # Most resources wait for none or one other: only the few with several pay for the
        # de-duplication (the first reason wins) and the sort by declaration.
        incoming: dict[Ref, list[Edge]] = {}
        for edge in edges:
            incoming.setdefault(edge.node, []).append(edge)
        none: tuple[Edge, ...] = ()
        self._in: dict[Ref, tuple[Edge, ...]] = dict.fromkeys(self.nodes, none)
        for node, found in incoming.items():
            if len(found) > 1:
                unique = {e.before: e for e in reversed(found)}  # the first reason wins
                found = sorted(unique.values(), key=lambda e: index[e.before])
            self._in[node] = tuple(found)
        # Asked for on every status derived (reaper.desired.progress): made once.
        self._before: dict[Ref, tuple[Ref, ...]] = {
            node: tuple(edge.before for edge in edges) for node, edges in self._in.items()
        }
        out: dict[Ref, list[Ref]] = {}
        for node in self.nodes:
            for edge in self._in[node]:
                out.setdefault(edge.before, []).append(node)
        self._out: dict[Ref, tuple[Ref, ...]] = dict.fromkeys(self.nodes, ())
        self._out.update((node, tuple(after)) for node, after in out.items())

    def __contains__(self, node: object) -> bool:
        return node in self._index

    def __len__(self) -> int:
        return len(self.nodes)

    def edges(self, node: Ref) -> tuple[Edge, ...]:
        """The edges into `node`: what it runs after, and why."""
        return self._in[node]

    def prerequisites(self, node: Ref) -> tuple[Ref, ...]:
        return self._before[node]

    def dependents(self, node: Ref) -> tuple[Ref, ...]:
        """The resources that run directly after `node`."""
        return self._out[node]

    def downstream(self, node: Ref) -> tuple[Ref, ...]:
        """Everything that (transitively) waits for `node`, in graph order: what a failure of
        `node` blocks."""
        seen: set[Ref] = set()
        todo = list(self._out[node])
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self._out[current])
        return tuple(n for n in self.order if n in seen)

    def blocked_by(self, node: Ref, done: Collection[Ref]) -> tuple[Ref, ...]:
        """The direct prerequisites of `node` not yet in `done` (empty: it may run)."""
        return tuple(edge.before for edge in self._in[node] if edge.before not in done)

    def unblocked_by(self, node: Ref, done: Collection[Ref]) -> tuple[Ref, ...]:
        """The dependents of `node` that `node` finishing makes ready (all their prerequisites
        in `done`, which includes `node`): the converger's per-result step, O(its degree)
        rather than a scan of the lab like `ready`."""
        return tuple(
            after
            for after in self._out[node]
            if after not in done and all(e.before in done for e in self._in[after])
        )

    def ready(self, done: Collection[Ref], *, busy: Collection[Ref] = ()) -> tuple[Ref, ...]:
        """Resources not done nor busy whose prerequisites are all done, in graph order
        (a scan of the whole graph: for the first step and for `reaper plan`)."""
        return tuple(
            node
            for node in self.order
            if node not in done
            and node not in busy
            and all(edge.before in done for edge in self._in[node])
        )

    @cached_property
    def order(self) -> tuple[Ref, ...]:
        """A topological order: among ready resources, the first declared goes first."""
        waiting = {node: len(self._in[node]) for node in self.nodes}
        heap = [self._index[node] for node, count in waiting.items() if count == 0]
        heapq.heapify(heap)
        out: list[Ref] = []
        while heap:
            node = self.nodes[heapq.heappop(heap)]
            out.append(node)
            for after in self._out[node]:
                waiting[after] -= 1
                if waiting[after] == 0:
                    heapq.heappush(heap, self._index[after])
        return tuple(out)

    @cached_property
    def waves(self) -> tuple[tuple[Ref, ...], ...]:
        """Resources grouped by depth: each wave needs only the waves before it."""
        depth: dict[Ref, int] = {}
        for node in self.order:
            depth[node] = 1 + max((depth[e.before] for e in self._in[node]), default=-1)
        out: list[list[Ref]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for node in self.order:
            out[depth[node]].append(node)
        return tuple(tuple(wave) for wave in out)

    def for_host(self, host: str) -> tuple[Ref, ...]:
        return tuple(node for node in self.order if node.host == host)

    def render(self) -> str:
        """One line per resource in order, with what it waits for (used by `reaper plan`):

        1  dc-01:windows_feature/AD-Domain-Services
        2  dc-01:ad_domain/lab.local  after dc-01:windows_feature/AD-Domain-Services
        """
        width = len(str(len(self.nodes)))
        lines = []
        for i, node in enumerate(self.order, start=1):
            waits = ", ".join(str(e.before) for e in self._in[node])
            lines.append(f"{i:>{width}}  {node}" + (f"  after {waits}" if waits else ""))
        return "\n".join(lines)


class _Builder:
    def __init__(
        self, hosts: Sequence[tuple[str, Sequence[ResourceBase]]], origins: Mapping[Ref, str]
    ) -> None:
        self.hosts = {h: None for h, _ in hosts}  # ordered, with O(1) membership
        # Hosts share their roles' resource objects: identities and parsed references are
        # computed once per object or text, not once per host (labs of 10,000 hosts).
        rids: dict[int, ResourceId] = {}
        self.declared: dict[Ref, ResourceBase] = {}
        for host, resources in hosts:
            for r in resources:
                rid = rids.get(id(r))
                if rid is None:
                    rid = rids[id(r)] = r.rid
                self.declared[Ref(host, rid.kind, rid.name)] = r
        self._parsed: dict[str, Ref] = {}
        self._parents: dict[str, str] = {}
        self.origins = origins
        self.by_kind: dict[tuple[str, str], list[Ref]] = {}
        self.domains: dict[str, list[Ref]] = {}
        for ref in self.declared:
            self.by_kind.setdefault((ref.host, ref.kind), []).append(ref)
            if ref.kind == "ad_domain":
                self.domains.setdefault(ref.name.lower(), []).append(ref)
        self.edges: list[Edge] = []

    def where(self, ref: Ref) -> str:
        origin = self.origins.get(ref)
        return f"{origin} ({ref})" if origin else str(ref)

    def resolve(self, node: Ref, text: str, field: str) -> Ref:
        parsed = self._parsed.get(text)
        if parsed is None:
            parsed = self._parsed[text] = parse_ref(text, host="")
        ref = parsed if parsed.host else Ref(node.host, parsed.kind, parsed.name)
        if ref in self.declared:
            return ref
        if ref.host not in self.hosts:
            hint = did_you_mean(ref.host, list(self.hosts))
            raise ConfigError(
                f"{self.where(node)}: {field} {text!r} names host {ref.host!r}, "
                f"which is not in the lab{hint}"
            )
        candidates = [str(r) for r in self.declared if r.host == ref.host]
        hint = did_you_mean(str(ref), candidates)
        raise ConfigError(f"{self.where(node)}: {field} {text!r} names no declared resource{hint}")

    def add(self, node: Ref, before: Iterable[Ref], why: str) -> None:
        self.edges.extend(Edge(node, b, why) for b in before if b != node)

    def same_host(self, node: Ref, kind: str, name: str) -> list[Ref]:
        ref = Ref(node.host, kind, name)
        return [ref] if ref in self.declared else []

    def build(self) -> ResourceGraph:
        for node, resource in self.declared.items():
            for text in resource.after:
                ref = self.resolve(node, text, "after")
                if ref == node:
                    raise ConfigError(f"{self.where(node)}: after names the resource itself")
                self.edges.append(Edge(node, ref, "after"))
            self.implicit(node, resource)
        graph = ResourceGraph(list(self.declared), self.edges)
        if len(graph.order) < len(graph):  # Kahn's order stops short of a cycle
            self.name_cycle(graph)
        return graph

    def implicit(self, node: Ref, resource: ResourceBase) -> None:
        rule = _IMPLICIT.get(resource.kind)
        if rule is not None:
            rule(self, node, resource)

    def service(self, node: Ref, r: Any) -> None:
        self.add(node, self.same_host(node, "package", r.name), "its package")

    def package(self, node: Ref, r: Any) -> None:
        repos = self.by_kind.get((node.host, "package_repository"), [])
        self.add(node, repos, "the host's repositories")

    def path(self, node: Ref, r: Any) -> None:
        self.add(node, self.parent_dir(node, r.path), "its parent directory")
        if r.owner:
            self.add(node, self.same_host(node, "user", r.owner), "its owner")
        if r.group:
            self.add(node, self.same_host(node, "group", r.group), "its group")

    def file(self, node: Ref, r: Any) -> None:
        self.path(node, r)
        for text in r.notify:
            service = self.resolve(node, text, "notify")
            self.edges.append(Edge(service, node, "notified by it"))

    def groups(self, node: Ref, r: Any) -> None:
        kind = "ad_group" if r.kind == "ad_user" else "group"
        for group in r.groups:
            self.add(node, self.same_host(node, kind, group), "its group")

    def membership(self, node: Ref, r: Any) -> None:
        self.add(node, self.domains.get(r.domain.lower(), []), "the domain it joins")
        self.add(node, self.by_kind.get((node.host, "dns_client"), []), "its DNS client")

    def dns(self, node: Ref, r: Any) -> None:
        for host in r.servers_from:
            if host not in self.hosts:
                raise ConfigError(
                    f"{self.where(node)}: servers_from names host {host!r}, which is "
                    f"not in the lab{did_you_mean(host, list(self.hosts))}"
                )

    def ad_domain(self, node: Ref, r: Any) -> None:
        feature = self.same_host(node, "windows_feature", "AD-Domain-Services")
        self.add(node, feature, "the AD DS feature")

    def ad_object(self, node: Ref, r: Any) -> None:
        domains = (
            self.domains.get(r.domain.lower(), [])
            if r.domain
            else self.by_kind.get((node.host, "ad_domain"), [])
        )
        self.add(node, domains, "its domain")
        if r.kind == "ad_user":
            self.groups(node, r)

    def parent_dir(self, node: Ref, path: str) -> list[Ref]:
        parent = self._parents.get(path)
        if parent is None:
            pure = PureWindowsPath(path) if not path.startswith("/") else PurePosixPath(path)
            parent = self._parents[path] = str(pure.parent)
        return [] if parent == path else self.same_host(node, "directory", parent)

    def name_cycle(self, graph: ResourceGraph) -> None:
        """Raise the ConfigError that walks one cycle (graphlib finds it)."""
        sorter = graphlib.TopologicalSorter(
            {node: graph.prerequisites(node) for node in graph.nodes}
        )
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            # graphlib lists each node before the one that waits for it; read it backwards
            # ("runs after"), starting at the first declared, so the message is stable.
            cycle: list[Ref] = list(reversed(exc.args[1]))[:-1]
            first = min(range(len(cycle)), key=lambda i: graph.nodes.index(cycle[i]))
            walk = [*cycle[first:], *cycle[:first], cycle[first]]
            origin = self.origins.get(cycle[first])
            raise ConfigError(
                f"{origin + ': ' if origin else ''}dependency cycle: "
                + " -> ".join(str(n) for n in walk)
            ) from None
        raise AssertionError("Kahn's order stopped short, yet graphlib found no cycle")


# The implicit rules by kind (the table in the module docstring); each gets the resource of
# that kind, hence `Any` in their signatures rather than a cast per rule.
_IMPLICIT: dict[str, Callable[[_Builder, Ref, Any], None]] = {
    "service": _Builder.service,
    "package": _Builder.package,
    "file": _Builder.file,
    "directory": _Builder.path,
    "user": _Builder.groups,
    "domain_membership": _Builder.membership,
    "dns_client": _Builder.dns,
    "ad_domain": _Builder.ad_domain,
    "ad_user": _Builder.ad_object,
    "ad_group": _Builder.ad_object,
}


def build_graph(
    hosts: Sequence[tuple[str, Sequence[ResourceBase]]],
    *,
    origins: Mapping[Ref, str] | None = None,
) -> ResourceGraph:
    """The graph of every host's resources (hosts in lab order). `origins` maps a node to
    where it was declared (`roles.web[2]`) for error messages. ConfigError on a dangling
    reference or a cycle."""
    return _Builder(hosts, origins or {}).build()
