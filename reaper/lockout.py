"""Never lock Reaper out: refuse a task whose effect would cut the access Reaper uses to reach
the host it runs on.

The guard reads the planned task (action and params) and how Reaper connects to that host
(`HostConnection`: transport, user, port, key or password), and answers with a refusal (a
reason and a hint) or None. It runs inside the policy's `check()`, so it applies to every
planner, before any rule: no policy, however permissive, can allow a lockout.

What counts as cutting access is data (`SSHD_RULES`, `MANAGEMENT_SERVICES`, `SHELL_PATTERNS`);
the functions only match it. Free-form shell commands are checked "where detectable": a
pattern list catches the common ways (`systemctl stop ssh`, `userdel`, `passwd -l`, a firewall
drop on the management port), not every way a shell can be used against itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reaper.models import HostConnection

__all__ = [
    "MANAGEMENT_SERVICES",
    "SHELL_PATTERNS",
    "SSHD_RULES",
    "Access",
    "Lockout",
    "access_of",
    "lockout",
]

Auth = Literal["key", "password", "agent", "winrm", "none"]


@dataclass(frozen=True, slots=True)
class Access:
    """How Reaper reaches a host: what a task must leave working."""

    transport: str
    user: str
    port: int
    auth: Auth
    # The variables of the passwords of `user` Reaper logs in or sudoes with: setting that
    # user's password from another one cuts both.
    passwords: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Lockout:
    rule: str
    reason: str
    hint: str


def access_of(conn: HostConnection) -> Access:
    if conn.transport == "winrm":
        settings = conn.winrm
        default = 5986 if settings is None or settings.scheme == "https" else 5985
        port = (settings.port if settings else None) or conn.port or default
        login = frozenset({conn.password_env} if conn.password_env else ())
        return Access("winrm", conn.user or "Administrator", port, "winrm", login)
    auth: Auth
    if conn.key_file:
        auth = "key"
    elif conn.password_env:
        auth = "password"  # paramiko may try the agent first, but the password is the plan
    elif conn.use_agent:
        auth = "agent"
    else:
        auth = "none"
    # An SSH connection with no user logs in as the local user: root when Reaper runs as root
    # is the common case in labs, so an unknown user is treated as possibly root.
    used = [conn.password_env if auth == "password" else None, conn.become_password_env]
    passwords = frozenset(v for v in used if v)
    return Access(conn.transport, conn.user or "root", conn.port or 22, auth, passwords)


_SUDO_HINT = "connect as a sudo user first (user: ops, become: true), then apply it"
_KEY_HINT = "connect with a key first (key_file), then apply it"
_KEY_AUTHS: tuple[Auth, ...] = ("key", "agent")

# sshd option (lower case) → (values that cut access, who they cut, reason, hint).
# `who` is a predicate name over Access: which connections that value locks out.
SSHD_RULES: Mapping[str, tuple[tuple[str, ...], str, str, str]] = {
    "permitrootlogin": (
        ("no",),
        "root",
        "PermitRootLogin no while Reaper connects as root",
        _SUDO_HINT,
    ),
    "permitrootlogin:password": (
        ("prohibit-password", "without-password", "forced-commands-only"),
        "root-password",
        "PermitRootLogin {value} while Reaper connects as root with a password",
        _KEY_HINT,
    ),
    "passwordauthentication": (
        ("no",),
        "password",
        "PasswordAuthentication no while Reaper connects with a password",
        _KEY_HINT,
    ),
    "kbdinteractiveauthentication": (
        ("no",),
        "password",
        "KbdInteractiveAuthentication no while Reaper connects with a password",
        _KEY_HINT,
    ),
    "pubkeyauthentication": (
        ("no",),
        "key",
        "PubkeyAuthentication no while Reaper connects with a key",
        "connect with a password first (password_env), then apply it",
    ),
    "usepam": (("no",), "password", "UsePAM no while Reaper connects with a password", _KEY_HINT),
}
_WHO: Mapping[str, Callable[[Access], bool]] = {
    "any": lambda a: True,
    "ssh": lambda a: a.transport == "ssh",
    "winrm": lambda a: a.transport == "winrm",
    "root": lambda a: a.user == "root",
    "root-password": lambda a: a.user == "root" and a.auth == "password",
    "password": lambda a: a.auth == "password",
    "key": lambda a: a.auth in _KEY_AUTHS,
}
# Services that carry Reaper's own connection, per transport.
MANAGEMENT_SERVICES: Mapping[str, frozenset[str]] = {
    "ssh": frozenset({"ssh", "sshd", "openssh", "openssh-server", "com.openssh.sshd"}),
    "winrm": frozenset({"winrm"}),
}
_BLOCKING = frozenset({"deny", "drop", "reject", "block"})
# Free-form commands: (pattern with {user} and {port} filled in, reason). Case-insensitive.
SHELL_PATTERNS: tuple[tuple[str, str, str], ...] = (
    # (regex with {user} and {port} filled in, what it does, whom it locks out)
    (r"\b(systemctl|service)\s+(stop|disable|mask)\s+(ssh|sshd|openssh)\b", "stops sshd", "ssh"),
    (r"\b(systemctl|service)\s+(ssh|sshd)\s+stop\b", "stops sshd", "ssh"),
    (r"/etc/init\.d/(ssh|sshd)\s+stop\b", "stops sshd", "ssh"),
    (r"\blaunchctl\s+(unload|bootout|disable)\b.*\bssh", "stops sshd", "ssh"),
    (r"\b(stop|set)-service\b.*\bwinrm\b", "stops WinRM", "winrm"),
    (r"\bdisable-psremoting\b", "disables PowerShell remoting", "winrm"),
    (r"\b(userdel|deluser)\s+(-\S+\s+)*{user}\b", "removes the user Reaper connects as", "any"),
    (r"\b(passwd|usermod)\s+(-\S+\s+)*-[lL]\s+(-\S+\s+)*{user}\b", "locks that user", "any"),
    (r"\bremove-localuser\b.*\b{user}\b", "removes the user Reaper connects as", "any"),
    (r"authorized_keys", "rewrites authorized_keys", "key"),
    (r"permitrootlogin\s+no\b", "forbids root logins", "root"),
    (r"passwordauthentication\s+no\b", "forbids password logins", "password"),
    (r"\bufw\s+deny\s+({port}|ssh)\b", "blocks the port", "any"),
    (r"\biptables\b.*--dport\s+{port}\b.*-j\s+(drop|reject)", "blocks the port", "any"),
    (r"\bnft\b.*\bdport\s+{port}\b.*\b(drop|reject)\b", "blocks the port", "any"),
    (
        r"\bip\s+(addr|address)\s+(del|flush)\b|\bifdown\b|\bnmcli\b.*\bdown\b",
        "drops the address",
        "any",
    ),
    (
        r"\bshutdown\s+(-h|-P|now|/s)|\bpoweroff\b|\bhalt\b|\bstop-computer\b",
        "powers it off",
        "any",
    ),
)  # fmt: skip


def _sshd(params: Mapping[str, Any], access: Access) -> Lockout | None:
    if access.transport != "ssh":
        return None
    name = str(params.get("name", "")).lower()
    value = str(params.get("value", "")).strip()
    low = value.lower()
    for key, (values, who, reason, hint) in SSHD_RULES.items():
        if key.split(":")[0] == name and low in values and _WHO[who](access):
            return Lockout(f"sshd:{key}", reason.format(value=value), hint)
    words = low.replace(",", " ").split()
    if name == "allowusers" and not any(_user_matches(w, access.user) for w in words):
        return Lockout(
            "sshd:allowusers", f"AllowUsers {value} leaves out {access.user}", _SUDO_HINT
        )
    if name == "denyusers" and any(_user_matches(w, access.user) for w in words):
        return Lockout("sshd:denyusers", f"DenyUsers {value} names {access.user}", _SUDO_HINT)
    if name in ("port", "listenaddress") and value and not _keeps_port(name, value, access.port):
        return Lockout(
            f"sshd:{name}",
            f"sshd {params.get('name')} {value}: Reaper connects on port {access.port}",
            "add the new port beside the old one first, then move the host's port in the lab",
        )
    return None


def _user_matches(pattern: str, user: str) -> bool:
    # AllowUsers entries are USER or USER@HOST, with * and ? wildcards.
    who = pattern.split("@", 1)[0]
    return re.fullmatch(re.escape(who).replace(r"\*", ".*").replace(r"\?", "."), user) is not None


def _keeps_port(name: str, value: str, port: int) -> bool:
    if name == "port":
        return value == str(port)
    _, sep, last = value.rpartition(":")
    return not sep or not last.isdigit() or last == str(port)


def _service(params: Mapping[str, Any], access: Access) -> Lockout | None:
    name = str(params.get("name", "")).lower()
    if name not in MANAGEMENT_SERVICES.get(access.transport, frozenset()):
        return None
    if params.get("state") == "stopped" or params.get("enabled") is False:
        return Lockout(
            f"service:{name}",
            f"stopping or disabling {params.get('name')}, the service Reaper connects through",
            "manage this host through another channel first",
        )
    return None


def _firewall(
    params: Mapping[str, Any], access: Access, declared: Sequence[Mapping[str, Any]] = ()
) -> Lockout | None:
    action = str(params.get("action", "allow")).lower()
    port = params.get("port")
    if action not in _BLOCKING or port not in (None, access.port, str(access.port)):
        return None
    proto = str(params.get("proto", "tcp")).lower()
    if proto not in ("tcp", "any", "all"):
        return None
    if port is None and _allowed_first(params, access, declared):
        return None  # a default drop that runs after the host's allow for our port
    where = f"port {access.port}" if port is not None else "every port"
    return Lockout(
        "firewall:management-port",
        f"a {action} rule on {where}, which Reaper connects through ({access.transport})",
        "allow the controller's address on that port first (a rule with source: …)",
    )


def _user(params: Mapping[str, Any], access: Access) -> Lockout | None:
    if str(params.get("name", "")) != access.user:
        return None
    locked = params.get("locked") is True or params.get("enabled") is False
    if params.get("state") == "absent" or locked:
        return Lockout(
            "user:connecting-user",
            f"removing or locking {access.user}, the user Reaper connects as",
            _SUDO_HINT,
        )
    source = params.get("password_env")
    if params.get("update_password") == "always" and access.passwords - {source}:
        return Lockout(
            "user:connecting-password",
            f"setting the password of {access.user}, whose password Reaper logs in or sudoes "
            f"with ({', '.join(sorted(access.passwords))}), from {source} on every run",
            "declare the variable Reaper's connection uses as its password_env, or connect "
            "with a key (and no sudo password) first",
        )
    return None


def _shell(params: Mapping[str, Any], access: Access) -> Lockout | None:
    text = str(params.get("command") or params.get("script") or "")
    for pattern, why, who in SHELL_PATTERNS:
        regex = pattern.format(user=re.escape(access.user), port=access.port)
        if _WHO[who](access) and re.search(regex, text, re.IGNORECASE):
            return Lockout(
                "shell:detected",
                f"the command {why}, which would cut Reaper's access ({access.transport}, "
                f"user {access.user}, port {access.port})",
                "run it from a console on the host, or change how Reaper connects first",
            )
    return None


def _baseline(params: Mapping[str, Any], access: Access) -> Lockout | None:
    # The shipped POSIX baseline sets PasswordAuthentication no in its sshd_hardening item.
    items = params.get("items")
    if access.transport != "ssh" or (items and "sshd_hardening" not in items):
        return None
    if access.auth == "password":
        return Lockout(
            "baseline:sshd_hardening",
            "the baseline's sshd_hardening sets PasswordAuthentication no while Reaper "
            "connects with a password",
            "connect with a key first (key_file), or leave sshd_hardening out of items",
        )
    return None


def _allowed_first(
    params: Mapping[str, Any], access: Access, declared: Sequence[Mapping[str, Any]]
) -> bool:
    """Whether the rule runs after (`after:`) a declared allow for the management port."""
    before = {str(ref).rpartition(":")[2] if ref.count(":") and "/" in ref.split(":", 1)[1]
              else str(ref) for ref in params.get("after") or ()}  # fmt: skip
    for rule in declared:
        if rule.get("kind") != "firewall" or f"firewall/{rule.get('name')}" not in before:
            continue
        allows = str(rule.get("action", "allow")).lower() == "allow"
        proto = str(rule.get("proto", "tcp")).lower() in ("tcp", "any", "all")
        if allows and proto and rule.get("port") in (access.port, str(access.port)):
            return True
    return False


_BY_VERB: Mapping[str, Callable[..., Lockout | None]] = {
    "ensure_sshd_option": _sshd,
    "ensure_service": _service,
    "ensure_firewall": _firewall,
    "ensure_user": _user,
    "run_shell": _shell,
    "run_powershell": _shell,
    "baseline": _baseline,
}


def _fields(verb: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a rule reads: an `ensure_*` task's declared resource (`params["resource"]`, the
    desired model as JSON), any other task's params themselves."""
    resource = params.get("resource") if verb.startswith("ensure_") else None
    return resource if isinstance(resource, Mapping) else params


def lockout(
    verb: str,
    params: Mapping[str, Any],
    conn: HostConnection,
    os: str,
    declared: Sequence[Mapping[str, Any]] = (),
) -> Lockout | None:
    """The lockout this task would cause on an `os` host reached through `conn`, or None. Pure.

    `ensure_*` params are `{"resource": {...}, "check_mode": bool}`: the rules read the
    resource's fields (a user's `enabled: false` is a lock, as `locked: true` is).

    A simulated host is judged as if reached the way a real one of its OS is (SSH, WinRM), so
    a lab rehearsed on sim hosts is refused the same tasks it would be refused for real. The
    local transport cuts nothing: Reaper runs there.
    """
    check = _BY_VERB.get(verb)
    if check is None or conn.transport == "local" or params.get("check_mode") is True:
        return None
    if conn.transport == "sim":
        conn = conn.model_copy(update={"transport": "winrm" if os == "windows" else "ssh"})
    if check is _firewall:
        return _firewall(_fields(verb, params), access_of(conn), declared)
    return check(_fields(verb, params), access_of(conn))
