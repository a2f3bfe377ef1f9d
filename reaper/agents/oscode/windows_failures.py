"""A failed PowerShell error record → a failure class of `reaper.actions.FAILURE_CLASSES`.

Pure: matched on the record's FullyQualifiedErrorId and exception type (stable across
display languages), then on the message's known English phrases. Anything unrecognised is
COMMAND_FAILED.
"""

from __future__ import annotations

__all__ = ["classify"]

_DISK = ("0x80070070", "there is not enough space on the disk", "ioexception: disk full")
_REBOOT = ("0x80070bc2", "a restart is pending", "reboot is pending", "pendingreboot")
_DNS = ("dnsresolution", "domain controller for the domain", "could not be contacted")
_CLOCK = ("krb_ap_err_skew", "time difference", "clock skew")
_NOT_FOUND = ("nofeaturefound", "nomatchfound", "feature name", "does not exist in the")
_MISSING = (
    "commandnotfoundexception",
    "objectnotfound",
    "itemnotfoundexception",
    "pathnotfound",
    "usernotfound",
    "groupnotfound",
    "principalnotfound",
    "adidentitynotfoundexception",
    "noservicefoundforgivenname",
    "identitynotmappedexception",  # an ACL owner or a member that does not exist (yet)
)
_CONFIG = ("parameterargumentvalidationerror", "invalidargument", "invalidcastexception")


def classify(kind: str, error_id: str, exception_type: str = "", message: str = "") -> str:
    """The failure class of `kind`'s ensure from one PowerShell error record's parts."""
    text = f"{error_id} {exception_type} {message}".lower()
    if any(p in text for p in _DISK):
        return "DISK_FULL"
    if any(p in text for p in _REBOOT):
        return "REBOOT_PENDING"
    if kind in ("ad_domain", "domain_membership", "ad_user", "ad_group"):
        if any(p in text for p in _CLOCK):
            return "CLOCK_SKEW"
        if any(p in text for p in _DNS):
            return "DNS_MISCONFIGURED"
    if kind in ("windows_feature", "package") and any(p in text for p in _NOT_FOUND):
        return "PACKAGE_NOT_FOUND"
    if any(p in text for p in _MISSING):
        return "MISSING_DEPENDENCY"
    if kind == "setting" and any(p in text for p in _CONFIG):
        return "CONFIG_INVALID"
    return "COMMAND_FAILED"
