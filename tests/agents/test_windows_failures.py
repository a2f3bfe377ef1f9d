"""Windows error records (as PowerShell prints them) map to the catalog's failure classes."""

from __future__ import annotations

import pytest

from reaper.actions import FAILURE_CLASSES
from reaper.agents.oscode.windows_failures import classify

# (kind, FullyQualifiedErrorId, exception type, message) → class, from recorded records.
CASES = [
    (
        "windows_feature",
        "NoFeatureFound,Microsoft.Windows.ServerManager.Commands.AddWindowsFeatureCommand",
        "System.ArgumentException",
        "ArgumentNotValid: The role, role service, or feature name is not valid: 'Bogus'.",
        "PACKAGE_NOT_FOUND",
    ),
    (
        "service",
        "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.SetServiceCommand",
        "Microsoft.PowerShell.Commands.ServiceCommandException",
        "Service 'nope' was not found on computer '.'.",
        "MISSING_DEPENDENCY",
    ),
    (
        "domain_membership",
        "FailToConnectDomainController,Microsoft.PowerShell.Commands.AddComputerCommand",
        "System.InvalidOperationException",
        "The specified domain either does not exist or could not be contacted.",
        "DNS_MISCONFIGURED",
    ),
    (
        "ad_user",
        "ActiveDirectoryServer:0,Microsoft.ActiveDirectory.Management.Commands.NewADUser",
        "System.Security.Authentication.AuthenticationException",
        "KRB_AP_ERR_SKEW: the time difference is too large",
        "CLOCK_SKEW",
    ),
    (
        "file",
        "System.IO.IOException,Microsoft.PowerShell.Commands.SetContentCommand",
        "System.IO.IOException",
        "There is not enough space on the disk.",
        "DISK_FULL",
    ),
    (
        "ad_domain",
        "Test.VerifyPendingReboot,Microsoft.DirectoryServices.Deployment",
        "",
        "A restart is pending on this computer.",
        "REBOOT_PENDING",
    ),
    (
        "setting",
        "InvalidCastException,Microsoft.PowerShell.Commands.SetItemPropertyCommand",
        "System.InvalidCastException",
        "Cannot convert value 'abc' to type 'System.Int32'.",
        "CONFIG_INVALID",
    ),
    ("user", "Unexpected,Whatever", "System.Exception", "boom", "COMMAND_FAILED"),
]


@pytest.mark.parametrize(("kind", "error_id", "exc", "message", "expected"), CASES)
def test_error_records_map_to_their_class(
    kind: str, error_id: str, exc: str, message: str, expected: str
) -> None:
    assert classify(kind, error_id, exc, message) == expected


def test_every_class_is_in_the_catalog() -> None:
    for *_, expected in CASES:
        assert expected == "COMMAND_FAILED" or expected in FAILURE_CLASSES


def test_dns_phrases_only_count_for_domain_kinds() -> None:
    # A file share that "could not be contacted" is not a DNS misconfiguration of a domain.
    assert classify("file", "X", "", "The network path could not be contacted.") == (
        "COMMAND_FAILED"
    )
