"""The arguments of `macos_scripts`' scripts, from a declared resource, and the check that
every value reaches brew, launchctl, dscl, defaults or networksetup as a value.

Values travel as arguments, never spliced into a script; `argument_problem` also refuses the
ones a tool would read as an option (`-x`) or as another record (`../Groups/admin`).
"""

from __future__ import annotations

import re
from typing import Any

from reaper.agents.oscode.linux_args import UNRESOLVED_SERVERS
from reaper.agents.oscode.linux_args import script_args as linux_script_args
from reaper.desired.base import ResourceBase
from reaper.desired.system import Firewall

__all__ = ["argument_problem", "script_args", "split_setting"]

Props = dict[str, Any] | None

# Homebrew names: `tree`, `python@3.12`, `homebrew/cask/firefox` (tap/name).
_BREW = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._@-]*(/[A-Za-z0-9][A-Za-z0-9+._@-]*){0,2}")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # launchd labels: com.openssh.sshd
_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_DEFAULTS_DOMAIN = re.compile(r"/?[A-Za-z0-9_][A-Za-z0-9._ -]*(/[A-Za-z0-9_][A-Za-z0-9._ -]*)*")
_DEFAULTS_KEY = re.compile(r"[A-Za-z0-9_][^\n/]*")
_NETWORK_SERVICE = re.compile(r"[A-Za-z0-9][^\n*]*")  # "Wi-Fi", "USB 10/100/1000 LAN"
_TYPE_FLAGS = {None: "-string", "string": "-string", "int": "-int", "float": "-float",
               "bool": "-bool"}  # fmt: skip
_RULE_NAME = re.compile(r"[A-Za-z0-9._:/-]+")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def split_setting(name: str) -> tuple[str, str]:
    """A setting's `defaults` domain and key (the key is after the last slash)."""
    domain, _, key = name.rpartition("/")
    return domain, key


def _bad(what: str, value: str | None, shape: re.Pattern[str]) -> str | None:
    if value is None or (shape.fullmatch(value) and ".." not in value.split("/")):
        return None
    return f"{what} {value!r}: not a plain name the tools would take as a value"


def _setting_problem(r: Any) -> str | None:
    problem = r.os_problem("macos")
    if problem is not None:
        return str(problem)
    domain, key = split_setting(r.name)
    why = _bad("domain", domain, _DEFAULTS_DOMAIN) or _bad("key", key, _DEFAULTS_KEY)
    if why is not None:
        return why
    if "\n" in r.value:
        return "value: one line"
    value = r.value.strip().lower()
    if r.type == "bool" and value not in _TRUE | _FALSE:
        return f"value {r.value!r}: a bool is true or false"
    if r.type == "int" and not re.fullmatch(r"-?[0-9]+", value):
        return f"value {r.value!r}: not an integer"
    if r.type == "float" and not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value):
        return f"value {r.value!r}: not a number"
    return None


def argument_problem(resource: ResourceBase) -> str | None:
    """Why a value of `resource` cannot be handed to the macOS tools as an argument."""
    r: Any = resource
    kind = resource.kind
    if kind == "setting":
        return _setting_problem(r)
    if kind == "dns_client" and r.servers_from:
        return UNRESOLVED_SERVERS
    if kind in ("file", "directory") and ("\n" in r.path or r.path.rstrip("/") == ""):
        return f"path {r.path!r}: not a path Reaper writes"
    if kind == "sshd_option" and ("\n" in r.value or not r.value.strip()):
        return "value: one non-empty line"
    if kind == "user" and r.password_env is not None and r.state == "present":
        # Refused, not skipped: an account left without the password the lab declares.
        # macOS's tools (dscl -passwd, sysadminctl) take a password only as an argument.
        return "password_env: setting a macOS account's password is not supported yet"
    if kind == "user":
        for field in ("shell", "home"):
            value = getattr(r, field)
            if value is not None and (not value.startswith("/") or "\n" in value):
                return f"{field} {value!r}: must be an absolute path"
    checks: list[tuple[str, str | None, re.Pattern[str]]] = {
        "package": [("name", getattr(r, "name", None), _BREW)],
        "service": [("name", getattr(r, "name", None), _LABEL)],
        "group": [("name", getattr(r, "name", None), _ACCOUNT)],
        "user": [
            ("name", getattr(r, "name", None), _ACCOUNT),
            *(("group", g, _ACCOUNT) for g in getattr(r, "groups", ())),
        ],
        "firewall": [("name", resource.rid.name, _RULE_NAME)],
        "file": [
            ("owner", getattr(r, "owner", None), _ACCOUNT),
            ("group", getattr(r, "group", None), _ACCOUNT),
        ],
        "directory": [
            ("owner", getattr(r, "owner", None), _ACCOUNT),
            ("group", getattr(r, "group", None), _ACCOUNT),
        ],
        "dns_client": [
            ("network service", resource.rid.name, _NETWORK_SERVICE),
            *(("search", d, _DOMAIN) for d in getattr(r, "search", ())),
        ],
    }.get(kind, [])
    return next((p for c in checks if (p := _bad(*c)) is not None), None)


def _flag(value: bool | None) -> str:
    return "" if value is None else ("1" if value else "0")


def _defaults_value(r: Any) -> str:
    if r.type == "bool":
        return "true" if r.value.strip().lower() in _TRUE else "false"
    return str(r.value.strip() if r.type in ("int", "float") else r.value)


def _pf_words(rule: Firewall) -> list[str]:
    verdict = {"allow": ["pass"], "deny": ["block", "return"], "drop": ["block", "drop"]}
    words = [*verdict[rule.action], "in", "quick"]
    if rule.proto != "any":
        words += ["proto", rule.proto]
    source = rule.source if rule.source and rule.source != "any" else "any"
    words += ["from", source, "to", "any"]
    if rule.port is not None and rule.proto in ("tcp", "udp"):
        words += ["port", str(rule.port).replace("-", ":")]
    return words


def script_args(
    resource: ResourceBase, before: Props, text: str | None = None, password: str | None = None
) -> tuple[list[str], str]:
    """The converging script's arguments and stdin (`text`: a file's rendered content;
    `password` is never given: macOS account passwords are not set yet)."""
    if resource.kind in ("file", "directory"):
        return linux_script_args(resource, before, text)  # the same arguments, a BSD script
    return _args(resource), ""


def _args(resource: ResourceBase) -> list[str]:
    r: Any = resource
    kind = resource.kind
    if kind == "package":
        return [r.name, r.state]
    if kind == "service":
        return [r.name, r.state, _flag(r.enabled)]
    if kind == "setting":
        domain, key = split_setting(r.name)
        return [domain, key, _TYPE_FLAGS[r.type], _defaults_value(r)]
    if kind == "user":
        uid = "" if r.uid is None else str(r.uid)
        groups = ",".join(r.groups)
        return [r.name, r.state, uid, groups, r.shell or "", r.home or "", _flag(r.enabled)]
    if kind == "group":
        return [r.name, r.state, "" if r.gid is None else str(r.gid)]
    if kind == "dns_client":
        return [resource.rid.name, " ".join(r.search), *r.servers]
    if kind == "sshd_option":
        return [r.name, r.value]
    if kind == "firewall":
        return [resource.rid.name, r.state, *_pf_words(r)]
    raise ValueError(f"no macOS script for {kind}")
