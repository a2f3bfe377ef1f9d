"""A failed macOS tool's output → a failure class of `reaper.actions.FAILURE_CLASSES`.

Pure: the text brew, launchctl, dscl, defaults and socketfilterfw print, matched by known
phrases (lower-cased). Anything unrecognised is COMMAND_FAILED.
"""

from __future__ import annotations

__all__ = ["classify"]

_DISK = ("no space left on device", "not enough free space")
_LOCKED = ("another active homebrew", "a `brew update` process is already running")
_UNREACHABLE = ("could not resolve host", "failed to connect to", "curl: (", "connection refused")
_NOT_FOUND = ("no available formula", "no available cask", "no formulae or casks found")
_MISSING = (
    "could not find service",  # launchctl print: Could not find service "x" in domain
    "no such process",  # launchctl bootout of an unloaded job
    "edsrecordnotfound",  # dscl: eDSRecordNotFound
    "does not exist",  # defaults read: The domain/default pair of (x, y) does not exist
    "no such file or directory",
    "group not found",  # dseditgroup -o edit -a user GROUP of a missing group
)
_CONFIG = ("bootstrap failed: 5", "input/output error", "edsinvalid", "could not parse")


def classify(kind: str, text: str) -> str:
    """The failure class of `kind`'s ensure from the failing step's output."""
    low = text.lower()
    if any(p in low for p in _DISK):
        return "DISK_FULL"
    if kind == "package":
        if any(p in low for p in _LOCKED):
            return "PM_LOCKED"
        if any(p in low for p in _NOT_FOUND):
            return "PACKAGE_NOT_FOUND"
        if any(p in low for p in _UNREACHABLE):
            return "REPO_UNREACHABLE"
        return "COMMAND_FAILED"
    if kind in ("service", "setting", "sshd_option") and any(p in low for p in _CONFIG):
        return "CONFIG_INVALID"
    if any(p in low for p in _MISSING):
        return "MISSING_DEPENDENCY"
    return "COMMAND_FAILED"
