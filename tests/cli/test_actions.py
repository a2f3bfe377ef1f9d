"""`reaper actions`: the catalog as planners and policies see it, and the toolbox's policy."""

from __future__ import annotations

import json

import pytest

from reaper.actions import CATALOG
from reaper.cli import main
from reaper.desired import KIND_OS
from reaper.policy import PRESETS, Decision


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_actions_json_lists_each_os_vocabulary_with_the_policy_decision(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, _ = _run(capsys, "actions", "--os", "linux", "--json")
    assert rc == 0
    rows = {r["verb"]: r for r in json.loads(out)}
    assert set(rows) == {
        "discover", "prepare", "baseline", "reboot", "diagnose", "cleanup", "run_shell",
        *(f"ensure_{kind}" for kind, oses in KIND_OS.items() if "linux" in oses),
    }  # fmt: skip
    assert rows["ensure_package"]["risk"] == "change" and rows["ensure_package"]["check_mode"]
    assert rows["ensure_sshd_option"]["policy"]["decision"] == "allow"  # the guard's job
    assert rows["diagnose"]["risk"] == "read-only" and rows["diagnose"]["policy"]["decision"] == (
        "allow"
    )
    assert rows["run_shell"]["policy"]["decision"] == "ask"
    assert rows["cleanup"]["check_mode"] is True and rows["run_shell"]["check_mode"] is False
    assert "command" in rows["run_shell"]["params"]["properties"]

    rc, out, _ = _run(capsys, "actions", "--os", "windows", "--policy", "read-only", "--json")
    decisions = {r["verb"]: r["policy"]["decision"] for r in json.loads(out)}
    assert decisions["run_powershell"] == "deny" and decisions["diagnose"] == "allow"
    assert "run_shell" not in decisions


def test_actions_table_and_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, "actions")
    assert rc == 0 and f"{len(CATALOG)} actions" in out and "windows.run_powershell" in out
    rc, _, err = _run(capsys, "actions", "--policy", "lenient")
    assert rc == 2 and "unknown policy 'lenient'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("policy", sorted(PRESETS))
def test_free_form_shells_are_never_allowed_unasked(policy: str) -> None:
    want = Decision.DENY if policy == "read-only" else Decision.ASK
    for name in ("linux.run_shell", "macos.run_shell", "windows.run_powershell"):
        assert PRESETS[policy].decide(CATALOG[name])[0] is want, (policy, name)
