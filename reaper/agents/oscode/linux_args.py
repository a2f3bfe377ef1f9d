"""The arguments and stdin of `linux_scripts`' scripts, from a declared resource, and the
check that every value reaches a tool as a value.

A value is never spliced into a script; it travels as an argument. That alone does not stop a
package named `-oAPT::Update::Pre-Invoke::=...` from reading as an option, or a service named
`../../bin/sh` from naming another program: `argument_problem` refuses such values first.
"""

from __future__ import annotations

import re
from typing import Any

from reaper.desired.base import ResourceBase
from reaper.desired.compare import content_digest
from reaper.desired.system import Firewall, PackageRepository

__all__ = ["SERVICE_NAME", "UNRESOLVED_SERVERS", "argument_problem", "script_args"]

Props = dict[str, Any] | None

_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._:~-]*")
SERVICE_NAME = re.compile(r"[A-Za-z0-9@_][A-Za-z0-9@._:-]*")
_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\$?|[0-9]+")
_WORD = re.compile(r"[^\s\[\]#]+")
_RULE_NAME = re.compile(r"[A-Za-z0-9._:/-]+")
_DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_SYSCTL = re.compile(r"[a-z0-9_-]+(\.[A-Za-z0-9_*-]+)+")
# Not written as no servers: a resolver short of the lab's DNS server breaks a domain join.
UNRESOLVED_SERVERS = (
    "servers_from: lab host names reach an agent only resolved to addresses (the engine does "
    "that); declare servers"
)


def _bad(what: str, value: str | None, shape: re.Pattern[str]) -> str | None:
    if value is None or (shape.fullmatch(value) and value not in (".", "..")):
        return None
    return f"{what} {value!r}: not a plain name the tools would take as a value"


def _checks(resource: ResourceBase) -> list[tuple[str, str | None, re.Pattern[str]]]:
    r: Any = resource
    kind = resource.kind
    if kind == "package":
        return [("name", r.name, _PACKAGE), ("version", r.version, _PACKAGE)]
    if kind == "service":
        return [("name", r.name, SERVICE_NAME)]
    if kind == "user":
        return [("name", r.name, _ACCOUNT), *(("group", g, _ACCOUNT) for g in r.groups)]
    if kind == "group":
        return [("name", r.name, _ACCOUNT)]
    if kind == "firewall":
        return [("name", resource.rid.name, _RULE_NAME)]
    if kind == "dns_client":
        return [("search", d, _DOMAIN) for d in r.search]
    if kind == "package_repository":
        words = [("url", r.url), ("suite", r.suite), ("key_url", r.key_url)]
        words += [("component", c) for c in r.components]
        return [(what, value, _WORD) for what, value in words]
    if kind in ("file", "directory"):
        return [("owner", r.owner, _ACCOUNT), ("group", r.group, _ACCOUNT)]
    return []


def _text_problem(resource: ResourceBase) -> str | None:
    r: Any = resource
    kind = resource.kind
    if kind in ("file", "directory") and ("\n" in r.path or r.path.rstrip("/") == ""):
        return f"path {r.path!r}: not a path Reaper writes"
    for field in ("shell", "home") if kind == "user" else ():
        value = getattr(r, field)
        if value is not None and (not value.startswith("/") or "\n" in value):
            return f"{field} {value!r}: must be an absolute path"
    if kind in ("setting", "sshd_option") and ("\n" in r.value or not r.value.strip()):
        return "value: one non-empty line"
    if kind == "dns_client" and r.servers_from:
        return UNRESOLVED_SERVERS
    if kind == "setting" and not _SYSCTL.fullmatch(r.name):
        return f"name {r.name!r}: a sysctl key like net.ipv4.ip_forward"
    return None


def argument_problem(resource: ResourceBase) -> str | None:
    """Why a value of `resource` cannot be handed to the Linux tools as an argument."""
    problem = _text_problem(resource)
    if problem is not None:
        return problem
    return next((p for c in _checks(resource) if (p := _bad(*c)) is not None), None)


def _flag(value: bool | None) -> str:
    return "" if value is None else ("1" if value else "0")


def _nft_words(rule: Firewall) -> list[str]:
    words: list[str] = []
    if rule.source and rule.source != "any":
        words += ["ip6" if ":" in rule.source else "ip", "saddr", rule.source]
    if rule.proto in ("tcp", "udp"):
        words += [rule.proto] + (["dport", str(rule.port)] if rule.port is not None else [])
    elif rule.proto == "icmp":
        words += ["meta", "l4proto", "icmp"]
    words.append({"allow": "accept", "deny": "reject", "drop": "drop"}[rule.action])
    return words


def _apt_source(repo: PackageRepository) -> str:
    key = "@KEYRING@"  # the script puts the key file's path (.asc or .gpg) here
    line = " ".join(["deb", repo.url, repo.suite or "", *repo.components])
    if repo.key_url:
        line = line.replace("deb ", f"deb [signed-by={key}] ", 1)
    return (
        f"# reaper: package_repository/{repo.name} key_url={repo.key_url or ''}\n"
        + (line if repo.enabled else f"# {line}")
        + "\n"
    )


def _dnf_repo(repo: PackageRepository) -> str:
    lines = [f"[{repo.name}]", f"name={repo.name}", f"baseurl={repo.url}",
             f"enabled={int(repo.enabled)}", f"gpgcheck={int(repo.gpgcheck)}"]  # fmt: skip
    if repo.key_url:
        lines.append(f"gpgkey={repo.key_url}")
    return "\n".join(lines) + "\n"


def script_args(
    resource: ResourceBase, before: Props, text: str | None, password: str | None = None
) -> tuple[list[str], str]:
    """The converging script's arguments and stdin (`text`: a file's rendered content;
    `password`: a user's, resolved from its `password_env`)."""
    r: Any = resource
    kind = resource.kind
    if kind == "package":
        return [r.name, r.state, r.version or ""], ""
    if kind == "service":
        return [r.name, r.state, _flag(r.enabled)], ""
    if kind in ("file", "directory"):
        write = text is not None and (
            before is None or before.get("sha256") != content_digest(text)
        )
        args = [r.path, r.state, r.mode or "", r.owner or "", r.group or "", "1" if write else "0"]
        return [*args, kind], (text or "") if write else ""
    if kind == "user":
        groups = ",".join(r.groups)
        uid = "" if r.uid is None else str(r.uid)
        args = [r.name, r.state, uid, groups, r.shell or "", r.home or "", _flag(r.enabled)]
        if password is None:
            return [*args, ""], ""
        when = "always" if r.update_password == "always" else "create"
        return [*args, when], password
    if kind == "group":
        return [r.name, r.state, "" if r.gid is None else str(r.gid)], ""
    if kind in ("setting", "sshd_option"):
        return [r.name, r.value], ""
    if kind == "firewall":
        return [resource.rid.name, r.state, *_nft_words(r)], ""
    if kind == "dns_client":
        return [" ".join(r.search), *r.servers], ""
    if kind == "package_repository":
        body = _apt_source(r) if r.format == "apt" else _dnf_repo(r)
        return [r.name, r.format, r.state, r.key_url or ""], body
    raise ValueError(f"no Linux script for {kind}")
