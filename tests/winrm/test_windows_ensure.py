"""`windows.ensure_*` and discover's declared resources end to end: pywinrm's real protocol
code against the local WS-Management endpoint, which answers the scripts with the JSON they
print on a real host (PowerShell cannot be installed here: no .NET runtime or NuGet feed is
reachable, so the scripts themselves are checked in `test_windows_ensure_scripts`)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from reaper.agents.oscode.windows import ACTIONS
from reaper.agents.transports.winrm import WinRMTransport
from reaper.models import ResultStatus
from reaper.secrets import redact
from tests.winrm.conftest import connection
from tests.winrm.wsman_server import Call, Reply, WsmanServer

ServerFactory = Callable[..., WsmanServer]
JOIN_ENV = "REAPER_TEST_JOIN_PASSWORD"
JOIN_PASSWORD = "J0in-'; Remove-Item C:\\ -Recurse #"
JOIN = {"kind": "domain_membership", "domain": "lab.local", "credentials_env": JOIN_ENV,
        "user": "LAB\\joiner"}  # fmt: skip
MEMBER = {"state": "present", "user": "LAB\\joiner", "ou": None}


def _stdin(call: Call) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in call.stdin.splitlines() if "=" in line)
    return {k: base64.b64decode(v).decode() for k, v in pairs}


class FakeHost:
    """A Windows host as the ensure scripts see it: joined or not, a restart pending or not."""

    def __init__(self) -> None:
        self.member = False
        self.joined_pending = False  # joined, the restart not done yet
        self.pending_reboot = False
        self.calls: list[Call] = []

    def install(self, srv: WsmanServer) -> None:
        srv.on("reaper-action: windows.ensure_domain_membership", self.join)
        srv.on("reaper-action: windows.observe", self.observe)
        srv.on("reaper-action: windows.discover", self.discover)

    def _state(self) -> dict[str, Any] | None:
        if self.joined_pending:  # Netlogon's JoinDomain key, until the restart
            return {**MEMBER, "restart_pending": True}
        return dict(MEMBER) if self.member else None

    def join(self, call: Call) -> Reply:
        self.calls.append(call)
        before = self._state()
        pending = before is not None and before.get("restart_pending") is True
        out: dict[str, Any] = {"before": before, "after": before, "changed": False,
                               "reboot_required": pending, "error": None}  # fmt: skip
        if before is None and self.pending_reboot:
            out["error"] = {
                "id": "PendingReboot: Add-Computer cannot run: a restart is pending",
                "type": "System.Management.Automation.RuntimeException",
                "message": "PendingReboot: Add-Computer cannot run: a restart is pending",
            }
        elif before is None:
            out["changed"] = True
            if not call.params["CheckMode"]:
                assert _stdin(call) == {"password": JOIN_PASSWORD}
                self.joined_pending = True
                out["reboot_required"] = True  # Win32_ComputerSystem shows it after the restart
        return Reply(stdout=json.dumps(out))

    def observe(self, call: Call) -> Reply:
        self.calls.append(call)
        found = {}
        for i, item in enumerate(json.loads(_stdin(call)["resources"])):
            if item["kind"] == "windows_feature":
                found[f"r{i}"] = {"state": "present", "install_state": "Installed"}
            elif item["kind"] == "user":
                found[f"r{i}"] = {"state": "present", "groups": "Users", "enabled": True}
            else:
                found[f"r{i}"] = self._state()
        return Reply(stdout=json.dumps({"resources": found, "errors": {}}))

    def discover(self, call: Call) -> Reply:
        facts = {"computer": {"name": "WIN-LAB02", "domain": "WORKGROUP"}, "discover_errors": {}}
        return Reply(stdout=json.dumps(facts))


@pytest.fixture
def host(make_server: ServerFactory, ca_file: Any) -> tuple[FakeHost, Any]:
    srv = make_server()
    fake = FakeHost()
    fake.install(srv)
    return fake, connection(srv, ca_file=str(ca_file))


async def _ensure(
    transport: WinRMTransport, conn: Any, kind: str, resource: dict[str, Any], check: bool = False
) -> Any:
    shell = await transport.session("win2", conn)
    params = {"resource": resource, "check_mode": check}
    return await ACTIONS.run(f"ensure_{kind}", params, shell, host_id="win2")


async def test_a_join_is_a_success_that_needs_a_restart_and_its_password_stays_off_the_line(
    host: tuple[FakeHost, Any], transport: WinRMTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, conn = host
    monkeypatch.setenv(JOIN_ENV, JOIN_PASSWORD)
    out = await _ensure(transport, conn, "domain_membership", JOIN)
    assert out.status is ResultStatus.SUCCESS, out.summary
    assert out.data["result"] == "changed" and out.data["reboot_required"] is True
    assert out.data["before"] is None and out.data["after"]["state"] == "present"
    call = fake.calls[-1]
    encoded = base64.b64encode(JOIN_PASSWORD.encode()).decode()
    for text in (call.command_line, call.script, json.dumps(call.params)):
        assert JOIN_PASSWORD not in text and encoded not in text
    assert call.params["R"]["has_password"] is True and "credentials_env" not in call.params["R"]
    # Resolved once, it is a known secret: masked in tails, results and the ledger.
    assert JOIN_PASSWORD not in redact(f"Add-Computer: bad password {JOIN_PASSWORD}")


async def test_check_mode_changes_nothing_and_a_second_run_is_unchanged(
    host: tuple[FakeHost, Any], transport: WinRMTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, conn = host
    monkeypatch.setenv(JOIN_ENV, JOIN_PASSWORD)
    checked = await _ensure(transport, conn, "domain_membership", JOIN, check=True)
    assert checked.status is ResultStatus.SUCCESS
    assert checked.data["result"] == "would_change" and not fake.joined_pending
    assert fake.calls[-1].params["CheckMode"] is True
    fake.member = True
    again = await _ensure(transport, conn, "domain_membership", JOIN)
    assert again.data["result"] == "unchanged" and again.data["reboot_required"] is False


async def test_a_second_ensure_before_the_restart_joins_nothing_and_still_needs_it(
    host: tuple[FakeHost, Any], transport: WinRMTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, conn = host
    fake.joined_pending = True  # an earlier run's Add-Computer, the restart not done
    monkeypatch.setenv(JOIN_ENV, JOIN_PASSWORD)
    checked = await _ensure(transport, conn, "domain_membership", JOIN, check=True)
    assert checked.status is ResultStatus.SUCCESS, checked.summary
    assert checked.data["result"] == "would_change"
    again = await _ensure(transport, conn, "domain_membership", JOIN)
    assert again.status is ResultStatus.SUCCESS, again.summary
    # Not `unchanged` (it is not converged before the restart), and not joined again.
    assert again.data["result"] == "changed" and again.data["reboot_required"] is True
    assert again.data["before"] == again.data["after"] == {**MEMBER, "restart_pending": True}
    assert "waits for a restart" in again.summary
    # Discover reads it the same way: as declared, the restart still to come.
    shell = await transport.session("win2", conn)
    seen = await ACTIONS.run("discover", {"resources": [JOIN]}, shell, host_id="win2")
    assert seen.data["resources"] == {"domain_membership/lab.local": again.data["after"]}
    # The restart done, the host is a member and the join is unchanged.
    fake.joined_pending, fake.member = False, True
    done = await _ensure(transport, conn, "domain_membership", JOIN)
    assert done.data["result"] == "unchanged" and done.data["reboot_required"] is False


async def test_a_pending_restart_blocks_the_join_as_reboot_pending(
    host: tuple[FakeHost, Any], transport: WinRMTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, conn = host
    monkeypatch.setenv(JOIN_ENV, JOIN_PASSWORD)
    fake.pending_reboot = True
    out = await _ensure(transport, conn, "domain_membership", JOIN)
    assert out.status is ResultStatus.ERROR
    assert out.error_code == "REBOOT_PENDING" and out.retriable is False
    assert out.data == {"resource": "domain_membership/lab.local", "before": None}


async def test_a_missing_secret_runs_nothing(
    host: tuple[FakeHost, Any], transport: WinRMTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, conn = host
    monkeypatch.delenv(JOIN_ENV, raising=False)
    out = await _ensure(transport, conn, "domain_membership", JOIN)
    assert out.error_code == "CREDENTIALS_MISSING" and JOIN_ENV in out.summary
    assert fake.calls == []


async def test_discover_reads_every_declared_resource_in_one_round_trip(
    host: tuple[FakeHost, Any], transport: WinRMTransport
) -> None:
    fake, conn = host
    fake.member = True
    shell = await transport.session("win2", conn)
    resources = [
        {"kind": "windows_feature", "name": "Web-Server"},
        {"kind": "user", "name": "labuser", "groups": ["Users"]},
        JOIN,
        {"kind": "service", "name": "Win*"},
    ]
    out = await ACTIONS.run("discover", {"resources": resources}, shell, host_id="win2")
    assert out.status is ResultStatus.SUCCESS, out.summary
    assert out.data["resources"] == {
        "windows_feature/Web-Server": {"state": "present", "install_state": "Installed"},
        "user/labuser": {"state": "present", "groups": ["Users"], "enabled": True},
        "domain_membership/lab.local": MEMBER,
    }
    assert "3" in out.data["resource_problems"]
    assert [c.script.count("reaper-action: windows.observe") for c in fake.calls] == [1]


MOTD = "Welcome to the lab\r\n'; Remove-Item C:\\ -Recurse #\r\n"


def _file_reply(call: Call, *, written: bool) -> Reply:
    digest = call.params["R"]["content_sha256"]
    after = {"state": "present", "mode": None, "owner": "Administrators", "group": None,
             "sha256": digest if written else "sha256:00"}  # fmt: skip
    out = {"before": None, "after": after, "changed": True, "reboot_required": False,
           "error": None}  # fmt: skip
    return Reply(stdout=json.dumps(out))


async def test_a_file_content_goes_on_stdin_and_a_change_that_did_not_take_fails(
    make_server: ServerFactory, ca_file: Any, transport: WinRMTransport
) -> None:
    srv = make_server()
    seen: list[Call] = []
    srv.on(
        "ensure_file", lambda call: seen.append(call) or _file_reply(call, written=len(seen) == 1)
    )
    conn = connection(srv, ca_file=str(ca_file))
    motd = {"kind": "file", "path": "C:\\motd.txt", "content": MOTD, "owner": "Administrators"}
    ok = await _ensure(transport, conn, "file", motd)
    assert ok.status is ResultStatus.SUCCESS and ok.data["result"] == "changed", ok.summary
    assert _stdin(seen[0]) == {"content": MOTD}
    assert MOTD not in seen[0].command_line and "content" not in seen[0].params["R"]
    bad = await _ensure(transport, conn, "file", motd)
    assert bad.status is ResultStatus.ERROR and bad.error_code == "COMMAND_FAILED"
    assert "still differs" in bad.summary


async def test_a_large_lab_is_observed_in_one_command_its_list_on_stdin(
    host: tuple[FakeHost, Any], transport: WinRMTransport
) -> None:
    fake, conn = host
    shell = await transport.session("win2", conn)
    resources = [{"kind": "user", "name": f"user{i:03d}"} for i in range(300)]
    out = await ACTIONS.run("discover", {"resources": resources}, shell, host_id="win2")
    assert out.status is ResultStatus.SUCCESS, out.summary
    assert len(out.data["resources"]) == 300
    assert len(fake.calls) == 1 and "user299" not in fake.calls[0].command_line


async def test_a_secret_a_host_echoes_back_is_masked_where_results_enter_the_system(
    make_server: ServerFactory, ca_file: Any, transport: WinRMTransport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    srv = make_server()
    error = {"id": "InvalidPassword", "type": "System.ArgumentException",
             "message": f"The password {JOIN_PASSWORD} does not meet the policy"}  # fmt: skip
    out = {"before": None, "after": None, "changed": False, "error": error}
    srv.on("ensure_ad_user", lambda call: Reply(stdout=json.dumps(out)))
    monkeypatch.setenv("REAPER_TEST_AD_PASSWORD", JOIN_PASSWORD)
    user = {"kind": "ad_user", "name": "j.doe", "password_env": "REAPER_TEST_AD_PASSWORD"}
    failed = await _ensure(transport, connection(srv, ca_file=str(ca_file)), "ad_user", user)
    assert failed.status is ResultStatus.ERROR and failed.error_code == "COMMAND_FAILED"
    # The worker masks every tail and the data with `redact` before a result is published.
    assert JOIN_PASSWORD in failed.stderr_tail
    assert JOIN_PASSWORD not in redact(failed.stderr_tail) + redact(failed.summary)


AD_ENV = "REAPER_TEST_AD_PASSWORD"
JDOE = {"kind": "ad_user", "name": "j.doe", "password_env": AD_ENV, "update_password": "always"}
JDOE_SEEN = {"state": "present", "domain": "lab.local", "ou": "CN=Users,DC=lab,DC=local",
             "groups": ["Domain Users"], "enabled": True}  # fmt: skip


async def test_update_password_always_resets_an_existing_users_password_every_run_from_stdin(
    make_server: ServerFactory, ca_file: Any, transport: WinRMTransport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    srv = make_server()
    seen: list[Call] = []

    def reset(call: Call) -> Reply:
        # The script: Set-ADAccountPassword through Invoke-ReaperChange (changed, and run
        # outside check mode), its SecureString built from stdin; nothing it reads differs.
        seen.append(call)
        out = {"before": JDOE_SEEN, "after": JDOE_SEEN, "changed": True,
               "reboot_required": False, "error": None}  # fmt: skip
        return Reply(stdout=json.dumps(out))

    srv.on("ensure_ad_user", reset)
    monkeypatch.setenv(AD_ENV, JOIN_PASSWORD)
    conn = connection(srv, ca_file=str(ca_file))
    checked = await _ensure(transport, conn, "ad_user", JDOE, check=True)
    assert checked.data["result"] == "would_change" and seen[-1].params["CheckMode"] is True
    for _ in range(2):
        out = await _ensure(transport, conn, "ad_user", JDOE)
        assert out.status is ResultStatus.SUCCESS, out.summary
        assert out.data["result"] == "changed" and "cannot be read" in out.summary
        call = seen[-1]
        assert _stdin(call) == {"password": JOIN_PASSWORD}
        assert call.params["R"]["update_password"] == "always"
        encoded = base64.b64encode(JOIN_PASSWORD.encode()).decode()
        for text in (call.command_line, call.script, json.dumps(call.params)):
            assert JOIN_PASSWORD not in text and encoded not in text


async def test_a_promotion_waiting_for_its_restart_is_not_run_again_end_to_end(
    make_server: ServerFactory, ca_file: Any, transport: WinRMTransport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    srv = make_server()
    pending = {"netbios": "LAB", "functional_level": None, "restart_pending": True}
    # What the script prints before the restart: the reader's pending state, the frame's
    # reboot_required, and no change (Install-ADDSForest runs only where nothing was read).
    out = {"before": pending, "after": pending, "changed": False, "reboot_required": True,
           "error": None}  # fmt: skip
    srv.on("ensure_ad_domain", lambda call: Reply(stdout=json.dumps(out)))
    monkeypatch.setenv("REAPER_TEST_DSRM", JOIN_PASSWORD)
    domain = {"kind": "ad_domain", "name": "lab.local", "netbios": "LAB",
              "safe_mode_password_env": "REAPER_TEST_DSRM"}  # fmt: skip
    conn = connection(srv, ca_file=str(ca_file))
    again = await _ensure(transport, conn, "ad_domain", domain)
    assert again.status is ResultStatus.SUCCESS, again.summary
    assert again.data["result"] == "changed" and again.data["reboot_required"] is True
    assert again.data["after"] == pending and "not run again" in again.summary
    checked = await _ensure(transport, conn, "ad_domain", domain, check=True)
    assert checked.data["result"] == "would_change"
