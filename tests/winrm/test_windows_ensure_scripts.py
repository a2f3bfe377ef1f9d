"""The rendered Windows ensure and observe scripts, checked without PowerShell.

PowerShell cannot be installed on the test machines (no .NET runtime or NuGet feed reachable),
so the scripts never run here: they are parsed with tree-sitter's PowerShell grammar (no ERROR
node), checked for their structure (every change goes through `Invoke-ReaperChange`, which
does nothing in check mode; the resource is read before any change) and for how values travel
(a data block and stdin, never the script text).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

tree_sitter = pytest.importorskip("tree_sitter")
tree_sitter_powershell = pytest.importorskip("tree_sitter_powershell")

from reaper.actions import CATALOG  # noqa: E402
from reaper.agents.oscode.windows_ensure import (  # noqa: E402
    argument_problem,
    data_block,
    parse_output,
    stdin_payload,
)
from reaper.agents.oscode.windows_ensure_scripts import SCRIPTS  # noqa: E402
from reaper.agents.oscode.windows_failures import classify  # noqa: E402
from reaper.agents.oscode.windows_observe import READERS, observe_script  # noqa: E402
from reaper.agents.transports.powershell import encode_command, wrap_script  # noqa: E402
from reaper.desired.diff import diff_resource  # noqa: E402
from reaper.desired.kinds import KIND_OS, KINDS  # noqa: E402

HOSTILE = "'; Remove-Item C:\\ -Recurse #"
WINDOWS_KINDS = sorted(k for k, where in KIND_OS.items() if "windows" in where)
_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))
_CHANGES = re.compile(
    r"(Set|New|Remove|Add|Install|Uninstall|Start|Stop|Enable|Disable|Move)-\w+", re.I
)


_DOTNET_CHANGES = ("[System.IO.File]::WriteAllBytes", "$acl.SetOwner")


def _errors(text: str) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if node.type == "ERROR" or node.is_missing:
            found.append(f"{node.start_point}: {node.text[:60]!r}")
        for child in node.children:
            walk(child)

    walk(_PARSER.parse(text.encode()).root_node)
    return found


def _name(command: Any) -> str:
    for child in command.children:
        if child.type == "command_name":
            return str(child.text.decode())
        if child.type == "command_name_expr":
            return _name(child)
    return ""


def _guarded(node: Any) -> bool:
    """Whether `node` runs inside a script block handed to Invoke-ReaperChange."""
    parent = node.parent
    while parent is not None:
        if parent.type == "command" and _name(parent) == "Invoke-ReaperChange":
            return True
        parent = parent.parent
    return False


def _unguarded_changes(script: str) -> list[str]:
    bad: list[str] = []

    def walk(node: Any) -> None:
        text = node.text.decode()
        if node.type == "command":
            name = _name(node)
            changes = bool(_CHANGES.fullmatch(name)) and name.lower() != "new-object"
            if name == "choco.exe":
                changes = " list " not in f" {text} "
            if changes and not _guarded(node):
                bad.append(text[:80])
        elif text.startswith(_DOTNET_CHANGES) and not _guarded(node):
            bad.append(text[:80])
        for child in node.children:
            walk(child)

    walk(_PARSER.parse(script.encode()).root_node)
    return bad


def test_every_windows_kind_has_its_script_and_catalog_action() -> None:
    assert sorted(SCRIPTS) == WINDOWS_KINDS
    assert sorted(READERS) == WINDOWS_KINDS
    assert all(f"windows.ensure_{k}" in CATALOG for k in WINDOWS_KINDS)


@pytest.mark.parametrize("kind", WINDOWS_KINDS)
def test_each_ensure_script_parses_wrapped_with_and_without_stdin(kind: str) -> None:
    script = SCRIPTS[kind]
    assert _errors(script) == []
    assert _errors(wrap_script(script, {"R": {"name": HOSTILE}, "CheckMode": True})) == []
    assert _errors(wrap_script(script, {"R": {}}, stdin=True)) == []
    # It fits one command line with room for its data block.
    assert len(" ".join(encode_command(wrap_script(script, {})))) < 16000


def test_the_observe_script_for_every_kind_parses_and_fits_a_command_line() -> None:
    script = observe_script(WINDOWS_KINDS)
    assert _errors(script) == [] and _errors(wrap_script(script, {}, stdin=True)) == []
    # CreateProcess's cap is 32767 and this script carries no data block (its list is on
    # stdin): what is left is the room for more readers.
    assert len(" ".join(encode_command(wrap_script(script, {})))) < 27500
    assert script.count("function Get-ReaperState_") == len(WINDOWS_KINDS)


@pytest.mark.parametrize("kind", WINDOWS_KINDS)
def test_every_change_is_guarded_and_the_resource_is_read_first(kind: str) -> None:
    script = SCRIPTS[kind]
    assert _unguarded_changes(script) == []
    # Read before anything else, again after a real change; check mode runs no change.
    assert script.index("$out.before = Get-ReaperState $R") < script.index("Invoke-ReaperChange {")
    assert "if ($out.changed -and -not $CheckMode) { $out.after = Get-ReaperState $R }" in script
    assert "if (-not $CheckMode) { & $Change }" in script


def _pending_checks(script: str) -> list[bool]:
    """For each Assert-ReaperNoPendingReboot call: whether it sits in an `if` branch."""
    found: list[bool] = []

    def walk(node: Any) -> None:
        if node.type == "command" and _name(node) == "Assert-ReaperNoPendingReboot":
            parent, branch = node.parent, False
            while parent is not None:
                branch = branch or parent.type in ("if_statement", "elseif_clause")
                parent = parent.parent
            found.append(branch)
        for child in node.children:
            walk(child)

    walk(_PARSER.parse(script.encode()).root_node)
    return found


@pytest.mark.parametrize("kind", ["package", "windows_feature", "ad_domain", "domain_membership"])
def test_a_pending_restart_is_checked_only_where_a_change_is_needed(kind: str) -> None:
    # An installed package or feature stays `unchanged` while a restart is pending; only a
    # change it would block is REBOOT_PENDING.
    checks = _pending_checks(SCRIPTS[kind])
    assert checks and all(checks)


def test_the_guard_checker_sees_an_unguarded_change() -> None:
    # The structural check above can fail: a bare Set-Service is caught.
    assert _unguarded_changes("Set-Service -Name x -StartupType Manual\n") != []
    assert _unguarded_changes("Invoke-ReaperChange { Set-Service -Name x }\n") == []


def _resource(kind: str, **fields: Any) -> Any:
    return KINDS[kind].model_validate({"kind": kind, **fields})


def test_hostile_values_travel_as_data_never_as_script_text() -> None:
    setting = _resource("setting", name="HKLM\\SOFTWARE\\Lab\\Motd", value=HOSTILE)
    block = data_block(setting)
    assert block["key"] == "Registry::HKEY_LOCAL_MACHINE\\SOFTWARE\\Lab"
    assert block["value_name"] == "Motd"
    text = wrap_script(SCRIPTS["setting"], {"R": block, "CheckMode": False})
    assert HOSTILE not in text and "Remove-Item C:" not in text
    assert _errors(text) == []
    blob = re.search(r"FromBase64String\('([A-Za-z0-9+/=]*)'\)", text)
    assert blob is not None
    assert json.loads(base64.b64decode(blob.group(1)))["R"]["value"] == HOSTILE


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("service", {"name": HOSTILE}),
        ("service", {"name": "Win*"}),
        ("package", {"name": "--force"}),
        ("user", {"name": HOSTILE}),
        ("ad_group", {"name": "Admins*"}),
        ("firewall", {"name": HOSTILE, "port": 22}),
        ("file", {"path": "C:\\motd.txt", "owner": "a;b"}),
        ("setting", {"name": "net.ipv4.ip_forward", "value": "1"}),
    ],
)
def test_values_a_tool_would_misread_are_refused(kind: str, fields: dict[str, Any]) -> None:
    assert argument_problem(_resource(kind, **fields)) is not None


def test_plain_values_are_accepted() -> None:
    for kind, fields in [
        ("service", {"name": "W32Time"}),
        ("package", {"name": "7zip.install", "version": "23.1.0"}),
        ("user", {"name": "lab admin"}),
        ("ad_user", {"name": "j.doe", "groups": ["Domain Admins"]}),
        ("firewall", {"port": 5985, "source": "192.0.2.0/24"}),
        ("file", {"path": "C:\\motd.txt", "content": HOSTILE, "owner": "Administrators"}),
    ]:
        assert argument_problem(_resource(kind, **fields)) is None, (kind, fields)


def test_a_file_content_travels_on_stdin_as_its_digest_in_the_block() -> None:
    f = _resource("file", path="C:\\motd.txt", content=HOSTILE)
    block = data_block(f, HOSTILE)
    assert "content" not in block and block["content_sha256"].startswith("sha256:")
    payload = stdin_payload({"content": HOSTILE, "password": "pä55'w\"rd"})
    assert payload.isascii() and HOSTILE not in payload
    lines = dict(line.split("=", 1) for line in payload.splitlines())
    assert base64.b64decode(lines["password"]).decode() == "pä55'w\"rd"


def test_secret_references_stay_out_of_the_data_block() -> None:
    user = _resource("ad_user", name="j.doe", password_env="JDOE_PASSWORD")
    block = data_block(user)
    assert block["has_password"] is True
    assert not any(k.endswith("_env") for k in block)
    assert "JDOE_PASSWORD" not in repr(block)


# -- recorded-shaped outputs ----------------------------------------------------------------

FEATURE_INSTALLED = (
    '{"before":null,"after":{"state":"present","install_state":"InstallPending"},'
    '"changed":true,"reboot_required":true,"error":null}'
)
USER_ONE_GROUP = (
    '{"before":{"state":"present","uid":null,"groups":"Users","shell":null,"home":null,'
    '"enabled":true},"after":null,"changed":false,"reboot_required":false,"error":null}'
)
PENDING = (
    '{"before":null,"after":null,"changed":false,"reboot_required":false,"error":'
    '{"id":"PendingReboot: Install-WindowsFeature cannot run: a restart is pending from a '
    'previous installation or update","type":"System.Management.Automation.RuntimeException",'
    '"message":"PendingReboot: Install-WindowsFeature cannot run"}}'
)


def test_outputs_parse_with_pydantic() -> None:
    out = parse_output(FEATURE_INSTALLED)
    assert not isinstance(out, str)
    assert out.reboot_required and out.after == {
        "state": "present",
        "install_state": "InstallPending",
    }
    user = parse_output(USER_ONE_GROUP)
    assert not isinstance(user, str) and user.before is not None
    assert user.before["groups"] == ["Users"]  # PowerShell 5.1's one-element array
    pending = parse_output(PENDING)
    assert not isinstance(pending, str) and pending.error is not None
    assert parse_output("WARNING: x\n{") == "not JSON (Expecting value at char 0)"
    assert "changed" in str(parse_output('{"changed": "maybe"}'))


# ruff: noqa: E501  (recorded error texts are kept whole, one per line)
@pytest.mark.parametrize(
    ("kind", "error_id", "exc_type", "message", "code"),
    [
        ("windows_feature", "PendingReboot: x", "RuntimeException", "a restart is pending", "REBOOT_PENDING"),
        ("windows_feature", "NoFeatureFound: x", "RuntimeException", "The role, role service, or feature name is not valid", "PACKAGE_NOT_FOUND"),
        ("domain_membership", "FailToJoinDomainFromWorkgroup,Microsoft.PowerShell.Commands.AddComputerCommand", "InvalidOperationException", "Computer 'WIN01' failed to join domain 'lab.local' from its current workgroup 'WORKGROUP' with following error message: The specified domain either does not exist or could not be contacted.", "DNS_MISCONFIGURED"),
        ("ad_user", "ActiveDirectoryServer:0,Microsoft.ActiveDirectory.Management.Commands.NewADUser", "AuthenticationException", "KRB_AP_ERR_SKEW: The time difference between the client and server is too large", "CLOCK_SKEW"),
        ("ad_user", "ActiveDirectoryCmdlet:Microsoft.ActiveDirectory.Management.ADIdentityNotFoundException,Microsoft.ActiveDirectory.Management.Commands.AddADGroupMember", "ADIdentityNotFoundException", "Cannot find an object with identity: 'Ops'", "MISSING_DEPENDENCY"),
        ("file", "System.Security.Principal.IdentityNotMappedException", "IdentityNotMappedException", "Some or all identity references could not be translated.", "MISSING_DEPENDENCY"),
        ("file", "System.IO.IOException", "IOException", "There is not enough space on the disk.", "DISK_FULL"),
        ("service", "NoServiceFoundForGivenName: x", "RuntimeException", "service Spooler2 was not found", "MISSING_DEPENDENCY"),
        ("setting", "System.Management.Automation.ParameterBindingException", "InvalidCastException", "Cannot convert value", "CONFIG_INVALID"),
    ],
)  # fmt: skip
def test_failure_texts_are_classified(
    kind: str, error_id: str, exc_type: str, message: str, code: str
) -> None:
    assert classify(kind, error_id, exc_type, message) == code


# What each reader prints for a converged resource (the shapes of the readers' hashtables),
# beside a declaration it satisfies: the diff must find nothing to do.
CONVERGED: list[tuple[dict[str, Any], str]] = [
    ({"kind": "package", "name": "7zip", "version": "23.1"}, '{"state":"present","version":"23.1.0"}'),
    ({"kind": "service", "name": "W32Time", "enabled": True}, '{"state":"running","enabled":true}'),
    ({"kind": "file", "path": "C:\\motd.txt", "content": "hi\n", "owner": "Administrators"},
     '{"state":"present","mode":null,"owner":"Administrators","group":null,'
     '"sha256":"sha256:98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4"}'),
    ({"kind": "directory", "path": "C:\\lab"}, '{"state":"present","mode":null,"owner":"Administrators","group":null}'),
    ({"kind": "user", "name": "labuser", "groups": ["Users"], "enabled": False},
     '{"state":"present","uid":null,"groups":["Users","Remote Desktop Users"],"shell":null,"home":null,"enabled":false}'),
    ({"kind": "group", "name": "Lab Ops"}, '{"state":"present","gid":null}'),
    ({"kind": "setting", "name": "HKLM\\SOFTWARE\\Lab\\Level", "value": 3, "type": "dword"}, '{"value":"3","type":"dword"}'),
    ({"kind": "firewall", "name": "winrm", "port": 5985, "source": "192.0.2.0/24"},
     '{"state":"present","port":"5985","proto":"tcp","source":"192.0.2.0/24","action":"allow"}'),
    ({"kind": "dns_client", "servers": ["192.0.2.10"], "search": ["lab.local"]},
     '{"servers":["192.0.2.10"],"search":["lab.local"],"interface_index":4}'),
    ({"kind": "windows_feature", "name": "AD-Domain-Services"}, '{"state":"present","install_state":"InstallPending"}'),
    ({"kind": "ad_domain", "name": "lab.local", "netbios": "LAB", "safe_mode_password_env": "DSRM", "functional_level": "WinThreshold"},
     '{"netbios":"LAB","functional_level":"WinThreshold"}'),
    ({"kind": "domain_membership", "domain": "lab.local", "credentials_env": "JOIN", "user": "LAB\\joiner"},
     '{"state":"present","user":"LAB\\\\joiner","ou":null}'),
    ({"kind": "ad_user", "name": "j.doe", "groups": ["Lab Ops"], "ou": "OU=Lab,DC=lab,DC=local"},
     '{"state":"present","domain":"lab.local","ou":"OU=Lab,DC=lab,DC=local","groups":["Domain Users","Lab Ops"],"enabled":true}'),
    ({"kind": "ad_group", "name": "Lab Ops", "scope": "universal"},
     '{"state":"present","domain":"lab.local","ou":"CN=Users,DC=lab,DC=local","scope":"universal","category":"security"}'),
]  # fmt: skip


# A change done, its restart not yet: read as declared with `restart_pending`, so that nothing
# runs again (issue 15).
RESTART_PENDING: list[tuple[dict[str, Any], str]] = [
    ({"kind": "windows_feature", "name": "AD-Domain-Services"},
     '{"state":"present","install_state":"InstallPending","restart_pending":true}'),
    ({"kind": "ad_domain", "name": "lab.local", "netbios": "LAB", "safe_mode_password_env": "DSRM"},
     '{"netbios":"LAB","functional_level":null,"restart_pending":true}'),
    ({"kind": "domain_membership", "domain": "lab.local", "credentials_env": "JOIN", "user": "LAB\\joiner"},
     '{"state":"present","user":"LAB\\\\joiner","ou":null,"restart_pending":true}'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("declared", "printed"), CONVERGED + RESTART_PENDING, ids=lambda v: str(v)[:30]
)
def test_what_a_reader_prints_of_a_converged_resource_diffs_as_ok(
    declared: dict[str, Any], printed: str
) -> None:
    fields = dict(declared)
    resource = _resource(fields.pop("kind"), **fields)
    assert argument_problem(resource) is None
    seen = parse_output(f'{{"before": {printed}}}')
    assert not isinstance(seen, str)
    assert diff_resource(resource.rid.on("w"), resource, seen.before).action == "ok"


def test_every_windows_kind_has_a_converged_shape() -> None:
    assert sorted({d["kind"] for d, _ in CONVERGED}) == WINDOWS_KINDS


# -- a change done, its restart not yet (issue 15) ------------------------------------------


def test_the_readers_detect_a_promotion_and_a_join_waiting_for_their_restart() -> None:
    domain, member = READERS["ad_domain"], READERS["domain_membership"]
    # Promotion: the product type the next boot takes, and the forest NTDS was set up for,
    # are read only while Win32_ComputerSystem does not show a DC yet.
    assert domain.index("$cs.DomainRole -lt 4") < domain.index("Control\\ProductOptions")
    assert "'LanmanNT'" in domain and "Services\\NTDS\\Parameters" in domain
    assert "'Root Domain'" in domain and "restart_pending = $true" in domain
    # Join: Netlogon's keys that a join leaves until its restart.
    assert '"$n\\JoinDomain", "$n\\AvoidSpnSet"' in member and "'NV Domain'" in member
    assert "restart_pending = $true" in member
    assert "$out['restart_pending'] = $true" in READERS["windows_feature"]
    for reader in (domain, member, READERS["windows_feature"]):
        assert _errors(reader) == [] and _unguarded_changes(reader) == []


@pytest.mark.parametrize("kind", ["windows_feature", "ad_domain", "domain_membership"])
def test_an_ensure_before_the_restart_reports_it_and_runs_no_change(kind: str) -> None:
    script = SCRIPTS[kind]
    frame = "if ($out.before -and $out.before.restart_pending) { $out.reboot_required = $true }"
    assert frame in script
    assert script.index("$out.before = Get-ReaperState $R") < script.index(frame)
    # The promotion and the join run only where nothing was read (a pending one reads).
    setter = {"ad_domain": "Install-ADDSForest @forest", "domain_membership": "Add-Computer @join",
              "windows_feature": "Install-WindowsFeature -Name"}[kind]  # fmt: skip
    guard = "} elseif (-not $out.before) {" if kind != "ad_domain" else "if (-not $out.before) {"
    assert script.index(guard) < script.index(setter)


def test_the_joined_readers_keep_only_the_marker_comment_and_still_parse() -> None:
    script = observe_script(["ad_domain", "domain_membership", "firewall"])
    lines = script.splitlines()
    assert lines[0] == "# reaper-action: windows.observe"
    assert not any(line.startswith((" ", "#")) for line in lines[1:])
    assert _errors(script) == []


# -- passwords: at creation, or on every run with update_password: always (issue 15) --------


@pytest.mark.parametrize(
    ("kind", "setter"),
    [
        ("user", "Set-LocalUser -Name $R.name -Password (Get-ReaperSecret 'password')"),
        ("ad_user", "Set-ADAccountPassword -Identity $R.name -Reset -NewPassword (Get-ReaperSecret 'password') @at"),
    ],
)  # fmt: skip
def test_an_existing_accounts_password_is_set_only_with_always_and_from_stdin(
    kind: str, setter: str
) -> None:
    script = SCRIPTS[kind]
    assert f"Invoke-ReaperChange {{ {setter} }}" in script  # guarded: check mode runs none
    at = script.index(setter)  # in the branch of an account that exists, with always
    assert "if ($R.update_password -eq 'always' -and $R.has_password) {" in script[at - 100 : at]
    always = _resource(kind, name="j.doe", password_env="JDOE_PASSWORD", update_password="always")
    block = data_block(always)
    assert block["update_password"] == "always" and block["has_password"] is True
    assert "JDOE_PASSWORD" not in repr(block)
