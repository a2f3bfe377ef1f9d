"""How results change what a desired-state mission knows of each declared resource. Pure: the
fold (`reaper.engine.state`) calls these and installs what they return.

    discover   reports `data["resources"]` (`KIND/NAME` → properties, None when absent): each
               declared resource is now seen, and read back (verified). A declared resource the
               report leaves out is taken as absent, so an agent that cannot read a kind yet
               makes the converger ensure it (and learn the truth) instead of waiting forever.
               Properties with `restart_pending: true` (a promotion or a join done, its
               restart not yet) mark the resource `reboot_required`, as its ensure would; read
               back so after the reboot that was to complete it, it is failed instead.
    ensure_*   reports `data = {resource, result, before, after}`: the resource's observed
               state is `after` (`before` in check mode), one more attempt; a change is
               verified by the next discover.
    failure    of an ensure: the resource is failed with the error and the tool's output tail.
    recovery   an action that clears a failure class (`reaper.actions.CLEARS`: cleanup clears
               DISK_FULL, reboot REBOOT_PENDING) puts those failed resources back in play; a
               reboot also completes the changes that reported `reboot_required`, which are
               then read back (unverified).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reaper.actions import CLEARS
from reaper.desired.kinds import resource_of
from reaper.models import HostState, ResourceState, ResultEvent, Task, replace

__all__ = ["after_discover", "after_ensure", "after_recovery", "after_refusal", "resource_of"]

_TAIL = 2000


def after_discover(
    host: HostState, data: Mapping[str, Any], params: Mapping[str, Any] | None = None
) -> dict[str, ResourceState]:
    """`params` are the discover's: when it asked for some resources only (an LLM reading
    back one), the others keep what was known of them."""
    reported = data.get("resources")
    seen: Mapping[str, Any] = reported if isinstance(reported, Mapping) else {}
    # Asked for the declared list itself (the converger's discover, in-process): every one.
    specs = params.get("resources") if params is not None else None
    # (or an equal copy of it: the policy's check hands on the list it validated)
    asked = None if specs is host.desired or specs == host.desired else _asked(params)
    out: dict[str, ResourceState] = {}
    for rid, rs in host.resources.items():
        if asked is not None and rid not in asked and rid not in seen:
            out[rid] = rs
            continue
        props = seen.get(rid)
        observed = dict(props) if isinstance(props, Mapping) else None
        pending = observed is not None and observed.get("restart_pending") is True
        known = rs.seen and rs.verified and rs.observed == observed
        if pending and rs.seen and not rs.verified and not rs.reboot_required:
            # Read back after the restart that was to complete it (`after_recovery`), and
            # still waiting for one: another reboot would only loop.
            out[rid] = replace(rs, observed=observed, verified=True, **_STILL_PENDING)
        elif known and (rs.reboot_required or not pending):
            out[rid] = rs  # unchanged: the same object, so what was derived from it stands
        else:
            # A change done but completed only by a restart (a promotion, a join made by an
            # earlier run): as declared, so nothing runs again, and the host is rebooted.
            reboot = rs.reboot_required or pending
            out[rid] = replace(
                rs, seen=True, observed=observed, verified=True, reboot_required=reboot
            )
    return out


_STILL_PENDING: dict[str, Any] = {
    "outcome": "failed",
    "error": "COMMAND_FAILED: still waits for a restart after the host restarted",
    "error_code": "COMMAND_FAILED",
    "output_tail": "",
}


def _asked(params: Mapping[str, Any] | None) -> set[str] | None:
    specs = params.get("resources") if params is not None else None
    if not isinstance(specs, list):
        return None
    return {
        rid
        for spec in specs
        if isinstance(spec, Mapping) and (rid := resource_of({"resource": spec}, {})) is not None
    }


def after_ensure(host: HostState, task: Task, r: ResultEvent) -> dict[str, ResourceState] | None:
    """The host's resources after an ensure result (None: not one of its declared ones)."""
    rid = resource_of(task.params, r.data)
    if rid is None or rid not in host.resources:
        return None
    rs = host.resources[rid]
    if r.ok:
        result = r.data.get("result")
        observed = r.data.get("before" if result == "would_change" else "after")
        before = r.data.get("before")
        change = (
            None if result != "changed"
            else "added" if before is None
            else "removed" if observed is None
            else "changed"
        )  # fmt: skip
        update: dict[str, Any] = {
            "change": change or rs.change,
            "seen": True,
            "observed": dict(observed) if isinstance(observed, Mapping) else None,
            "outcome": result if result in ("changed", "unchanged", "would_change") else "changed",
            "error": None,
            "error_code": None,
            "output_tail": "",
            "attempts": rs.attempts + 1,
            "verified": result != "changed",
            "reboot_required": bool(r.data.get("reboot_required")) and result == "changed",
        }
    else:
        tail = (r.stderr_tail or r.stdout_tail)[-_TAIL:]
        update = {
            "outcome": "failed",
            "error": f"{r.error_code or 'error'}: {r.summary}"[:300],
            "error_code": r.error_code,
            "output_tail": tail,
            "attempts": rs.attempts + 1,
        }
    return {**host.resources, rid: replace(rs, **update)}


def after_recovery(host: HostState, verb: str) -> dict[str, ResourceState] | None:
    """Failed resources whose failure class `verb` clears are back in play; after a reboot,
    the changes that waited for it are done and read back again (None: nothing to change)."""
    cleared = CLEARS.get(verb)
    if not cleared:
        return None
    hit = {
        rid: replace(rs, outcome=None, error=None, error_code=None)
        for rid, rs in host.resources.items()
        if rs.outcome == "failed" and rs.error_code in cleared
    }
    if verb == "reboot":
        hit.update(
            (rid, replace(rs, reboot_required=False, verified=False))
            for rid, rs in host.resources.items()
            if rs.reboot_required and rid not in hit
        )
    return {**host.resources, **hit} if hit else None


def after_refusal(
    host: HostState, params: Mapping[str, Any], code: str, reason: str
) -> dict[str, ResourceState] | None:
    """A proposed ensure the policy refused: its resource is failed (REFUSED, with the
    reason: a lockout's hint is in it), so its dependents are blocked and it is not proposed
    again. None: not an ensure of a declared resource."""
    rid = resource_of(params, {})
    if rid is None or rid not in host.resources:
        return None
    update = {
        "outcome": "failed",
        "error": f"refused ({code}): {reason}"[:500],
        "error_code": "REFUSED",
        "output_tail": "",
    }
    return {**host.resources, rid: replace(host.resources[rid], **update)}
