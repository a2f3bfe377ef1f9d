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
    diff       desired vs observed → add / change / remove / ok, in graph order
"""

from reaper.desired.base import ResourceBase
from reaper.desired.identity import Ref, ResourceId, parse_ref
from reaper.desired.kinds import KIND_OS, KINDS, Resource, os_problem
from reaper.desired.parse import parse_resource, parse_resources, parse_roles
from reaper.desired.profiles import profile, profile_for_goal
from reaper.desired.spec import DesiredState, HostDesired, HostSpec, resolve_desired

__all__ = [
    "KINDS",
    "KIND_OS",
    "DesiredState",
    "HostDesired",
    "HostSpec",
    "Ref",
    "Resource",
    "ResourceBase",
    "ResourceId",
    "os_problem",
    "parse_ref",
    "parse_resource",
    "parse_resources",
    "parse_roles",
    "profile",
    "profile_for_goal",
    "resolve_desired",
]
