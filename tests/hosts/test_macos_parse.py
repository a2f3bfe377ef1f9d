"""macOS action code on recorded (hand-written, see data/macos/README.md) command output."""

from __future__ import annotations

from pathlib import Path

from reaper.agents.base import CommandResult
from reaper.agents.oscode.macos import ACTIONS, parse_discover
from reaper.models import ResultStatus
from tests.hosts.fakeshell import FakeShell

DATA = Path(__file__).parent / "data" / "macos"


def test_parse_discover_recording() -> None:
    facts = parse_discover((DATA / "discover_sonoma_arm64.txt").read_text())
    assert facts["os"] == {
        "id": "macos",
        "name": "macOS",
        "version": "14.4.1",
        "pretty_name": "macOS 14.4.1",
    }
    assert facts["sw_vers"]["build"] == "23E224"
    assert facts["hostname"] == "lab-mac-01.local"
    assert {"iface": "en0", "addr": "192.168.56.21", "prefix": 24, "family": "ipv4"} in (
        facts["addresses"]
    )
    assert {"iface": "lo0", "addr": "fe80::1", "prefix": 64, "family": "ipv6"} in facts["addresses"]
    assert facts["hardware"]["chip"] == "Apple M2 Pro" and facts["hardware"]["memory_gb"] == 16
    assert facts["cpu"] == {"model": "Apple M2 Pro", "cores": 10}
    assert facts["memory_mb"] == 16384
    assert facts["disks"][0]["mount"] == "/"
    assert facts["firewall"] == {"enabled": True, "stealth": False}
    assert facts["sshd"]["enabled"] is True
    assert facts["sshd"]["passwordauthentication"] == "yes"
    assert facts["filevault"] == "Off"
    assert facts["gatekeeper"] == {"enabled": True} and facts["sip"] == {"enabled": True}
    assert facts["uid0_users"] == ["root"]
    assert [p["port"] for p in facts["listening_ports"]] == [22, 7000, 49152]
    assert facts["package_manager"] == "brew"


async def test_discover_action_runs_one_command() -> None:
    shell = FakeShell(
        {
            "@@reaper:sw_vers@@": CommandResult(
                0, (DATA / "discover_sonoma_arm64.txt").read_text(), ""
            )
        }
    )
    out = await ACTIONS.run("discover", {"sections": ["os", "filevault"]}, shell, host_id="m1")
    assert out.status == ResultStatus.SUCCESS
    assert set(out.data) == {"os", "filevault"}
    assert len(shell.commands) == 1 and shell.commands[0].argv[:2] == ["sh", "-c"]


def _mac_shell() -> FakeShell:
    recording = (DATA / "discover_sonoma_arm64.txt").read_text()
    sshd_t = recording.split("@@reaper:sshd@@\n")[1].split("@@reaper:brew@@")[0]
    return FakeShell(
        {
            "sshd -T": CommandResult(0, sshd_t, ""),
            "cat -- /etc/ssh/sshd_config": CommandResult(
                0, "Include /etc/ssh/sshd_config.d/*\n", ""
            ),
            "--getglobalstate": CommandResult(0, "Firewall is enabled. (State = 1)\n", ""),
            "--getstealthmode": CommandResult(0, "Firewall stealth mode is off\n", ""),
            "spctl --status": CommandResult(0, "assessments enabled\n", ""),
            "fdesetup status": CommandResult(0, "FileVault is Off.\n", ""),
        }
    )


async def test_baseline_check_mode_changes_nothing() -> None:
    shell = _mac_shell()
    out = await ACTIONS.run("baseline", {"check_mode": True}, shell, host_id="m1")
    items = {i["name"]: i["status"] for i in out.data["items"]}
    assert items == {
        "sshd_hardening": "would_change",
        "firewall": "unchanged",
        "firewall_stealth": "would_change",
        "gatekeeper": "unchanged",
        "filevault": "unavailable",
    }
    writes = [c for c in shell.commands if "--set" in " ".join(c.argv) or c.stdin]
    assert writes == []


async def test_baseline_apply_writes_validated_sshd_config_from_stdin() -> None:
    shell = _mac_shell()
    out = await ACTIONS.run(
        "baseline", {"items": ["sshd_hardening", "firewall_stealth"]}, shell, host_id="m1"
    )
    assert out.data["changed"] == 2
    write = next(c for c in shell.commands if c.stdin)
    assert write.argv[-1] == "/etc/ssh/sshd_config" and "sshd -t -f" in write.argv[2]
    assert write.stdin is not None and write.stdin.startswith("# BEGIN reaper baseline")
    assert "PermitRootLogin prohibit-password" in write.stdin
    assert any(c.argv[-2:] == ["--setstealthmode", "on"] for c in shell.commands)


async def test_reboot_reason_is_one_argv_word() -> None:
    shell = FakeShell({})
    reason = "$(touch /tmp/x); `id`"
    out = await ACTIONS.run("reboot", {"reason": reason}, shell, host_id="m1")
    assert out.status == ResultStatus.SUCCESS
    assert shell.commands[0].argv == ["shutdown", "-r", "now", reason]
    assert shell.commands[0].sudo
