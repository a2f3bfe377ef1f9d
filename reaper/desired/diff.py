"""Desired minus observed, per resource, in graph order. Pure: no host is asked anything.

`observed` maps a host id to what its latest discover saw of each declared resource:
`ResourceId → properties` for a resource that exists, `None` (or no entry) for one that does
not. Each resource's diff is one of

    + add     it does not exist and must              (every declared field: None → value)
    ~ change  it exists and some field differs        (per field: before → after)
    - remove  it exists and is declared `state: absent`
    = ok      nothing to do

Fields left undeclared (None) are not managed and never differ. A file's content and
template are compared by sha256 (`content` in the changes, shown as `sha256:…`); a template
is rendered over the host's facts first. A dns_client's `servers_from` is compared as the
addresses of those hosts (`addresses`). Per-field rules are in `reaper.desired.compare`.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reaper.desired.base import ResourceBase
from reaper.desired.compare import content_digest, merged_groups, normalise_mode, pick, same
from reaper.desired.identity import Ref, ResourceId
from reaper.desired.kinds import KINDS
from reaper.desired.spec import DesiredState
from reaper.desired.system import DnsClient, File
from reaper.desired.template import TemplateProblem, render_template
from reaper.errors import ConfigError

__all__ = [
    "PASSWORD",
    "Action",
    "FieldChange",
    "Observed",
    "ResourceDiff",
    "desired_properties",
    "diff_lab",
    "diff_resource",
    "only_password",
    "render_diffs",
    "reported_fields",
    "summarize",
]

Action = Literal["add", "change", "remove", "ok"]
Observed = Mapping[ResourceId, Mapping[str, Any] | None]
# One resource's observed properties, a host's facts, host id → address (`_diff`'s inputs).
Observed1 = Mapping[str, Any] | None
Facts = Mapping[str, Any] | None
Addresses = Mapping[str, str] | None
_SIGN: dict[Action, str] = {"add": "+", "change": "~", "remove": "-", "ok": "="}


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    before: Any
    after: Any

    def __str__(self) -> str:
        return f"{self.field}: {_show(self.before)} → {_show(self.after)}"


@dataclass(frozen=True, slots=True)
class ResourceDiff:
    ref: Ref
    action: Action
    changes: tuple[FieldChange, ...] = ()

    def __str__(self) -> str:
        detail = ", ".join(str(c) for c in self.changes) if self.action == "change" else ""
        return f"{_SIGN[self.action]} {self.ref}" + (f"  {detail}" if detail else "")


def _show(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    text = str(value)
    return text[:19] + "…" if text.startswith("sha256:") else text


def desired_properties(
    resource: ResourceBase,
    *,
    facts: Mapping[str, Any] | None = None,
    addresses: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The values a converged resource shows, in the form discover reports them: a file's
    content as its digest, a dns_client's `servers_from` as addresses, modes as '0644'.
    `state: present/absent` is left out (presence is the diff's add/remove)."""
    props = resource.properties()
    if props.get("state") in ("present", "absent"):
        del props["state"]
    if isinstance(resource, File):
        text = props.pop("content", None)
        template = props.pop("template", None)
        if template is not None:
            text = render_template(template, facts or {})
        if text is not None:
            props["content"] = content_digest(text)
    if isinstance(resource, DnsClient) and resource.servers_from:
        known = addresses or {}
        props.pop("servers_from", None)
        props["servers"] = tuple(known.get(h, f"<address of {h}>") for h in resource.servers_from)
    if "mode" in props:
        props["mode"] = normalise_mode(props["mode"])
    return props


# How a declared field is reported when discover reads it back under another name.
_REPORTED_AS = {("file", "content"): "sha256", ("file", "template"): "sha256",
                ("dns_client", "servers_from"): "servers"}  # fmt: skip


def reported_fields(kind: str) -> tuple[str, ...]:
    """The properties `discover` must report of an existing resource of `kind` for its diff
    (a file's content as `sha256`, or `content` itself; `state` as `absent` when it is
    gone, or no entry at all). Identity, wiring and secret references are never read back."""
    cls = KINDS[kind]
    skip = {"kind", "after", "notify", cls._name_field, *cls._unobserved}
    if kind == "firewall":
        skip.add("name")  # a label, not a property of the rule
    out: list[str] = []
    for name in cls.model_fields:
        if name in skip or name.endswith("_env"):
            continue
        reported = _REPORTED_AS.get((kind, name), name)
        if reported not in out:
            out.append(reported)
    return tuple(out)


def _observed_value(kind: str, field: str, seen: Mapping[str, Any]) -> Any:
    if kind == "file" and field == "content":
        digest = pick(seen, "sha256", "content_sha256")
        if digest is not None:
            return digest if str(digest).startswith("sha256:") else f"sha256:{digest}"
        text = seen.get("content")
        return None if text is None else content_digest(str(text))
    return seen.get(field)


# (id of a resource model, what was observed of it marshalled) → (the model, kept alive so
# the id is not reused; the diff's action and changes). A lab's roles give many hosts the same
# resource model, and converged hosts report the same properties, so most diffs of a mission
# are a lookup. Only for diffs that read nothing else: not a template, not `servers_from`.
_MEMO: dict[tuple[int, bytes], tuple[ResourceBase, Action, tuple[FieldChange, ...]]] = {}
_MEMO_MAX = 8192


def diff_resource(
    ref: Ref,
    resource: ResourceBase,
    seen: Mapping[str, Any] | None,
    *,
    facts: Mapping[str, Any] | None = None,
    addresses: Mapping[str, str] | None = None,
) -> ResourceDiff:
    """One resource against what was observed of it (None: it does not exist); memoised by
    content where the diff depends on nothing but the two."""
    fields = resource.__dict__
    if fields.get("template") or fields.get("servers_from") or not isinstance(seen, dict | None):
        return _diff(ref, resource, seen, facts, addresses)
    try:
        # marshal tells True from 1 and a list from a tuple: equal bytes, equal diff
        key = (id(resource), marshal.dumps(seen, 2))
    except ValueError:  # a value marshal does not know: not memoised
        return _diff(ref, resource, seen, facts, addresses)
    hit = _MEMO.get(key)
    if hit is not None and hit[0] is resource:
        return ResourceDiff(ref, hit[1], hit[2])
    diff = _diff(ref, resource, seen, facts, addresses)
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[key] = (resource, diff.action, diff.changes)
    return diff


def _diff(
    ref: Ref, resource: ResourceBase, seen: Observed1, facts: Facts, addresses: Addresses
) -> ResourceDiff:
    """`diff_resource` unmemoised."""
    exists = seen is not None and seen.get("state") != "absent"
    # A model's fields live in its __dict__: a getattr of a field the kind lacks would go
    # through pydantic's slow __getattr__ (most kinds have no `state`).
    if resource.__dict__.get("state") == "absent":
        return ResourceDiff(ref, "remove" if exists else "ok")
    try:
        want = desired_properties(resource, facts=facts, addresses=addresses)
    except TemplateProblem as exc:
        raise ConfigError(f"{ref}: {exc}") from None
    if seen is None or not exists:
        return ResourceDiff(ref, "add", tuple(FieldChange(k, None, v) for k, v in want.items()))
    changes: list[FieldChange] = []
    for field, value in want.items():
        before = _observed_value(resource.kind, field, seen)
        if not same(resource.kind, field, value, before):
            after = merged_groups(value, before) if field == "groups" else value
            changes.append(FieldChange(field, before, after))
    if resource.__dict__.get("update_password") == "always":
        changes.append(_PASSWORD_CHANGE)
    return ResourceDiff(ref, "change" if changes else "ok", tuple(changes))


# `update_password: always`: a password cannot be read back to compare, so an existing
# account differs by its password on every run; set once, the rest of the run takes it as
# done (`only_password`).
PASSWORD = "password"
_PASSWORD_CHANGE = FieldChange(PASSWORD, "(cannot be read)", "(set again: update_password always)")


def only_password(diff: ResourceDiff) -> bool:
    """Whether all that differs is the password an `update_password: always` account sets on
    every run (once set, it is as declared)."""
    return diff.action == "change" and all(c.field == PASSWORD for c in diff.changes)


def diff_lab(
    desired: DesiredState,
    observed: Mapping[str, Observed],
    *,
    facts: Mapping[str, Mapping[str, Any]] | None = None,
    addresses: Mapping[str, str] | None = None,
) -> list[ResourceDiff]:
    """Every declared resource of every host, in graph order. `facts` (per host) feed file
    templates; `addresses` (host id → address) resolve `servers_from`."""
    out: list[ResourceDiff] = []
    for ref, resource in desired:
        host_seen = observed.get(ref.host, {})
        out.append(
            diff_resource(
                ref,
                resource,
                host_seen.get(ref.rid),
                facts=(facts or {}).get(ref.host),
                addresses=addresses,
            )
        )
    return out


def summarize(diffs: Iterable[ResourceDiff]) -> dict[Action, int]:
    """How many of each action (every action present, zeros included)."""
    counts: dict[Action, int] = {"add": 0, "change": 0, "remove": 0, "ok": 0}
    for d in diffs:
        counts[d.action] += 1
    return counts


def render_diffs(diffs: Iterable[ResourceDiff]) -> str:
    """Per host (in the order hosts first appear), each resource's line, graph order kept."""
    by_host: dict[str, list[ResourceDiff]] = {}
    for d in diffs:
        by_host.setdefault(d.ref.host, []).append(d)
    lines: list[str] = []
    for host, items in by_host.items():
        counts = summarize(items)
        lines.append(f"{host}: " + ", ".join(f"{n} {a}" for a, n in counts.items()))
        lines.extend(f"  {d}" for d in items)
    return "\n".join(lines)
