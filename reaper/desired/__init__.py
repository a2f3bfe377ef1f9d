"""Desired state (lab schema 2): typed resources grouped in roles, the dependency graph
between them within and across hosts, the diff of desired against observed state, and the
shipped profiles.

Pure domain: no I/O, no engine, no transports. The modules, each one idea:

    identity   `KIND/NAME` and `HOST:KIND/NAME`
    base       what every kind shares (strict frozen models, `after`, no inline secrets)
    system     package, service, file, directory, user, group, setting, sshd_option,
               firewall, dns_client, package_repository
    windows    windows_feature, ad_domain, domain_membership, ad_user, ad_group
    kinds      the discriminated union `Resource`, `KINDS`, which OS runs which (`KIND_OS`)
    parse      YAML data → resources, with errors naming `roles.web[2]` and the valid values
    template   Jinja2 (sandboxed, StrictUndefined) file templates over host facts
    profiles   the shipped baseline per OS (what a schema-1 `goal:` means)
    spec       a lab's hosts resolved to their resources (`DesiredState`)
    graph      explicit and implicit dependencies, order, ready/blocked queries, rendering
    compare    per-field comparison rules (modes, digests, versions, memberships)
    diff       desired vs observed → add / change / remove / ok, in graph order

For the converger and `reaper plan`: `LabFile.desired` (a `DesiredState`) gives each host's
resources (`.resources(host)`, `.resource(ref)`) and `.graph` (a `ResourceGraph`: `.order`,
`.waves`, `.ready(done)`, `.unblocked_by(node, done)`, `.blocked_by(node, done)`,
`.downstream(node)`, `.edges(node)` with the reason of each, `.render()`); `diff_lab(desired,
observed, facts=, addresses=)` gives a `ResourceDiff` per resource in graph order, and
`render_diffs` prints them per host.
"""

from reaper.desired.base import ResourceBase
from reaper.desired.diff import (
    FieldChange,
    Observed,
    ResourceDiff,
    diff_lab,
    diff_resource,
    render_diffs,
    summarize,
)
from reaper.desired.graph import Edge, ResourceGraph, build_graph
from reaper.desired.identity import Ref, ResourceId, parse_ref
from reaper.desired.kinds import KIND_OS, KINDS, Resource, os_problem
from reaper.desired.parse import parse_resource, parse_resources, parse_roles
from reaper.desired.profiles import profile, profile_for_goal
from reaper.desired.spec import DesiredState, HostDesired, HostSpec, resolve_desired

__all__ = [
    "KINDS",
    "KIND_OS",
    "DesiredState",
    "Edge",
    "FieldChange",
    "HostDesired",
    "HostSpec",
    "Observed",
    "Ref",
    "Resource",
    "ResourceBase",
    "ResourceDiff",
    "ResourceGraph",
    "ResourceId",
    "build_graph",
    "diff_lab",
    "diff_resource",
    "os_problem",
    "parse_ref",
    "parse_resource",
    "parse_resources",
    "parse_roles",
    "profile",
    "profile_for_goal",
    "render_diffs",
    "resolve_desired",
    "summarize",
]
