"""linux.ensure_* and discover's declared resources without a host: the read-back parsers,
the failure classes of real tools' text, the argument checks, and the ensure flow over a
scripted `CommandRunner` (what runs, and what does not, in each case)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reaper.agents.base import Command, CommandResult
from reaper.agents.oscode.linux import ACTIONS
from reaper.agents.oscode.linux_args import argument_problem, script_args
from reaper.agents.oscode.linux_failures import classify
from reaper.agents.oscode.linux_observe import OBSERVE_SCRIPT, parse_nft_rule, parse_one
from reaper.desired import parse_resource
from reaper.desired.compare import content_digest
from reaper.desired.diff import diff_resource, reported_fields
from reaper.models import ResultStatus

DIGEST = content_digest("hello\n").removeprefix("sha256:")


def res(**spec: Any) -> Any:
    return parse_resource(spec, "t")


@pytest.mark.parametrize(
    ("spec", "section", "seen"),
    [
        (
            {"kind": "package", "name": "tree"},
            "version=2.1.0-1",
            {"state": "present", "version": "2.1.0-1"},
        ),
        ({"kind": "package", "name": "tree"}, "", None),
        (
            {"kind": "service", "name": "ssh"},
            "running=1\nenabled=0",
            {"state": "running", "enabled": False},
        ),
        (
            {"kind": "file", "path": "/etc/motd", "content": "hello\n"},
            f"type=regular file\nmode=644\nowner=root\ngroup=adm\nsha256={DIGEST}",
            {
                "state": "present",
                "mode": "0644",
                "owner": "root",
                "group": "adm",
                "sha256": f"sha256:{DIGEST}",
            },
        ),
        ({"kind": "directory", "path": "/etc/motd"}, "type=regular file\nmode=644", None),
        (
            {"kind": "user", "name": "deploy"},
            "passwd=deploy:x:1001:1001::/home/deploy:/bin/bash\nprimary=deploy\n"
            "groups=deploy web adm\npassword=!$",
            {
                "state": "present",
                "uid": 1001,
                "groups": ["adm", "web"],
                "shell": "/bin/bash",
                "home": "/home/deploy",
                "enabled": False,
            },
        ),
        (
            {"kind": "group", "name": "web"},
            "group=web:x:1002:deploy",
            {"state": "present", "gid": 1002},
        ),
        (
            {"kind": "setting", "name": "net.ipv4.ip_forward", "value": "1"},
            "value=1",
            {"value": "1", "type": None},
        ),
        ({"kind": "sshd_option", "name": "MaxAuthTries", "value": "4"}, "value=4", {"value": "4"}),
        (
            {"kind": "dns_client", "servers": ["10.0.0.1", "10.0.0.2"]},
            "resolv=1\nnameserver=10.0.0.1\nnameserver=10.0.0.2\nsearch=lab.test corp.test",
            {"servers": ["10.0.0.1", "10.0.0.2"], "search": ["lab.test", "corp.test"]},
        ),
        (
            {
                "kind": "package_repository",
                "name": "m",
                "format": "apt",
                "url": "http://m/",
                "suite": "./",
                "components": [],
                "key_url": "http://m/key.asc",
            },
            "format=apt\nline=# reaper: package_repository/m key_url=http://m/key.asc\n"
            "line=deb [signed-by=/etc/apt/keyrings/m.asc] http://m/ ./\n"
            "keyring=/etc/apt/keyrings/m.asc",
            {
                "state": "present",
                "format": "apt",
                "url": "http://m/",
                "suite": "./",
                "components": [],
                "key_url": "http://m/key.asc",
                "gpgcheck": True,
                "enabled": True,
            },
        ),
        ({"kind": "firewall", "port": 22}, "nft=0", None),
    ],
)
def test_read_back_reports_the_fields_the_diff_reads(
    spec: dict[str, Any], section: str, seen: dict[str, Any] | None
) -> None:
    resource = res(**spec)
    props = parse_one(resource, section)
    assert props == seen
    if props is not None:
        assert set(props) <= {*reported_fields(resource.kind), "state"}
        assert set(reported_fields(resource.kind)) - {"state"} <= set(props)
        ref = resource.rid.on("t")
        assert diff_resource(ref, resource, props).action == "ok"


def test_nft_rules_read_back_as_firewall_properties() -> None:
    rule = 'ip saddr 192.0.2.0/24 tcp dport 5432 accept comment "reaper:db"'
    assert parse_nft_rule(rule) == {
        "state": "present",
        "port": 5432,
        "proto": "tcp",
        "source": "192.0.2.0/24",
        "action": "allow",
    }


@pytest.mark.parametrize(
    ("kind", "text", "code"),
    [
        ("package", "E: Unable to locate package nosuch", "PACKAGE_NOT_FOUND"),
        ("package", "E: Package 'x' has no installation candidate", "PACKAGE_NOT_FOUND"),
        (
            "package",
            "No match for argument: nosuch\nError: Unable to find a match",
            "PACKAGE_NOT_FOUND",
        ),
        (
            "package",
            "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 "
            "(apt-get)\n"
            "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another "
            "process using it?",
            "PM_LOCKED",
        ),
        (
            "package",
            "E: You don't have enough free space in /var/cache/apt/archives/.",
            "DISK_FULL",
        ),
        ("file", "cat: write error: No space left on device", "DISK_FULL"),
        (
            "sshd_option",
            "/etc/ssh/sshd_config.d/00-reaper.conf: line 1: Bad configuration option: Nope",
            "CONFIG_INVALID",
        ),
        ("user", "useradd: group 'web' does not exist", "MISSING_DEPENDENCY"),
        ("group", "groupadd: something else", "COMMAND_FAILED"),
    ],
)
def test_tool_output_maps_to_its_failure_class(kind: str, text: str, code: str) -> None:
    assert classify(kind, text) == code


def test_a_package_not_found_behind_an_unreachable_mirror_is_the_mirror() -> None:
    update = "Err:1 http://10.0.0.1:9 ./ InRelease\n  Could not connect to 10.0.0.1:9"
    assert classify("package", "E: Unable to locate package tree", update=update) == (
        "REPO_UNREACHABLE"
    )


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "service", "name": "../../bin/sh"},
        {"kind": "package", "name": "-oAPT::Update::Pre-Invoke::=id"},
        {"kind": "user", "name": "-o", "groups": ["x"]},
        {"kind": "user", "name": "ok", "groups": ["--root=/"]},
        {"kind": "sshd_option", "name": "Banner", "value": "x\nPermitRootLogin yes"},
        {
            "kind": "package_repository",
            "name": "m",
            "format": "apt",
            "url": "http://m/ ]x",
            "suite": "s",
            "key_url": "http://m/k",
        },
        {"kind": "file", "path": "/", "content": "x"},
    ],
)
def test_values_that_a_tool_would_read_as_options_or_code_are_refused(spec: dict[str, Any]) -> None:
    try:
        resource = res(**spec)
    except Exception:  # refused by the model itself: as good
        return
    assert argument_problem(resource) is not None


def test_a_file_is_rewritten_only_when_its_content_differs() -> None:
    resource = res(kind="file", path="/etc/motd", content="hello\n", mode="0600")
    same = {
        "state": "present",
        "mode": "0644",
        "owner": "root",
        "group": "root",
        "sha256": f"sha256:{DIGEST}",
    }
    argv, stdin = script_args(resource, same, "hello\n")
    assert argv == ["/etc/motd", "present", "0600", "", "", "0", "file"] and stdin == ""
    argv, stdin = script_args(resource, None, "hello\n")
    assert argv[5] == "1" and stdin == "hello\n"


class Scripted:
    """A `CommandRunner` answering the read-back script with `seen` lines, and every other
    script through `other` (which records it)."""

    def __init__(self, seen: str, other: Callable[[Command], CommandResult] | None = None) -> None:
        self.seen = seen
        self.other = other
        self.ran: list[Command] = []

    async def run(self, command: Command) -> CommandResult:
        self.ran.append(command)
        if OBSERVE_SCRIPT in command.argv[2]:
            return CommandResult(0, "@@reaper:r0@@\n" + self.seen, "")
        assert self.other is not None, command.argv[:3]
        return self.other(command)


async def test_an_ensure_that_matches_runs_nothing_and_check_mode_only_reads() -> None:
    params = {"resource": {"kind": "package", "name": "tree"}}
    shell = Scripted("version=2.1.0-1")
    out = await ACTIONS.run("ensure_package", params, shell, host_id="h")
    assert out.status is ResultStatus.SUCCESS and out.data["result"] == "unchanged"
    assert len(shell.ran) == 1

    shell = Scripted("")
    out = await ACTIONS.run("ensure_package", {**params, "check_mode": True}, shell, host_id="h")
    assert out.data == {
        "resource": "package/tree",
        "result": "would_change",
        "before": None,
        "after": {"state": "present"},
        "reboot_required": False,
    }
    assert len(shell.ran) == 1


async def test_a_held_lock_is_a_retriable_pm_locked_with_apts_text() -> None:
    text = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 7 (python3)\n"

    def apt(command: Command) -> CommandResult:
        assert command.argv[3:] == ["sh", "tree", "present", ""] and command.sudo
        return CommandResult(
            100, f"@@reaper:update@@\nHit:1 http://m ./ InRelease\n@@reaper:install@@\n{text}", ""
        )

    shell = Scripted("", apt)
    out = await ACTIONS.run(
        "ensure_package", {"resource": {"kind": "package", "name": "tree"}}, shell, host_id="h"
    )
    assert (out.status, out.error_code, out.retriable) == (ResultStatus.ERROR, "PM_LOCKED", True)
    assert "Could not get lock" in out.stderr_tail and "Hit:1" not in out.stderr_tail
    assert out.data == {"resource": "package/tree", "before": None}


async def test_discover_reads_declared_resources_in_its_one_round_trip() -> None:
    calls: list[Command] = []

    class Host:
        async def run(self, command: Command) -> CommandResult:
            calls.append(command)
            return CommandResult(0, "@@reaper:hostname@@\nh\n@@reaper:r0@@\nversion=1\n", "")

    declared = [{"kind": "package", "name": "tree"}, {"kind": "service", "name": "../../x"}]
    out = await ACTIONS.run("discover", {"resources": declared}, Host(), host_id="h")
    assert len(calls) == 1 and calls[0].argv[3:] == ["sh", "package", "tree"]
    assert out.data["resources"] == {"package/tree": {"state": "present", "version": "1"}}
    assert "1" in out.data["resource_problems"]


async def test_a_template_renders_over_the_hosts_facts_and_travels_on_stdin() -> None:
    from reaper.agents.oscode.linux import DISCOVER_SCRIPT

    written: list[Command] = []
    template = "served by {{ hostname }}\n"

    def host(command: Command) -> CommandResult:
        if command.argv[2] == DISCOVER_SCRIPT:
            return CommandResult(0, "@@reaper:hostname@@\nweb-01\n", "")
        written.append(command)
        digest = content_digest(command.stdin or "").removeprefix("sha256:")
        shell.seen = f"type=regular file\nmode=644\nowner=root\ngroup=root\nsha256={digest}"
        return CommandResult(0, "", "")

    shell = Scripted("", host)
    resource = {"kind": "file", "path": "/etc/motd", "template": template}
    out = await ACTIONS.run("ensure_file", {"resource": resource}, shell, host_id="web-01")
    assert out.status is ResultStatus.SUCCESS and out.data["result"] == "changed", out.summary
    (command,) = written
    assert command.stdin == "served by web-01\n" and template not in command.argv
    assert out.data["before"] is None
    assert out.data["after"]["sha256"] == content_digest("served by web-01\n")


def test_repository_files_carry_the_declared_values_and_read_back_as_declared() -> None:
    apt = res(
        kind="package_repository",
        name="m",
        format="apt",
        url="http://m/debian",
        suite="bookworm",
        components=["main", "contrib"],
        key_url="http://m/key.asc",
    )
    argv, body = script_args(apt, None, None)
    assert argv == ["m", "apt", "present", "http://m/key.asc"]
    assert "deb [signed-by=@KEYRING@] http://m/debian bookworm main contrib\n" in body
    installed = body.replace("@KEYRING@", "/etc/apt/keyrings/m.asc")
    section = "format=apt\n" + "".join(f"line={ln}\n" for ln in installed.splitlines())
    seen = parse_one(apt, section + "keyring=/etc/apt/keyrings/m.asc")
    assert seen is not None and diff_resource(apt.rid.on("t"), apt, seen).action == "ok"
    assert parse_one(apt, section)["key_url"] is None  # type: ignore[index]  # key file gone

    dnf = res(
        kind="package_repository",
        name="epel",
        format="dnf",
        url="https://m/epel/9/",
        key_url="https://m/RPM-GPG-KEY",
        enabled=False,
    )
    argv, body = script_args(dnf, None, None)
    assert argv == ["epel", "dnf", "present", "https://m/RPM-GPG-KEY"]
    assert body.splitlines()[:3] == ["[epel]", "name=epel", "baseurl=https://m/epel/9/"]
    section = "format=dnf\n" + "".join(f"line={ln}\n" for ln in body.splitlines())
    seen = parse_one(dnf, section)
    assert seen is not None and diff_resource(dnf.rid.on("t"), dnf, seen).action == "ok"


# -- a user's password (issue 15: set at creation, or on every run with update_password) -----

PW_ENV = "REAPER_TEST_DEPLOY_PASSWORD"
PW = "s3cret:'; rm -rf / #"
DEPLOY = (
    "passwd=deploy:x:1001:1001::/home/deploy:/bin/sh\nprimary=deploy\ngroups=deploy\npassword=$6"
)


def _ok(command: Command) -> CommandResult:
    return CommandResult(0, "", "")


def _pw_user(**extra: Any) -> dict[str, Any]:
    return {"resource": {"kind": "user", "name": "deploy", "password_env": PW_ENV, **extra}}


async def test_a_new_users_password_travels_on_stdin_to_chpasswd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PW_ENV, PW)
    shell = Scripted("")

    def useradd(command: Command) -> CommandResult:
        shell.seen = DEPLOY  # created: the read back finds it
        return CommandResult(0, "", "")

    shell.other = useradd
    out = await ACTIONS.run("ensure_user", _pw_user(), shell, host_id="h")
    assert out.status is ResultStatus.SUCCESS and out.data["result"] == "changed", out.summary
    assert len(shell.ran) == 3  # read, converge, read back
    converge = shell.ran[1]
    assert converge.argv[-1] == "create" and converge.stdin == PW
    assert PW not in " ".join(converge.argv) and "chpasswd" in converge.argv[2]


async def test_on_create_leaves_an_existing_users_password_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PW_ENV, PW)
    shell = Scripted(DEPLOY)
    out = await ACTIONS.run("ensure_user", _pw_user(), shell, host_id="h")
    assert out.status is ResultStatus.SUCCESS and out.data["result"] == "unchanged"
    assert len(shell.ran) == 1


async def test_update_password_always_sets_it_every_run_as_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PW_ENV, PW)
    params = _pw_user(update_password="always")
    checked = Scripted(DEPLOY)
    out = await ACTIONS.run("ensure_user", {**params, "check_mode": True}, checked, host_id="h")
    assert out.data["result"] == "would_change" and len(checked.ran) == 1
    assert "password" in out.summary and "cannot be read" in out.summary
    for _ in range(2):  # the same every run: it cannot be read back to compare
        shell = Scripted(DEPLOY, _ok)
        out = await ACTIONS.run("ensure_user", params, shell, host_id="h")
        assert out.status is ResultStatus.SUCCESS, out.summary
        assert out.data["result"] == "changed" and "cannot be read" in out.summary
        assert shell.ran[1].argv[-1] == "always" and shell.ran[1].stdin == PW
        assert all(PW not in " ".join(c.argv) for c in shell.ran)
        assert PW not in out.summary + out.stdout_tail + out.stderr_tail


async def test_a_password_that_cannot_be_resolved_or_set_runs_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(PW_ENV, raising=False)
    shell = Scripted(DEPLOY)
    out = await ACTIONS.run("ensure_user", _pw_user(), shell, host_id="h")
    assert out.error_code == "CREDENTIALS_MISSING" and PW_ENV in out.summary
    monkeypatch.setenv(PW_ENV, "two\nlines")
    out = await ACTIONS.run("ensure_user", _pw_user(), shell, host_id="h")
    assert out.error_code == "INVALID_PARAMS" and "two" not in out.summary
    assert shell.ran == []


def test_the_user_script_sets_the_password_before_it_locks_the_account() -> None:
    from reaper.agents.oscode.linux_scripts import SCRIPTS

    script = SCRIPTS["user"]
    assert script.index("chpasswd") < script.index("usermod -L")
    argv, stdin = script_args(res(kind="user", name="deploy"), None, None)
    assert argv[-1] == "" and stdin == ""
