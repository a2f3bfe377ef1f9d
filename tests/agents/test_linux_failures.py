"""dnf's output, as dnf 4.14 printed it on the RHEL-like namespace host (tests/hosts/
test_dnf_converge.py), maps to failure classes, and a failure's summary names dnf's error."""

from __future__ import annotations

import pytest

from reaper.agents.base import CommandResult
from reaper.agents.oscode.linux_ensure import _from_result
from reaper.agents.oscode.linux_failures import classify

LOCKED = (
    "Running transaction check\n"
    "RPMDB already locked by 86\n"
    "  The application with PID 86 is: python3\n"
    "    Memory :  46 M RSS (105 MB VSZ)\n"
    "    State  : Sleeping"
)
NOT_FOUND = (
    "No match for argument: reaper-no-such-package\n"
    "Error: Unable to find a match: reaper-no-such-package"
)
UNREACHABLE = (
    "Errors during downloading metadata for repository 'dead-rpms':\n"
    "  - Curl error (7): Couldn't connect to server for http://10.213.2.9/repodata/repomd.xml "
    "[Failed to connect to 10.213.2.9 port 80 after 0 ms: Couldn't connect to server]\n"
    "Error: Failed to download metadata for repo 'dead-rpms': Cannot download repomd.xml: "
    "Cannot download repodata/repomd.xml: All mirrors were tried"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(LOCKED, "PM_LOCKED"), (NOT_FOUND, "PACKAGE_NOT_FOUND"), (UNREACHABLE, "REPO_UNREACHABLE")],
)
def test_dnf_output_maps_to_its_class(text: str, expected: str) -> None:
    assert classify("package", text) == expected


def test_a_held_dnf_lock_is_summed_up_by_dnf_s_own_line() -> None:
    # dnf prints no "Error:" line for a lock: the summary is the lock line, not the last one.
    result = CommandResult(exit_code=200, stdout="@@reaper:install@@\n" + LOCKED, stderr="")
    out = _from_result("package", "package/reaper-hello", None, result)
    assert out.error_code == "PM_LOCKED"
    assert out.summary.endswith("RPMDB already locked by 86"), out.summary
