"""macOS tool output (as brew, launchctl, dscl, defaults print it) maps to failure classes."""

from __future__ import annotations

import pytest

from reaper.actions import FAILURE_CLASSES
from reaper.agents.oscode.macos_failures import classify

CASES = [
    ("package", 'Error: No available formula with the name "bogus".', "PACKAGE_NOT_FOUND"),
    (
        "package",
        "Error: Another active Homebrew update process is already in progress.",
        "PM_LOCKED",
    ),
    (
        "package",
        "curl: (6) Could not resolve host: ghcr.io\nError: Failed to download resource",
        "REPO_UNREACHABLE",
    ),
    ("package", "Error: No space left on device @ rb_sysopen", "DISK_FULL"),
    ("package", "Error: something else", "COMMAND_FAILED"),
    (
        "service",
        "Bootstrap failed: 5: Input/output error\nTry re-running the command as root",
        "CONFIG_INVALID",
    ),
    (
        "service",
        'Bad request.\nCould not find service "com.example.x" in domain for system',
        "MISSING_DEPENDENCY",
    ),
    ("user", "<main> attribute status: eDSRecordNotFound", "MISSING_DEPENDENCY"),
    (
        "setting",
        "The domain/default pair of (com.apple.x, Key) does not exist",
        "MISSING_DEPENDENCY",
    ),
    ("firewall", "weird", "COMMAND_FAILED"),
]


@pytest.mark.parametrize(("kind", "text", "expected"), CASES)
def test_tool_output_maps_to_its_class(kind: str, text: str, expected: str) -> None:
    assert classify(kind, text) == expected


def test_every_class_is_in_the_catalog() -> None:
    for *_, expected in CASES:
        assert expected == "COMMAND_FAILED" or expected in FAILURE_CLASSES
