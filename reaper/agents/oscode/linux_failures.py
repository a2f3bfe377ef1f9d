"""A failed Linux tool's output → a failure class of `reaper.actions.FAILURE_CLASSES`.

Pure: the text apt, dnf, sshd, sysctl and the account tools print, matched by the phrases
they are known to print (lower-cased). Anything unrecognised is COMMAND_FAILED.
"""

from __future__ import annotations

__all__ = ["classify"]

_LOCKED = (
    "could not get lock",
    "unable to acquire the dpkg frontend lock",
    "unable to lock the administration directory",
    "is another process using it",
    "waiting for process with pid",
    "already locked by",  # dnf with exit_on_lock: "Error: RPMDB already locked by 123"
)
_DISK = ("no space left on device", "you don't have enough free space")
_UNREACHABLE = (
    "failed to fetch",
    "could not connect to",
    "temporary failure resolving",
    "could not resolve",
    "connection refused",
    "connection timed out",
    "cannot download repomd",
    "failed to download metadata",
    "some index files failed to download",
    "curl error",
)
_NOT_FOUND = (
    "unable to locate package",
    "has no installation candidate",
    "no match for argument",
    "no package ",
    "version '",  # E: Version 'x' for 'tree' was not found
)
_CONFIG = (
    "bad configuration option",
    "terminating, ",
    "unsupported option",
    "missing argument",
    "cannot stat /proc/sys",
    "invalid argument",
    "permission denied on key",
)
_DEPENDENCY = (
    "does not exist",
    "invalid user",
    "invalid group",
    "unit ",  # Unit x.service not found
    "unrecognized service",
)


def classify(kind: str, text: str, *, update: str = "") -> str:
    """The failure class of `kind`'s ensure from the failing step's output (`update`: what
    a package manager's index refresh printed before it, for a package that was not found)."""
    low = text.lower()
    if any(p in low for p in _LOCKED):
        return "PM_LOCKED"
    if any(p in low for p in _DISK):
        return "DISK_FULL"
    if kind in ("package", "package_repository"):
        refresh = update.lower()
        if any(p in low or p in refresh for p in _UNREACHABLE):
            return "REPO_UNREACHABLE"
        if kind == "package" and any(p in low for p in _NOT_FOUND):
            return "PACKAGE_NOT_FOUND"
        return "COMMAND_FAILED"
    if kind in ("sshd_option", "setting") and any(p in low for p in _CONFIG):
        return "CONFIG_INVALID"
    if any(p in low for p in _DEPENDENCY):
        return "MISSING_DEPENDENCY"
    return "COMMAND_FAILED"
