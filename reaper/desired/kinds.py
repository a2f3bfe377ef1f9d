"""The resource kinds as one discriminated union, and which OS each kind runs on (as data:
the loader, the catalog's future `ensure_*` actions and the docs all read `KIND_OS`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, ValidationError

from reaper.desired.base import ResourceBase
from reaper.desired.memo import validated
from reaper.desired.system import (
    Directory,
    DnsClient,
    File,
    Firewall,
    Group,
    Package,
    PackageRepository,
    Service,
    Setting,
    SshdOption,
    User,
)
from reaper.desired.windows import AdDomain, AdGroup, AdUser, DomainMembership, WindowsFeature

__all__ = ["CASELESS_KINDS", "KINDS", "KIND_OS", "Resource", "os_problem", "resource_of"]

Resource = Annotated[
    Package
    | Service
    | File
    | Directory
    | User
    | Group
    | Setting
    | SshdOption
    | Firewall
    | DnsClient
    | PackageRepository
    | WindowsFeature
    | AdDomain
    | DomainMembership
    | AdUser
    | AdGroup,
    Field(discriminator="kind"),
]

KINDS: dict[str, type[ResourceBase]] = {
    cls.model_fields["kind"].default: cls
    for cls in (
        Package,
        Service,
        File,
        Directory,
        User,
        Group,
        Setting,
        SshdOption,
        Firewall,
        DnsClient,
        PackageRepository,
        WindowsFeature,
        AdDomain,
        DomainMembership,
        AdUser,
        AdGroup,
    )
}

_EVERY = frozenset({"linux", "windows", "macos"})
_POSIX = frozenset({"linux", "macos"})
_WINDOWS = frozenset({"windows"})
KIND_OS: dict[str, frozenset[str]] = {
    "package": _EVERY,  # apt/dnf/zypper, Homebrew, winget
    "service": _EVERY,  # systemd (or the init there is), launchd, the SCM
    "file": _EVERY,
    "directory": _EVERY,
    "user": _EVERY,
    "group": _EVERY,
    "setting": _EVERY,  # sysctl, defaults, registry: the name's shape is checked per OS
    "sshd_option": _POSIX,
    "firewall": _EVERY,  # nftables/iptables, pf/socketfilterfw, Windows Firewall
    "dns_client": _EVERY,
    "package_repository": frozenset({"linux"}),
    "windows_feature": _WINDOWS,
    "ad_domain": _WINDOWS,
    "domain_membership": _WINDOWS,
    "ad_user": _WINDOWS,
    "ad_group": _WINDOWS,
}
assert set(KIND_OS) == set(KINDS), "every kind says where it runs"

# Kinds whose names the system reads without regard to case (sshd keywords, Windows and AD
# names, DNS domains): two spellings on one host are one resource declared twice.
CASELESS_KINDS = frozenset(
    {"sshd_option", "windows_feature", "ad_domain", "domain_membership", "ad_user", "ad_group"}
)


def os_problem(resource: ResourceBase, os: str) -> str | None:
    """Why `resource` cannot be declared on a host running `os` (None when it can)."""
    where = KIND_OS[resource.kind]
    if os not in where:
        return f"{resource.kind} is not available on {os} (runs on: {', '.join(sorted(where))})"
    return resource.os_problem(os)


def resource_of(params: Mapping[str, Any], data: Mapping[str, Any]) -> str | None:
    """The `KIND/NAME` an ensure is about: from its result, else from its params (the
    resource as JSON, named by its kind's name field, as `ResourceBase.rid` names it)."""
    named = data.get("resource")
    if isinstance(named, str):
        return named
    spec = params.get("resource")
    if not isinstance(spec, Mapping):
        return None
    cls = KINDS.get(str(spec.get("kind")))
    if cls is None:
        return None
    name = spec.get(cls._name_field)
    if name is not None:
        return f"{spec['kind']}/{name}"
    try:  # a kind named by what it declares (a firewall rule without a name)
        return str(validated(cls, spec).rid)
    except ValidationError:
        return None
