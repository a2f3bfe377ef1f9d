"""The shipped profiles: today's hard-coded baseline (`reaper.agents.oscode.*_baseline`)
written as resources, one profile per OS. A schema-1 lab's `goal: baselined` means "the
baseline profile of the host's OS"; `goal: prepared` means its packages and features only
(what `prepare` installs); `goal: discovered` declares nothing.

Differences from the hard-coded items, on purpose:
- Linux and macOS set `PermitRootLogin prohibit-password`, not `no`: a root connection by key
  keeps working (a second baseline run no longer fails with AUTH_FAILED on every host).
- The Linux firewall is two rules (allow tcp/22, then the default drop after it) instead of
  one opaque ruleset; a management port other than 22 is the lockout guard's business.
- What resources cannot say yet stays an item of the OS code: the host-key file modes under
  /etc/ssh (a glob), macOS Gatekeeper and FileVault, the Windows Guest account by SID, the
  logon audit policy, and what Windows `prepare` enables (Defender, the firewall service).
  SMB1 is off by its server setting, not by removing a feature (FS-SMB1 on Server,
  SMB1Protocol on clients: one profile serves both).

Profiles are parsed through `parse_resources`, so they obey exactly the rules lab files do.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from reaper.desired.base import ResourceBase
from reaper.desired.parse import parse_resources
from reaper.models import Stage

__all__ = ["PROFILES", "profile", "profile_for_goal"]

BANNER = (
    "Authorized use only. Activity on this system is monitored and recorded.\n"
    "Disconnect now if you are not an authorized user.\n"
)
_SSHD = [
    {"kind": "sshd_option", "name": "PermitRootLogin", "value": "prohibit-password"},
    {"kind": "sshd_option", "name": "PasswordAuthentication", "value": "no"},
    {"kind": "sshd_option", "name": "PermitEmptyPasswords", "value": "no"},
    {"kind": "sshd_option", "name": "X11Forwarding", "value": "no"},
    {"kind": "sshd_option", "name": "MaxAuthTries", "value": "4"},
]
_LINUX: list[dict[str, Any]] = [
    {"kind": "package", "name": "auditd"},
    {"kind": "package", "name": "chrony"},
    {"kind": "package", "name": "nftables"},
    *_SSHD,
    {"kind": "directory", "path": "/etc/ssh", "mode": "0755", "owner": "root", "group": "root"},
    {"kind": "file", "path": "/etc/ssh/sshd_config", "mode": "0600", "owner": "root"},
    {"kind": "file", "path": "/etc/issue.net", "content": BANNER, "mode": "0644"},
    {"kind": "firewall", "name": "ssh", "port": 22, "proto": "tcp", "action": "allow"},
    {
        "kind": "firewall",
        "name": "default-inbound",
        "proto": "any",
        "action": "drop",
        "after": ["firewall/ssh"],
    },
    {"kind": "service", "name": "chrony", "state": "running", "enabled": True},
    {"kind": "service", "name": "auditd", "state": "running", "enabled": True},
    {"kind": "setting", "name": "kernel.randomize_va_space", "value": "2"},
    {"kind": "setting", "name": "kernel.kptr_restrict", "value": "1"},
    {"kind": "setting", "name": "kernel.dmesg_restrict", "value": "1"},
]
_MACOS: list[dict[str, Any]] = [
    *_SSHD,
    {"kind": "setting", "name": "/Library/Preferences/com.apple.alf/globalstate", "value": "1",
     "type": "int"},
    {"kind": "setting", "name": "/Library/Preferences/com.apple.alf/stealthenabled",
     "value": "1", "type": "int"},
]  # fmt: skip
_FW_POLICY = r"HKLM\SOFTWARE\Policies\Microsoft\WindowsFirewall"
_WINDOWS: list[dict[str, Any]] = [
    *(
        {"kind": "setting", "name": rf"{_FW_POLICY}\{p}Profile\EnableFirewall", "value": "1",
         "type": "dword"}
        for p in ("Domain", "Private", "Public")
    ),
    {"kind": "setting", "type": "dword", "value": "1",
     "name": r"HKLM\SYSTEM\CurrentControlSet\Control\Terminal Server\WinStations\RDP-Tcp"
             r"\UserAuthentication"},
    {"kind": "setting", "type": "dword", "value": "0",
     "name": r"HKLM\SOFTWARE\Policies\Microsoft\Windows Defender\Real-Time Protection"
             r"\DisableRealtimeMonitoring"},
    {"kind": "setting", "type": "dword", "value": "0",
     "name": r"HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU\NoAutoUpdate"},
    {"kind": "setting", "type": "dword", "value": "0",
     "name": r"HKLM\SYSTEM\CurrentControlSet\Services\LanmanServer\Parameters\SMB1"},
]  # fmt: skip

PROFILES: dict[str, list[dict[str, Any]]] = {
    "linux": _LINUX,
    "macos": _MACOS,
    "windows": _WINDOWS,
}
_INSTALLS = frozenset({"package", "windows_feature", "package_repository"})


@cache
def profile(os: str) -> tuple[ResourceBase, ...]:
    """The baseline profile of `os` as resources (parsed once)."""
    return parse_resources(PROFILES[os], f"profile {os}-baseline")


def profile_for_goal(os: str, goal: Stage) -> tuple[ResourceBase, ...]:
    """What a schema-1 lab with this stage goal declares for a host running `os`."""
    if goal is Stage.BASELINED:
        return profile(os)
    if goal is Stage.PREPARED:
        return tuple(r for r in profile(os) if r.kind in _INSTALLS)
    return ()
