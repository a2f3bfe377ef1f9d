"""Windows action code over the real WinRM transport, against the local endpoint.

The endpoint's handlers play a Windows host: they answer the action scripts with the JSON the
scripts print and keep the host's settings, so baseline's changed/unchanged and check mode are
checked across runs. (PowerShell itself does not run here; the scripts' text is checked for
the parameters Python passes.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from reaper.actions import DIAGNOSE_TOPICS, SCRIPT_MAX
from reaper.agents.base import Command, CommandResult
from reaper.agents.oscode import windows_scripts as scripts
from reaper.agents.oscode.windows import ACTIONS, WindowsActions
from reaper.agents.runners import OsCodeRunner
from reaper.agents.transports.powershell import MAX_COMMAND_LINE, encode_command, wrap_script
from reaper.agents.transports.winrm import WinRMTransport
from reaper.models import HostConnection, ResultStatus, Task
from tests.winrm.conftest import connection
from tests.winrm.wsman_server import Call, Reply, WsmanServer

ServerFactory = Callable[..., WsmanServer]

WANT = {
    "firewall_domain": "on", "firewall_private": "on", "firewall_public": "on", "rdp_nla": True,
    "defender_realtime": True, "updates_auto": True, "smb1_disabled": False,
    "guest_disabled": False, "audit_logon": 3,
}  # fmt: skip


class FakeWindows:
    """A Windows host as the scripts see it: settings in, the scripts' JSON out."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = dict(WANT)
        self.settings.update(firewall_public="off", rdp_nla=False, smb1_disabled=True)
        self.missing: set[str] = set()  # items whose cmdlets are absent
        self.broken: set[str] = set()  # items whose change fails
        self.admins: Any = "WIN-LAB01\\Administrator"  # PS 5.1 writes a 1-array as a scalar
        self.defender_error: str | None = None
        self.params: list[dict[str, Any]] = []

    def install(self, srv: WsmanServer) -> None:
        srv.on("reaper-action: windows.discover", self.discover)
        srv.on("reaper-action: windows.baseline", self.baseline)
        srv.on("reaper-action: windows.prepare", self.prepare)
        srv.on("reaper-action: windows.reboot", self.reboot)
        srv.on("reaper-action: windows.diagnose", self.diagnose)
        srv.on("reaper-action: windows.cleanup", self.cleanup)
        srv.on("reaper-action: windows.run_powershell", self.run_powershell)

    def discover(self, call: Call) -> Reply:
        self.params.append(call.params)
        s = self.settings
        facts: dict[str, Any] = {
            "computer": {"name": "WIN-LAB01", "domain": "LAB.LOCAL",
                         "os_name": "Microsoft Windows Server 2022 Datacenter",
                         "os_version": "10.0.20348", "build": 20348, "description": ""},
            "addresses": {"iface": "Ethernet0", "addr": "10.0.0.5"},
            "cpu": {"model": "AMD EPYC 7763", "cores": 4},
            "memory_mb": 8192,
            "firewall": {p: s[f"firewall_{p}"] for p in ("domain", "private", "public")},
            "rdp": {"enabled": True, "nla": s["rdp_nla"]},
            "defender": {"realtime": s["defender_realtime"], "signatures_age_days": 3},
            "updates": {"auto": s["updates_auto"], "last_installed": "2025-05-14"},
            "local_admins": self.admins,
            "smb": {"v1_enabled": s["smb1_disabled"]},
        }  # fmt: skip
        errors = {}
        if self.defender_error:
            facts["defender"] = None
            errors["defender"] = self.defender_error
        wanted = call.params.get("Sections")
        if wanted:
            facts = {k: v for k, v in facts.items() if k in wanted}
        facts["discover_errors"] = errors
        return Reply(stdout=json.dumps(facts) + "\r\n")

    def _items(self, call: Call, names: list[str], want: dict[str, Any]) -> list[dict[str, Any]]:
        check = bool(call.params.get("CheckMode", False))
        out = []
        for name in call.params.get("Items") or names:
            r = {"name": name, "changed": False, "before": None, "after": None,
                 "error": None, "missing": False}  # fmt: skip
            if name in self.missing:
                r |= {"error": f"The term 'Get-{name}' is not recognized", "missing": True}
            else:
                r["before"] = r["after"] = self.settings.get(name)
                if r["before"] != want[name]:
                    r |= {"changed": True, "after": want[name]}
                    if name in self.broken:
                        r["error"] = "Access is denied."
                    elif not check:
                        self.settings[name] = want[name]
            out.append(r)
        return out

    def baseline(self, call: Call) -> Reply:
        self.params.append(call.params)
        items = self._items(call, list(WANT), WANT)
        return Reply(stdout=json.dumps({"check_mode": call.params["CheckMode"], "items": items}))

    def prepare(self, call: Call) -> Reply:
        self.params.append(call.params)
        want = {"defender": True, "firewall_service": "Automatic/Running"}
        self.settings.setdefault("defender", False)
        self.settings.setdefault("firewall_service", "Automatic/Running")
        return Reply(stdout=json.dumps({"items": self._items(call, list(want), want)}))

    def reboot(self, call: Call) -> Reply:
        self.params.append(call.params)
        return Reply(stdout=json.dumps({"scheduled": True, "delay_s": call.params["DelayS"]}))

    def diagnose(self, call: Call) -> Reply:
        self.params.append(call.params)
        report = {t: f"{t} report" for t in call.params["Topics"]}
        findings = "disk C: is 97% full"  # PS 5.1 writes a one-element array as a scalar
        return Reply(stdout=json.dumps({"report": report, "findings": findings}))

    def cleanup(self, call: Call) -> Reply:
        self.params.append(call.params)
        targets = {t: {"files": 3, "bytes": 3 * 1_048_576} for t in call.params["Targets"]}
        check = call.params["CheckMode"]
        return Reply(stdout=json.dumps({"targets": targets, "check_mode": check}))

    def run_powershell(self, call: Call) -> Reply:
        self.params.append(call.params)
        failed = "throw" in call.params["Script"]
        return Reply(stdout="ran\r\n", stderr="boom" if failed else "", exit_code=int(failed))


@pytest.fixture
def host(make_server: ServerFactory, ca_file: Any) -> tuple[FakeWindows, WsmanServer, Any]:
    fake = FakeWindows()
    srv = make_server()
    fake.install(srv)
    return fake, srv, connection(srv, ca_file=str(ca_file))


def task(action: str, **params: Any) -> Task:
    return Task(
        task_id="t1", mission_id="m", host_id="win1", agent_type="reaper-windows",
        action=action, params=params,
    )  # fmt: skip


async def run(transport: WinRMTransport, conn: HostConnection, action: str, **params: Any) -> Any:
    return await OsCodeRunner(transport, {"windows": ACTIONS}).run(
        task(action, **params), "win1", conn
    )


async def test_discover_over_https_gives_structured_facts(
    host: Any, transport: WinRMTransport
) -> None:
    fake, _, conn = host
    out = await run(transport, conn, "windows.discover")
    assert out.status is ResultStatus.SUCCESS, out.summary
    d = out.data
    assert d["computer"] == {
        "name": "WIN-LAB01", "domain": "LAB.LOCAL",
        "os_name": "Microsoft Windows Server 2022 Datacenter", "os_version": "10.0.20348",
        "build": "20348", "description": "",
    }  # fmt: skip
    assert d["firewall"] == {"domain": "on", "private": "on", "public": "off"}
    assert d["rdp"] == {"enabled": True, "nla": False}
    assert d["defender"] == {"realtime": True, "signatures_age_days": 3}
    assert d["updates"] == {"auto": True, "last_installed": "2025-05-14"}
    assert d["local_admins"] == ["WIN-LAB01\\Administrator"]
    assert d["addresses"] == [{"iface": "Ethernet0", "addr": "10.0.0.5"}]
    assert d["smb"] == {"v1_enabled": True} and d["discover_errors"] == {}
    assert "Windows Server 2022" in out.summary
    json.dumps(d)  # plain JSON, ready for a ResultEvent
    assert fake.params == [{}]


async def test_discover_sections_and_a_failed_section(host: Any, transport: WinRMTransport) -> None:
    fake, _, conn = host
    fake.defender_error = "The term 'Get-MpComputerStatus' is not recognized"
    out = await run(transport, conn, "windows.discover", sections=["computer", "defender"])
    assert out.status is ResultStatus.SUCCESS
    assert fake.params[-1] == {"Sections": ["computer", "defender"]}
    assert set(out.data) == {"computer", "defender", "discover_errors"}
    assert out.data["defender"] is None
    assert "Get-MpComputerStatus" in out.data["discover_errors"]["defender"]
    assert "1 sections failed" in out.summary


async def test_unknown_section_or_item_runs_nothing(host: Any, transport: WinRMTransport) -> None:
    _, srv, conn = host
    out = await run(transport, conn, "windows.discover", sections=["bios"])
    assert (out.status, out.error_code) == (ResultStatus.ERROR, "INVALID_PARAMS")
    out = await run(transport, conn, "windows.baseline", items=["firewall_domain", "nope"])
    assert out.error_code == "INVALID_PARAMS" and "nope" in out.summary
    assert "Command" not in srv.actions()


async def test_baseline_check_mode_then_apply_then_unchanged(
    host: Any, transport: WinRMTransport
) -> None:
    fake, srv, conn = host
    before = dict(fake.settings)
    check = await run(transport, conn, "windows.baseline", check_mode=True)
    assert check.status is ResultStatus.SUCCESS, check.summary
    assert fake.settings == before  # check mode changed nothing
    assert check.data["check_mode"] is True
    would = {i["name"] for i in check.data["items"] if i["status"] == "would_change"}
    assert would == {"firewall_public", "rdp_nla", "smb1_disabled"}
    assert not any(i["changed"] for i in check.data["items"])
    counts = [check.data[k] for k in ("changed", "would_change", "unchanged", "failed")]
    assert counts == [0, 3, 6, 0]
    assert check.summary == "baseline on win1: check mode: 3 would_change, 6 unchanged"

    applied = await run(transport, conn, "windows.baseline")
    assert applied.status is ResultStatus.SUCCESS
    assert {i["name"] for i in applied.data["items"] if i["status"] == "changed"} == would
    assert (applied.data["changed"], applied.data["unchanged"]) == (3, 6)
    item = next(i for i in applied.data["items"] if i["name"] == "rdp_nla")
    assert (item["before"], item["after"]) == (False, True)
    assert fake.settings == WANT

    again = await run(transport, conn, "windows.baseline")
    assert (again.data["changed"], again.data["unchanged"]) == (0, 9)
    assert fake.params[0] == {"CheckMode": True}
    assert fake.params[1] == {"CheckMode": False}
    assert srv.actions().count("Create") == 1  # three actions, one shell


async def test_baseline_items_subset(host: Any, transport: WinRMTransport) -> None:
    fake, _, conn = host
    out = await run(transport, conn, "windows.baseline", items=["rdp_nla", "audit_logon"])
    assert fake.params[-1] == {"CheckMode": False, "Items": ["rdp_nla", "audit_logon"]}
    assert [i["name"] for i in out.data["items"]] == ["rdp_nla", "audit_logon"]
    assert fake.settings["firewall_public"] == "off"  # not asked for: untouched


async def test_baseline_missing_prerequisite_and_partial_failure(
    host: Any, transport: WinRMTransport
) -> None:
    fake, _, conn = host
    fake.missing = {"defender_realtime"}
    out = await run(transport, conn, "windows.baseline")
    assert (out.status, out.error_code) == (ResultStatus.ERROR, "PREREQ_MISSING")
    assert out.data["missing"] == ["defender_realtime"] and out.data["fix"] == "windows.prepare"
    fake.missing = set()
    fake.settings["smb1_disabled"] = True
    fake.broken = {"smb1_disabled"}
    out = await run(transport, conn, "windows.baseline")
    assert (out.status, out.error_code) == (ResultStatus.PARTIAL, "COMMAND_FAILED")
    assert "failed: smb1_disabled (Access is denied.)" in out.summary
    item = next(i for i in out.data["items"] if i["name"] == "smb1_disabled")
    assert (item["status"], item["detail"]) == ("failed", "Access is denied.")
    assert out.data["failed"] == 1


async def test_prepare_reports_installed_and_present(host: Any, transport: WinRMTransport) -> None:
    _, _, conn = host
    out = await run(transport, conn, "windows.prepare")
    assert out.status is ResultStatus.SUCCESS
    assert out.data == {"installed": ["defender"], "already_present": ["firewall_service"]}


async def test_reboot_params_are_data(host: Any, transport: WinRMTransport) -> None:
    fake, srv, conn = host
    reason = "patch'; Remove-Item C:\\ -Recurse; '$(calc)"
    out = await run(transport, conn, "windows.reboot", delay_s=30, reason=reason)
    assert out.status is ResultStatus.SUCCESS and "in 30 s" in out.summary
    assert fake.params[-1] == {"DelayS": 30, "Reason": reason}
    assert reason not in srv.calls()[-1].script


async def test_diagnose_cleanup_and_run_powershell_pass_values_as_data(
    host: Any, transport: WinRMTransport
) -> None:
    fake, srv, conn = host
    dc = "dc-01.lab.local"
    out = await run(transport, conn, "windows.diagnose", service="W32Time", target=dc)
    assert out.status is ResultStatus.SUCCESS, out.summary
    assert out.data["findings"] == ["disk C: is 97% full"] and "97% full" in out.summary
    assert tuple(out.data["report"]) == DIAGNOSE_TOPICS
    assert fake.params[-1]["Service"] == "W32Time" and fake.params[-1]["LogLines"] == 40
    assert dc not in srv.calls()[-1].script

    check = await run(transport, conn, "windows.cleanup", targets=["temp"], check_mode=True)
    assert check.data == {
        "targets": {"temp": {"files": 3, "bytes": 3 * 1_048_576}},
        "check_mode": True,
        "changed": False,
    }
    assert "would free 3.0 MiB" in check.summary

    script = "Get-Service W32Time | Restart-Service"
    ran = await run(transport, conn, "windows.run_powershell", script=script, reason="restart")
    assert ran.status is ResultStatus.SUCCESS and ran.data == {"exit_code": 0}
    assert fake.params[-1] == {"Script": script} and script not in srv.calls()[-1].script
    bad = await run(transport, conn, "windows.run_powershell", script="throw 'x'", reason="t")
    assert bad.status is ResultStatus.ERROR and bad.error_code == "COMMAND_FAILED"
    assert "boom" in bad.stderr_tail


class Canned:
    """A CommandRunner answering with a fixed result (for output-parsing cases)."""

    def __init__(self, stdout: str = "", stderr: str = "", exit_code: int = 0) -> None:
        self.result = CommandResult(exit_code=exit_code, stdout=stdout, stderr=stderr)
        self.commands: list[Command] = []

    async def run(self, command: Command) -> CommandResult:
        self.commands.append(command)
        return self.result


@pytest.mark.parametrize(
    ("stdout", "why"),
    [
        ("WARNING: something\r\n", "not JSON"),
        ('{"computer": {"name": "X"}, "firewall": {"domain": "maybe"}}', "firewall.domain"),
        ('{"computer": {"domain": "X"}}', "computer.name"),
        ("[1, 2]", "unexpected JSON"),
    ],
)
async def test_bad_discover_output_is_command_failed(stdout: str, why: str) -> None:
    out = await WindowsActions().run("discover", {}, Canned(stdout), host_id="win1")
    assert (out.status, out.error_code, out.retriable) == (
        ResultStatus.ERROR,
        "COMMAND_FAILED",
        False,
    )
    assert "windows.discover returned unusable output" in out.summary and why in out.summary
    assert out.stdout_tail == stdout


async def test_nonzero_exit_is_command_failed_with_the_error_line() -> None:
    shell = Canned(stderr="\r\nAccess is denied.\r\nAt line:1 char:1\r\n", exit_code=1)
    out = await ACTIONS.run("baseline", {"check_mode": True}, shell, host_id="win1")
    assert out.error_code == "COMMAND_FAILED"
    assert out.summary == "windows.baseline exited 1: Access is denied."


async def test_unknown_verb_and_bad_params() -> None:
    out = await ACTIONS.run("format_disk", {}, Canned(), host_id="win1")
    assert out.error_code == "UNKNOWN_ACTION"
    out = await ACTIONS.run("reboot", {"delay_s": -5}, Canned(), host_id="win1")
    assert out.error_code == "INVALID_PARAMS"


@pytest.mark.parametrize(
    ("script", "params"),
    [
        (scripts.DISCOVER, {"Sections": list(scripts.DISCOVER_SECTIONS)}),
        (scripts.BASELINE, {"CheckMode": True, "Items": list(scripts.BASELINE_ITEMS)}),
        (scripts.PREPARE, {"Items": list(scripts.PREPARE_ITEMS)}),
        (scripts.REBOOT, {"DelayS": 3600, "Reason": "x" * 200}),
        (
            scripts.DIAGNOSE,
            {
                "Topics": ["disk"] * 6,
                "Service": "s" * 128,
                "Target": "t" * 128,
                "Port": 1,
                "LogLines": 200,
            },
        ),
        (scripts.CLEANUP, {"Targets": ["package_cache"] * 3, "OlderThanDays": 9, "CheckMode": 1}),
        (scripts.RUN_POWERSHELL, {"Script": "x" * SCRIPT_MAX}),
        (scripts.RUN_POWERSHELL, {"Script": "\U0001f600" * (SCRIPT_MAX // 12)}),  # escaped: 12
    ],
)
def test_scripts_declare_their_params_and_fit_one_command_line(
    script: str, params: dict[str, Any]
) -> None:
    declared = re.search(r"^param\((.*)\)$", script, re.MULTILINE)
    assert declared is not None
    for name in params:
        assert f"${name}" in declared.group(1)
    line = " ".join(["powershell.exe", *encode_command(wrap_script(script, params))])
    assert len(line) < MAX_COMMAND_LINE
