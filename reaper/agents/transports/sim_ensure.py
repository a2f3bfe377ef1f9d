"""`<os>.ensure_<kind>` on a simulated host's world: converge one resource, or fail the way the
real tool does (its text in the tails, a failure class of `reaper.actions.FAILURE_CLASSES` in
`error_code`).

`ensure(world, resource, ...)` reads the resource back first: when it already matches
(`reaper.desired.diff.diff_resource` says ok) nothing runs and the result is "unchanged".
Otherwise the kind's handler changes the world, or a copy of it in check mode (so a check
reports the same failures a real run would meet, and changes nothing). Result data:

    {"resource": "KIND/NAME", "result": "changed" | "unchanged" | "would_change",
     "before": props | None, "after": props | None, "reboot_required": bool}

and on failure {"resource", "before"} with the error code and the tool's output.
"""

from collections.abc import Callable, Mapping
from typing import Any

from reaper.actions import FAILURE_CLASSES
from reaper.agents.base import ActionOutcome, ensure_done
from reaper.agents.transports import sim_ad, sim_pm
from reaper.agents.transports.sim_ctx import Ctx, Failure, Peers
from reaper.agents.transports.sim_services import ensure_service, start
from reaper.agents.transports.sim_world import SSHD_KEYWORDS, HostWorld, observe, unit_name
from reaper.desired.base import ResourceBase
from reaper.desired.diff import diff_resource
from reaper.desired.identity import parse_ref
from reaper.desired.system import DnsClient, File
from reaper.desired.template import TemplateProblem, render_template
from reaper.errors import ConfigError
from reaper.models import ResultStatus

__all__ = ["ensure"]


def _addresses(resource: ResourceBase, peers: Mapping[str, HostWorld]) -> dict[str, str]:
    """Host id → address for what a dns_client's `servers_from` names (nothing else asks)."""
    if not isinstance(resource, DnsClient):
        return {}
    return {h: peers[h].address for h in resource.servers_from if h in peers}


def ensure(
    world: HostWorld,
    resource: ResourceBase,
    *,
    peers: Mapping[str, HostWorld],
    facts: Mapping[str, Any],
    host_id: str,
    check: bool,
) -> ActionOutcome:
    """Converge `resource` on `world` (on copies in check mode). `peers`: the mission's
    other hosts' worlds, by host id (a join asks its DC's, a dns_client their addresses)."""
    rid = str(resource.rid)
    before = observe(world, resource, peers)
    addresses = {**_addresses(resource, peers), host_id: world.address}
    try:
        wanted = diff_resource(
            resource.rid.on(host_id), resource, before, facts=facts, addresses=addresses
        )
    except ConfigError as exc:  # a template that does not render over this host's facts
        return _failed(rid, before, Failure("CONFIG_INVALID", f"template: {exc}"))
    if wanted.action == "ok":
        return ensure_done(rid, "unchanged", before, before, f"{rid} is already as declared")
    ctx = Ctx(
        world.copy() if check else world,
        Peers(peers, check=check),
        facts,
        host_id,
        check,
    )
    try:
        _HANDLERS[resource.kind](ctx, resource)
    except Failure as failure:
        return _failed(rid, before, failure)
    after = observe(ctx.world, resource, ctx.peers)
    verb = "would change" if check else "changed"
    detail = ", ".join(str(c) for c in wanted.changes) or wanted.action
    return ensure_done(
        rid,
        "would_change" if check else "changed",
        before,
        after,
        f"{rid} {verb}: {detail}",
        reboot=ctx.reboot_required,
        stdout="\n".join(ctx.notes),
    )


def _failed(rid: str, before: Any, failure: Failure) -> ActionOutcome:
    retriable = FAILURE_CLASSES.get(failure.code, (False, ""))[0]
    first = failure.stderr.strip().splitlines()[-1] if failure.stderr.strip() else failure.code
    return ActionOutcome(
        status=ResultStatus.ERROR,
        summary=failure.summary or f"{rid}: {failure.code}: {first}"[:300],
        data={"resource": rid, "before": before},
        stdout_tail=failure.stdout,
        stderr_tail=failure.stderr,
        error_code=failure.code,
        retriable=retriable,
    )


# -- files and accounts ----------------------------------------------------------------------


def _no_space(ctx: Ctx, path: str) -> None:
    if ctx.world.cond.get("disk_free_mb") == 0:
        text = (
            "Set-Content : There is not enough space on the disk."
            if ctx.world.os == "windows"
            else f"cp: error writing '{path}': No space left on device"
        )
        raise Failure("DISK_FULL", text)


def _owner(ctx: Ctx, resource: Any) -> None:
    world = ctx.world
    if world.os == "windows":  # an ACL's owner is a user or a group
        who = resource.owner
        if who is not None and who not in world.users and who not in world.groups:
            raise Failure(
                "MISSING_DEPENDENCY",
                f"Set-Acl : Some or all identity references could not be translated. ({who})",
            )
        return
    for attr, table in (("owner", world.users), ("group", world.groups)):
        who = getattr(resource, attr)
        if who is not None and who not in table:
            raise Failure(
                "MISSING_DEPENDENCY",
                f"chown: invalid {'user' if attr == 'owner' else 'group'}: '{who}'",
            )


def _path(ctx: Ctx, resource: Any) -> None:
    files, path = ctx.world.files, resource.path
    if resource.state == "absent":
        files.pop(path, None)
        return
    _no_space(ctx, path)
    _owner(ctx, resource)
    entry = files.get(path)
    if entry is None or entry["type"] != resource.kind:
        default_mode = (
            None if ctx.world.os == "windows" else ("0644" if resource.kind == "file" else "0755")
        )
        admin = "Administrators" if ctx.world.os == "windows" else "root"
        entry = files[path] = {
            "type": resource.kind,
            "content": "" if resource.kind == "file" else None,
            "mode": default_mode,
            "owner": admin,
            "group": None if ctx.world.os == "windows" else "root",
        }
    old = entry.get("content")
    for attr in ("mode", "owner", "group"):
        if getattr(resource, attr) is not None:
            entry[attr] = getattr(resource, attr)
    if isinstance(resource, File):
        text = resource.content
        if resource.template is not None:
            try:
                text = render_template(resource.template, ctx.facts)
            except TemplateProblem as exc:
                raise Failure("CONFIG_INVALID", f"template error: {exc}") from None
        if text is not None:
            entry["content"] = text
        if entry["content"] != old:
            _notify(ctx, resource)


def _notify(ctx: Ctx, resource: File) -> None:
    """Restart the running services the file notifies (on this host)."""
    for text in resource.notify:
        ref = parse_ref(text, host=ctx.host_id)
        unit = unit_name(ctx.world, ref.name)
        svc = ctx.world.services.get(unit)
        if ref.host != ctx.host_id or svc is None or not svc["running"]:
            continue
        ctx.notes.append(f"RUNNING HANDLER [restart {unit}]")
        start(ctx, unit)


def _user(ctx: Ctx, resource: Any) -> None:
    users, name = ctx.world.users, resource.name
    if resource.state == "absent":
        users.pop(name, None)
        return
    for group in resource.groups:
        if group not in ctx.world.groups:
            text = (
                f"Add-LocalGroupMember : Group {group} was not found."
                if ctx.world.os == "windows"
                else f"usermod: group '{group}' does not exist"
            )
            raise Failure("MISSING_DEPENDENCY", text)
    posix = ctx.world.os != "windows"
    user = users.get(name)
    if user is None:
        uid = max([999, *(u["uid"] or 0 for u in users.values())]) + 1 if posix else None
        user = users[name] = {
            "uid": uid,
            "groups": [],
            "shell": "/bin/bash" if posix else None,
            "home": f"/home/{name}" if posix else f"C:\\Users\\{name}",
            "enabled": True,
        }
    for attr in ("uid", "shell", "home", "enabled"):
        if getattr(resource, attr) is not None:
            user[attr] = getattr(resource, attr)
    user["groups"] = sorted({*user["groups"], *resource.groups})


def _group(ctx: Ctx, resource: Any) -> None:
    groups = ctx.world.groups
    if resource.state == "absent":
        groups.pop(resource.name, None)
        return
    posix = ctx.world.os != "windows"
    gid = resource.gid
    if gid is None and posix:
        gid = (
            groups.get(resource.name, {}).get("gid")
            or max([999, *(g["gid"] or 0 for g in groups.values())]) + 1
        )
    groups[resource.name] = {"gid": gid}


def _setting(ctx: Ctx, resource: Any) -> None:
    ctx.world.settings[resource.name] = {"value": resource.value, "type": resource.type}


def _sshd(ctx: Ctx, resource: Any) -> None:
    key = resource.name.lower()
    if key not in SSHD_KEYWORDS:
        raise Failure(
            "CONFIG_INVALID",
            f"/etc/ssh/sshd_config: line 14: Bad configuration "
            f"option: {resource.name}\n/etc/ssh/sshd_config: terminating, 1 bad "
            "configuration options",
        )
    ctx.world.sshd[key] = resource.value
    ctx.notes.append("sshd -t: ok; systemctl reload ssh")


def _firewall(ctx: Ctx, resource: Any) -> None:
    name = resource.rid.name
    if resource.state == "absent":
        ctx.world.firewall.pop(name, None)
        return
    ctx.world.firewall[name] = {
        "port": resource.port,
        "proto": resource.proto,
        "source": resource.source,
        "action": resource.action,
    }


def _dns(ctx: Ctx, resource: DnsClient) -> None:
    servers = list(resource.servers)
    for host in resource.servers_from:
        peer = ctx.world if host == ctx.host_id else ctx.peers.get(host)
        if peer is None:
            raise Failure(
                "MISSING_DEPENDENCY",
                f"servers_from: the address of {host} is not known yet (discover it first)",
            )
        servers.append(peer.address)
    entry = ctx.world.dns.setdefault(resource.name, {"servers": [], "search": []})
    entry["servers"] = servers
    if resource.search:
        entry["search"] = list(resource.search)


_HANDLERS: dict[str, Callable[[Ctx, Any], None]] = {
    "package": sim_pm.ensure_package,
    "service": ensure_service,
    "file": _path,
    "directory": _path,
    "user": _user,
    "group": _group,
    "setting": _setting,
    "sshd_option": _sshd,
    "firewall": _firewall,
    "dns_client": _dns,
    "package_repository": sim_pm.ensure_repository,
    "windows_feature": sim_ad.ensure_feature,
    "ad_domain": sim_ad.ensure_ad_domain,
    "domain_membership": sim_ad.ensure_membership,
    "ad_user": sim_ad.ensure_directory_object,
    "ad_group": sim_ad.ensure_directory_object,
}
