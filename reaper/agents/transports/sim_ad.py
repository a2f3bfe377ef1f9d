"""Windows features and Active Directory on simulated worlds: promoting a DC, joining its
domain (DNS must point at the DC, clocks within Kerberos' 300 s), directory users and groups,
and the pending reboot that blocks them."""

from __future__ import annotations

from typing import Any

from reaper.agents.transports.sim_ctx import Ctx, Failure
from reaper.agents.transports.sim_world import domain_host

__all__ = ["ensure_ad_domain", "ensure_directory_object", "ensure_feature", "ensure_membership"]

_REBOOTING_FEATURES = frozenset({"hyper-v", "failover-clustering", "containers"})


def _reboot_gate(ctx: Ctx, what: str) -> None:
    if ctx.world.cond.get("pending_reboot"):
        raise Failure(
            "REBOOT_PENDING",
            f"{what} : The requested operation cannot be performed "
            "because a restart is pending from a previous installation or update. "
            "Restart the computer, then try again.",
        )


def ensure_feature(ctx: Ctx, resource: Any) -> None:
    if resource.state == "absent":
        ctx.world.features.pop(resource.name, None)
        return
    _reboot_gate(ctx, "Install-WindowsFeature")
    ctx.world.features[resource.name] = True
    ctx.reboot_required = resource.name.lower() in _REBOOTING_FEATURES
    ctx.notes.append(
        f"Success Restart Needed Exit Code      Feature Result\n------- -------------- "
        f"---------      --------------\nTrue    {'Yes' if ctx.reboot_required else 'No'}"
        f"             Success        {{{resource.name}}}"
    )


def ensure_ad_domain(ctx: Ctx, resource: Any) -> None:
    world = ctx.world
    if not any(f.lower() == "ad-domain-services" for f in world.features):
        raise Failure(
            "MISSING_DEPENDENCY",
            "Install-ADDSForest : The term 'Install-ADDSForest' "
            "is not recognized as the name of a cmdlet, function, script file, or "
            "operable program. (install the AD-Domain-Services feature first)",
        )
    _reboot_gate(ctx, "Install-ADDSForest")
    if world.domain is not None and str(world.domain["name"]).lower() != resource.name.lower():
        raise Failure(
            "CONFIG_INVALID",
            f"Install-ADDSForest : this server is already the "
            f"domain controller of {world.domain['name']}",
        )
    world.domain = {
        "name": resource.name,
        "netbios": resource.netbios,
        "functional_level": resource.functional_level or "WinThreshold",
        "users": {"Administrator": {"ou": None, "groups": ["Domain Admins"], "enabled": True}},
        "groups": {
            g: {"ou": None, "scope": "global", "category": "security"}
            for g in ("Domain Admins", "Domain Users", "Domain Computers")
        },
        "computers": [],
    }
    for unit in ("DNS", "NTDS", "Netlogon", "Kdc"):
        world.services[unit] = {"running": True, "enabled": True, "ports": None}
    world.dns["default"] = {"servers": ["127.0.0.1"], "search": [resource.name]}
    ctx.reboot_required = True
    ctx.notes.append(
        "Install-ADDSForest: Operation completed successfully. The server will "
        "restart to complete the promotion."
    )


def ensure_membership(ctx: Ctx, resource: Any) -> None:
    world, domain = ctx.world, resource.domain
    if resource.state == "absent":
        world.membership = None
        return
    _reboot_gate(ctx, "Add-Computer")
    name = ctx.host_id.upper()[:15]
    head = (
        f"Add-Computer : Computer '{name}' failed to join domain '{domain}' from its "
        "current workgroup 'WORKGROUP' with following error message: "
    )
    dc = domain_host(domain, world, ctx.peers)
    dc = None if dc is None else ctx.peers.writable(dc)
    servers = world.dns.get("default", {}).get("servers", [])
    if dc is None or dc.address not in servers:
        raise Failure(
            "DNS_MISCONFIGURED",
            head + "The specified domain either does not exist or could not be contacted.",
            summary=f"{domain} does not resolve from "
            f"{ctx.host_id} (DNS servers: {', '.join(servers) or 'none'})",
        )
    skew = abs(float(world.cond.get("clock_offset_s", 0)) - float(dc.cond.get("clock_offset_s", 0)))
    if skew > 300:
        raise Failure(
            "CLOCK_SKEW",
            head + "The time at the Primary Domain Controller is "
            "different than the time at the Backup Domain Controller or member server "
            "by too large an amount.",
            summary=f"{ctx.host_id}'s clock is {skew:.0f}s "
            f"off the domain controller's (Kerberos allows 300s)",
        )
    world.membership = {
        "domain": dc.domain["name"] if dc.domain else domain,
        "user": resource.user,
        "ou": resource.ou,
    }
    if dc.domain is not None and name not in dc.domain["computers"]:
        dc.domain["computers"].append(name)
    ctx.reboot_required = True
    ctx.notes.append(
        f"WARNING: The changes will take effect after you restart the computer {name}."
    )


def ensure_directory_object(ctx: Ctx, resource: Any) -> None:
    named = (
        resource.domain
        or (ctx.world.domain or {}).get("name")
        or (ctx.world.membership or {}).get("domain")
    )
    dc = None if named is None else domain_host(str(named), ctx.world, ctx.peers)
    dc = None if dc is None else ctx.peers.writable(dc)
    if dc is None or dc.domain is None:
        cmd = "New-ADUser" if resource.kind == "ad_user" else "New-ADGroup"
        raise Failure(
            "MISSING_DEPENDENCY",
            f"{cmd} : Unable to find a default server with Active Directory Web Services running.",
        )
    table = dc.domain["users" if resource.kind == "ad_user" else "groups"]
    if resource.state == "absent":
        table.pop(resource.name, None)
        return
    if resource.kind == "ad_user":
        for group in resource.groups:
            if group not in dc.domain["groups"]:
                parts = ",".join(f"DC={p}" for p in str(dc.domain["name"]).split("."))
                raise Failure(
                    "MISSING_DEPENDENCY",
                    f"Add-ADGroupMember : Cannot find an object "
                    f"with identity: '{group}' under: '{parts}'.",
                )
        entry = table.setdefault(resource.name, {"ou": None, "groups": [], "enabled": True})
        entry["groups"] = sorted({*entry["groups"], *resource.groups})
        entry["enabled"] = resource.enabled
    else:
        entry = table.setdefault(resource.name, {"ou": None})
        entry.update(scope=resource.scope, category=resource.category)
    if resource.ou is not None:
        entry["ou"] = resource.ou
