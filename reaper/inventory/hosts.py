"""One Ansible host's variables → Reaper's host settings (see `reaper.inventory.load` for the map).

Secrets (ansible_password and friends) are filed in `reaper.secrets` and referenced by name; no
error message here quotes the value of a variable that might hold one.
"""

from __future__ import annotations

import logging
import re
import shlex
from typing import Any

from reaper.errors import ConfigError
from reaper.inventory.parse import Inventory, Var
from reaper.secrets import register_secret, secret_name

__all__ = ["host_id_for", "host_settings"]

log = logging.getLogger(__name__)

_SSH = {"ssh", "paramiko", "paramiko_ssh", "smart"}
_WINRM = {"winrm", "psrp"}
_TRUE = {"true", "yes", "on", "1", "y"}
_FALSE = {"false", "no", "off", "0", "n", ""}
_WINRM_AUTH = {
    "ntlm": "ntlm",
    "negotiate": "ntlm",  # pywinrm speaks NTLM where psrp would negotiate
    "kerberos": "kerberos",
    "credssp": "credssp",
    "basic": "basic",
    "plaintext": "basic",
    "ssl": "basic",
    "certificate": "certificate",
}
_PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
_BECOME_PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass")


def host_id_for(name: str) -> str:
    """A valid host_id for an inventory name (`[A-Za-z0-9][A-Za-z0-9._-]*`)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip("._-")
    return slug[:128] or "host"


class _Vars:
    """Typed access to one host's variables; errors name the line and never the value."""

    def __init__(self, inv: Inventory, host: str, hvars: dict[str, Var]) -> None:
        self.inv, self.host, self.vars = inv, host, hvars

    def error(self, key: str, message: str) -> ConfigError:
        line = self.vars[key].line if key in self.vars else self.inv.host_lines[self.host]
        return self.inv.error(line, f"host {self.host!r}: {key} {message}")

    def first(self, *keys: str) -> str | None:
        """The first of `keys` set, as a string (None when none is set)."""
        for key in keys:
            if key in self.vars and self.vars[key].value is not None:
                value = self.vars[key].value
                if isinstance(value, dict | list):
                    raise self.error(key, "must be a single value")
                return str(value)
        return None

    def key_of(self, *keys: str) -> str:
        return next((k for k in keys if k in self.vars), keys[0])

    def integer(self, *keys: str) -> int | None:
        text = self.first(*keys)
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            raise self.error(self.key_of(*keys), "must be an integer") from None

    def boolean(self, key: str) -> bool | None:
        if key not in self.vars:
            return None
        value = self.vars[key].value
        text = str(value).strip().lower()
        if isinstance(value, bool):
            return value
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise self.error(key, "must be true or false")

    def secret(self, keys: tuple[str, ...], kind: str, host_id: str) -> str | None:
        """File an inline secret in this process's registry; return its reference name."""
        for key in keys:
            var = self.vars.get(key)
            if var is None or var.value is None:
                continue
            if not isinstance(var.value, str | int | float):
                raise self.error(key, "must be a string")
            value = str(var.value)
            if "{{" in value or value.startswith("$ANSIBLE_VAULT"):
                raise self.error(
                    key, "is templated or vault-encrypted; Reaper reads only plain values"
                )
            return register_secret(secret_name(host_id, kind), value)
        return None


def _ssh_args(v: _Vars, out: dict[str, Any]) -> None:
    for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        text = v.first(key)
        if not text:
            continue
        try:
            words = shlex.split(text)
        except ValueError:
            raise v.error(key, "has unbalanced quotes") from None
        options: list[str] = []
        i = 0
        while i < len(words):
            word = words[i]
            if word in ("-o", "-J") and i + 1 < len(words):
                options.append(("ProxyJump=" if word == "-J" else "") + words[i + 1])
                i += 2
                continue
            if word.startswith("-o") and len(word) > 2:
                options.append(word[2:])
            elif word.startswith("-J") and len(word) > 2:
                options.append("ProxyJump=" + word[2:])
            i += 1
        for option in options:
            # ssh_config syntax: `Name=value` or `Name value`.
            m = re.match(r"\s*([A-Za-z]+)\s*[= ]\s*(.*)", option)
            if m is not None:
                _ssh_option(v, key, m.group(1).lower(), m.group(2).strip(), out)


def _proxy_command_jump(command: str) -> str | None:
    """`ssh [-q] [-p PORT] [-l USER] -W %h:%p [USER@]HOST` → `USER@HOST:PORT`, else None."""
    words = command.split()
    if words[:1] != ["ssh"] or "-W" not in words:
        return None
    with_arg = {"-p": "port", "-l": "user", "-W": "forward", "-i": "key", "-o": "option"}
    found: dict[str, str] = {}
    hosts: list[str] = []
    i = 1
    while i < len(words):
        word = words[i]
        if word in with_arg and i + 1 < len(words):
            found[with_arg[word]] = words[i + 1]
            i += 2
            continue
        if not word.startswith("-"):
            hosts.append(word)
        i += 1
    if len(hosts) != 1 or found.get("forward") != "%h:%p":
        return None
    host = hosts[0]
    if "user" in found and "@" not in host:
        host = f"{found['user']}@{host}"
    return host + (f":{found['port']}" if "port" in found else "")


def _ssh_option(v: _Vars, key: str, name: str, value: str, out: dict[str, Any]) -> None:
    if name == "proxyjump":
        if "," in value:
            raise v.error(key, "ProxyJump with several hops is not supported (one jump host)")
        out["jump_host"] = value
    elif name == "proxycommand":
        jump = _proxy_command_jump(value)
        if jump is None:
            raise v.error(key, "ProxyCommand other than `ssh -W %h:%p host` is not supported")
        out["jump_host"] = jump
    elif name == "userknownhostsfile":
        out["known_hosts"] = value.split()[0]
    elif name == "stricthostkeychecking" and value.lower() in ("no", "off", "accept-new"):
        # Reaper never accepts a *changed* key; "no" is narrowed to accepting new ones.
        out["accept_new_host_key"] = True
        if value.lower() != "accept-new":
            log.warning(
                "host %s: StrictHostKeyChecking=%s read as accept-new: new host keys are "
                "saved, changed ones are still refused",
                v.host,
                value,
            )


def _winrm(v: _Vars, psrp: bool) -> dict[str, Any]:
    pre = "ansible_psrp_" if psrp else "ansible_winrm_"
    w: dict[str, Any] = {}
    scheme = v.first(pre + ("protocol" if psrp else "scheme"))
    if scheme is not None:
        if scheme.lower() not in ("http", "https"):
            raise v.error(pre + ("protocol" if psrp else "scheme"), "must be http or https")
        w["scheme"] = scheme.lower()
    auth_key = pre + ("auth" if psrp else "transport")
    auth = v.first(auth_key)
    if auth is not None:
        choices = [a.strip().lower() for a in auth.strip("[]").replace("'", "").split(",")]
        known = [_WINRM_AUTH[a] for a in choices if a in _WINRM_AUTH]
        if not known:
            raise v.error(auth_key, f"must be one of {', '.join(sorted(_WINRM_AUTH))}")
        w["auth"] = known[0]
    port = v.integer(pre + "port")
    if port is not None:
        w["port"] = port
    validation_key = pre + ("cert_validation" if psrp else "server_cert_validation")
    validation = v.first(validation_key)
    if validation is not None and validation.lower() == "ignore":
        w["validate_certs"] = False
        log.warning(
            "host %s: %s=ignore: the WinRM server certificate will NOT be checked; anyone on "
            "the path can impersonate the host and read its credentials",
            v.host,
            validation_key,
        )
    for var, target in (
        (pre + ("ca_cert" if psrp else "ca_trust_path"), "ca_file"),
        (pre + "path", "path"),
        (pre + "message_encryption", "message_encryption"),
        (pre + "cert_pem", "cert_file"),
    ):
        value = v.first(var)
        if value is not None:
            w[target] = value
    if v.boolean("reaper_winrm_allow_unencrypted"):
        w["allow_unencrypted"] = True
    return w


def host_settings(inv: Inventory, name: str, hvars: dict[str, Var]) -> dict[str, Any]:
    """The `LabHost` fields for inventory host `name` with its merged variables."""
    v = _Vars(inv, name, hvars)
    host_id = host_id_for(name)
    connection = (v.first("ansible_connection") or "ssh").lower().removeprefix("ansible.builtin.")
    connection = connection.removeprefix("ansible.windows.").removeprefix("ansible.netcommon.")
    if connection not in _SSH | _WINRM | {"local"}:
        raise v.error("ansible_connection", "is not supported (ssh, paramiko, winrm, psrp, local)")
    transport = "ssh" if connection in _SSH else "winrm" if connection in _WINRM else "local"
    os_name = (v.first("reaper_os") or ("windows" if transport == "winrm" else "linux")).lower()
    os_name = {"darwin": "macos", "osx": "macos", "win": "windows"}.get(os_name, os_name)
    if os_name not in ("linux", "windows", "macos"):
        raise v.error("reaper_os", "must be linux, windows or macos")
    out: dict[str, Any] = {"host_id": host_id, "os": os_name, "transport": transport}
    if transport == "local":
        # Changing the machine Reaper runs on must be asked for by name.
        if v.boolean("reaper_allow_changes"):
            out["allow_changes"] = True
        return out
    out["address"] = v.first("ansible_host", "ansible_ssh_host") or name
    port = v.integer("ansible_port", "ansible_ssh_port")
    if port is not None:
        out["port"] = port
    user = v.first("ansible_user", "ansible_ssh_user")
    if user is not None:
        out["user"] = user
    _credentials(v, out, host_id, transport)
    timeout = v.integer("ansible_ssh_timeout", "ansible_timeout")
    if timeout is not None:
        out["connect_timeout_s"] = float(timeout)
    if transport == "ssh":
        _ssh_args(v, out)
    else:
        out["winrm"] = _winrm(v, connection == "psrp")
    known = v.first("reaper_known_hosts")
    if known is not None:
        out["known_hosts"] = known
    return out


def _credentials(v: _Vars, out: dict[str, Any], host_id: str, transport: str) -> None:
    if transport == "winrm":
        key_file = v.first(
            "ansible_winrm_cert_key_pem",
            "ansible_psrp_cert_key_pem",
            "ansible_winrm_cert_pem",
            "ansible_psrp_cert_pem",
        )
    else:
        key_file = v.first("ansible_ssh_private_key_file", "ansible_private_key_file")
    if key_file is not None:
        out["key_file"] = key_file
    password_ref = v.secret(_PASSWORD_VARS, "password", host_id)
    if password_ref is not None:
        out["password_env"] = password_ref
    become = v.boolean("ansible_become")
    if become is not None:
        out["become"] = become
    become_ref = v.secret(_BECOME_PASSWORD_VARS, "become_password", host_id)
    if become_ref is not None:
        out["become_password_env"] = become_ref
