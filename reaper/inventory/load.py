"""Ansible inventories (INI or YAML) read as a Reaper lab, so `reaper run --inventory hosts.ini`
works on a lab an Ansible user already has.

Each host's variables are merged as Ansible does (`all` first, then groups by depth, then the
host's own) and mapped to its connection settings:

    ansible_host, ansible_port, ansible_user          address, port, user
    ansible_connection: ssh|paramiko|smart            transport ssh
                        winrm|psrp                    transport winrm (os windows)
                        local                         transport local
    ansible_ssh_private_key_file                      key_file
    ansible_password / ansible_ssh_pass               a secret (see below)
    ansible_become, ansible_become_password           become, a secret
    ansible_ssh_common_args / _extra_args             -J / ProxyJump → jump_host,
                                                      UserKnownHostsFile → known_hosts,
                                                      StrictHostKeyChecking=accept-new
    ansible_winrm_scheme, _transport, _port, _path, _server_cert_validation,
    _ca_trust_path, _message_encryption, _cert_pem, _cert_key_pem; ansible_psrp_* likewise
    reaper_os                                         os (else windows for winrm/psrp, else
                                                      linux; discover tells the truth)
    reaper_goal, reaper_policy (on `all`)             the mission's goal and policy

Inline passwords are read, never logged, echoed or stored: each goes to this process's secret
registry (`reaper.secrets`) and the host's settings keep only its name. Other variables are
ignored. Every error is one line: `file:line: message`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reaper.errors import ConfigError
from reaper.inventory.hosts import host_settings
from reaper.inventory.parse import Inventory, Var, parse_ini, parse_yaml
from reaper.lab import LabFile, LabHost, format_validation_error
from reaper.models import Stage
from reaper.safeload import read_limited
from reaper.secrets import is_secret_key, remember_secret

__all__ = [
    "LAB_TYPE",
    "host_groups",
    "lab_with_inventory",
    "load_inventory",
    "parse_inventory",
    "resolve_host_vars",
]

log = logging.getLogger(__name__)

LAB_TYPE = "ansible-inventory"
_YAML_SUFFIXES = (".yml", ".yaml", ".json")


def _depths(inv: Inventory) -> dict[str, int]:
    """Each group's depth below `all` (the longest path, as Ansible orders group vars)."""
    depth = {"all": 0}
    frontier = ["all"]
    while frontier:
        nxt: list[str] = []
        for name in frontier:
            for child in inv.groups[name].children:
                if depth.get(child, -1) < depth[name] + 1:
                    depth[child] = depth[name] + 1
                    nxt.append(child)
        frontier = nxt
    return depth


def _memberships(inv: Inventory, depth: dict[str, int]) -> dict[str, list[str]]:
    """Host → every group it is in, directly or through a parent, by depth and name."""
    parents: dict[str, set[str]] = {}
    for g in inv.groups.values():
        for child in g.children:
            parents.setdefault(child, set()).add(g.name)
    memberships: dict[str, set[str]] = {h: {"all"} for h in inv.host_vars}
    for g in inv.groups.values():
        for host in g.hosts:
            memberships[host].add(g.name)
    out: dict[str, list[str]] = {}
    for host, direct in memberships.items():
        groups, todo = set(), list(direct)
        while todo:
            name = todo.pop()
            if name not in groups:
                groups.add(name)
                todo.extend(parents.get(name, ()))
        out[host] = sorted(groups, key=lambda n: (depth.get(n, 0), n))
    return out


def host_groups(inv: Inventory) -> dict[str, list[str]]:
    """Host → its groups but `all` and `ungrouped`: a group naming a role of the lab gives
    the host that role (`LabHost.groups`)."""
    return {
        host: [g for g in groups if g not in ("all", "ungrouped")]
        for host, groups in _memberships(inv, _depths(inv)).items()
    }


def resolve_host_vars(inv: Inventory) -> dict[str, dict[str, Var]]:
    """Host → its effective variables: `all`, then its groups (and their ancestors) by depth
    and name, then its own."""
    out: dict[str, dict[str, Var]] = {}
    for host, groups in _memberships(inv, _depths(inv)).items():
        merged: dict[str, Var] = {}
        for name in groups:
            merged.update(inv.groups[name].vars)
        merged.update(inv.host_vars[host])
        out[host] = merged
    return out


def _looks_like_yaml(text: str) -> bool:
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        return s in ("---", "{") or (not s.startswith("[") and s.endswith(":"))
    return False


def _remember_secret_vars(hvars: dict[str, Var]) -> None:
    """Know every secret-named variable's plain value (a key passphrase, a vault or API token
    Reaper does not use itself) so that a host echoing it has it masked."""
    for key, var in hvars.items():
        plain = isinstance(var.value, str | int) and not isinstance(var.value, bool)
        if plain and is_secret_key(key):
            remember_secret(str(var.value))


def parse_inventory(
    text: str,
    *,
    source: str = "<inventory>",
    yaml_format: bool | None = None,
    goal: Stage | str = Stage.BASELINED,
    policy: str | None = None,
) -> LabFile:
    """A lab from an inventory's text. `goal` and `policy` are defaults that `reaper_goal` and
    `reaper_policy` on `all` override."""
    as_yaml = _looks_like_yaml(text) if yaml_format is None else yaml_format
    inv = parse_yaml(text, source) if as_yaml else parse_ini(text, source)
    if not inv.host_vars:
        raise inv.error(0, "the inventory has no hosts")
    top = inv.groups["all"].vars
    goal_var, policy_var = top.get("reaper_goal"), top.get("reaper_policy")
    try:
        lab_goal = Stage(goal_var.value if goal_var is not None else goal)
    except ValueError:
        line = goal_var.line if goal_var else 0
        raise inv.error(line, "reaper_goal must be discovered, prepared or baselined") from None
    hosts: list[LabHost] = []
    seen: dict[str, str] = {}
    groups = host_groups(inv)
    for name, hvars in resolve_host_vars(inv).items():
        _remember_secret_vars(hvars)
        settings = host_settings(inv, name, hvars)
        settings["groups"] = groups[name]
        other = seen.get(settings["host_id"])
        if other is not None:
            raise inv.error(
                inv.host_lines[name],
                f"hosts {other!r} and {name!r} both become host_id {settings['host_id']!r}",
            )
        seen[settings["host_id"]] = name
        try:
            hosts.append(LabHost.model_validate(settings))
        except ValidationError as exc:
            raise inv.error(
                inv.host_lines[name], f"host {name!r}: {format_validation_error(exc)}"
            ) from None
    spec: dict[str, Any] = {"lab_type": LAB_TYPE, "goal": lab_goal, "hosts": hosts}
    chosen_policy = policy_var.value if policy_var is not None else policy
    if chosen_policy is not None:
        spec["policy"] = chosen_policy
    try:
        lab = LabFile.model_validate(spec)
        lab.resolved_policy()
    except ValidationError as exc:
        raise inv.error(0, format_validation_error(exc)) from None
    except ConfigError as exc:
        raise inv.error(policy_var.line if policy_var else 0, str(exc)) from None
    log.info("inventory %s: %d host(s), goal %s", source, len(hosts), lab.goal.value)
    return lab


def load_inventory(
    path: str | Path, *, goal: Stage | str = Stage.BASELINED, policy: str | None = None
) -> LabFile:
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{p}: inventory directories are not supported; name a file")
    try:
        text = read_limited(p)
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such inventory file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read inventory: {exc}") from None
    if text.startswith("#!"):
        raise ConfigError(f"{p}: dynamic inventory scripts are not run; export it to YAML")
    yaml_format = True if p.suffix.lower() in _YAML_SUFFIXES else None
    return parse_inventory(text, source=str(p), yaml_format=yaml_format, goal=goal, policy=policy)


def lab_with_inventory(
    lab: Mapping[str, Any], inventory: LabFile, *, source: str = "<lab>"
) -> LabFile:
    """A schema-2 lab's settings and roles (its YAML mapping, without `hosts:`) over the
    inventory's hosts: each host gets the roles its groups name, and the lab's `defaults`
    fill what the inventory leaves unset. A lab that lists hosts itself is refused: two
    sources of hosts would disagree."""
    if lab.get("hosts"):
        raise ConfigError(
            f"{source}: the lab lists its own hosts and an inventory was given; "
            "drop `hosts:` from the lab or the inventory"
        )
    data = {k: v for k, v in lab.items() if k != "defaults"}
    defaults = lab.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"{source}: defaults: must be a mapping of connection settings")
    data["hosts"] = [{**defaults, **h.model_dump(exclude_unset=True)} for h in inventory.hosts]
    try:
        return LabFile.model_validate(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
