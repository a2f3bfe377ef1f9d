"""The lockout guard: every listed way to cut Reaper's own access is refused, with a hint,
through `policy.check` for any planner; everything else passes."""

from __future__ import annotations

from typing import Any

import pytest

from reaper.lockout import access_of, lockout
from reaper.models import HostConnection, HostState, MissionState, PlannedTask
from reaper.policy import Decision, Policy, PolicyRule, check

ROOT_KEY = HostConnection(transport="ssh", user="root", key_file="/k")
ROOT_PASSWORD = HostConnection(transport="ssh", user="root", password_env="PW", use_agent=False)
OPS_PASSWORD = HostConnection(transport="ssh", user="ops", password_env="PW", use_agent=False)
OPS_KEY = HostConnection(transport="ssh", user="ops", key_file="/k", port=2222)
WINRM = HostConnection(transport="winrm", user="Administrator")
WINRM_PW = HostConnection(transport="winrm", user="Administrator", password_env="WPW")
OPS_SUDO = HostConnection(transport="ssh", user="ops", key_file="/k", become_password_env="SUDO")


def _res(kind: str, **fields: Any) -> dict[str, Any]:
    """An `ensure_<kind>` task's params: the declared resource, as the catalog carries it."""
    return {"resource": {"kind": kind, **fields}}


def _sshd(name: str, value: str) -> dict[str, Any]:
    return _res("sshd_option", name=name, value=value)


@pytest.mark.parametrize(
    ("verb", "params", "conn", "rule"),
    [
        ("ensure_sshd_option", _sshd("PermitRootLogin", "no"), ROOT_KEY,
         "sshd:permitrootlogin"),
        ("ensure_sshd_option", _sshd("permitrootlogin", "prohibit-password"),
         ROOT_PASSWORD, "sshd:permitrootlogin:password"),
        ("ensure_sshd_option", _sshd("PasswordAuthentication", "no"), OPS_PASSWORD,
         "sshd:passwordauthentication"),
        ("ensure_sshd_option", _sshd("PubkeyAuthentication", "no"), OPS_KEY,
         "sshd:pubkeyauthentication"),
        ("ensure_sshd_option", _sshd("AllowUsers", "alice bob@10.0.0.*"), OPS_KEY,
         "sshd:allowusers"),
        ("ensure_sshd_option", _sshd("DenyUsers", "o*"), OPS_KEY, "sshd:denyusers"),
        ("ensure_sshd_option", _sshd("Port", "22"), OPS_KEY, "sshd:port"),
        ("ensure_service", _res("service", name="ssh", state="stopped"), OPS_KEY, "service:ssh"),
        ("ensure_service", _res("service", name="sshd", enabled=False), OPS_KEY, "service:sshd"),
        ("ensure_service", _res("service", name="WinRM", state="stopped"), WINRM, "service:winrm"),
        ("ensure_firewall", _res("firewall", port=2222, proto="tcp", action="drop"), OPS_KEY,
         "firewall:management-port"),
        ("ensure_firewall", _res("firewall", port=5986, action="block"), WINRM,
         "firewall:management-port"),
        ("ensure_user", _res("user", name="ops", state="absent"), OPS_KEY, "user:connecting-user"),
        ("ensure_user", _res("user", name="ops", locked=True), OPS_KEY, "user:connecting-user"),
        ("ensure_user", _res("user", name="ops", password_env="NEW", update_password="always"),
         OPS_PASSWORD, "user:connecting-password"),
        ("ensure_user", _res("user", name="ops", password_env="NEW", update_password="always"),
         OPS_SUDO, "user:connecting-password"),
        ("ensure_user", _res("user", name="Administrator", password_env="NEW",
                             update_password="always"), WINRM_PW, "user:connecting-password"),
        ("run_shell", {"command": "sudo systemctl stop ssh"}, OPS_KEY, "shell:detected"),
        ("run_shell", {"command": "userdel -r ops"}, OPS_KEY, "shell:detected"),
        ("run_shell", {"command": "passwd -l ops"}, OPS_KEY, "shell:detected"),
        ("run_shell", {"command": "echo 'PermitRootLogin no' >> /etc/ssh/sshd_config"},
         ROOT_KEY, "shell:detected"),
        ("run_shell", {"command": "iptables -A INPUT -p tcp --dport 2222 -j DROP"}, OPS_KEY,
         "shell:detected"),
        ("run_powershell", {"script": "Stop-Service WinRM"}, WINRM, "shell:detected"),
        ("baseline", {}, OPS_PASSWORD, "baseline:sshd_hardening"),
    ],
)  # fmt: skip
def test_each_way_to_cut_access_is_refused(
    verb: str, params: dict[str, Any], conn: HostConnection, rule: str
) -> None:
    cut = lockout(verb, params, conn, "windows" if conn.transport == "winrm" else "linux")
    assert cut is not None and cut.rule == rule
    assert cut.reason and cut.hint


@pytest.mark.parametrize(
    ("verb", "params", "conn"),
    [
        ("ensure_sshd_option", _sshd("PermitRootLogin", "no"), OPS_KEY),
        ("ensure_sshd_option", _sshd("PermitRootLogin", "prohibit-password"),
         ROOT_KEY),
        ("ensure_sshd_option", _sshd("PasswordAuthentication", "no"), ROOT_KEY),
        ("ensure_sshd_option", _sshd("AllowUsers", "alice ops"), OPS_KEY),
        ("ensure_sshd_option", _sshd("Port", "2222"), OPS_KEY),
        ("ensure_sshd_option", _sshd("X11Forwarding", "no"), ROOT_KEY),
        ("ensure_service", _res("service", name="nginx", state="stopped"), OPS_KEY),
        ("ensure_service", _res("service", name="ssh", state="running", enabled=True), OPS_KEY),
        ("ensure_firewall", _res("firewall", port=5432, action="drop"), OPS_KEY),
        ("ensure_firewall", _res("firewall", port=2222, action="allow"), OPS_KEY),
        ("ensure_user", _res("user", name="alice", state="absent"), OPS_KEY),
        # The connecting user's password from the variable Reaper uses, or with a key only.
        ("ensure_user", _res("user", name="ops", password_env="PW", update_password="always"),
         OPS_PASSWORD),
        ("ensure_user", _res("user", name="ops", password_env="NEW", update_password="always"),
         OPS_KEY),
        ("ensure_user", _res("user", name="ops", password_env="NEW"), OPS_PASSWORD),
        ("run_shell", {"command": "systemctl restart nginx"}, OPS_KEY),
        ("baseline", {}, ROOT_KEY),
        ("baseline", {"check_mode": True}, OPS_PASSWORD),
        ("baseline", {"items": ["login_banner"]}, OPS_PASSWORD),
        ("discover", {}, ROOT_KEY),
    ],
)  # fmt: skip
def test_what_keeps_access_passes(verb: str, params: dict[str, Any], conn: HostConnection) -> None:
    assert lockout(verb, params, conn, "linux") is None


def test_sim_hosts_are_judged_as_their_os_is_reached_and_local_never() -> None:
    sim_root = HostConnection(transport="sim", user="root")
    assert lockout("ensure_sshd_option", _sshd("PermitRootLogin", "no"), sim_root,
                   "linux") is not None  # fmt: skip
    assert lockout("ensure_service", _res("service", name="WinRM", state="stopped"),
                   HostConnection(transport="sim"), "windows") is not None  # fmt: skip
    local = HostConnection(transport="local", user="root", allow_changes=True)
    assert lockout("run_shell", {"command": "systemctl stop ssh"}, local, "linux") is None
    assert access_of(HostConnection(transport="ssh")).user == "root"  # unknown: maybe root
    assert access_of(WINRM).port == 5986


def test_the_guard_runs_in_policy_check_before_any_rule() -> None:
    """Even a policy that allows everything cannot let a planner lock Reaper out."""
    host = HostState(host_id="app-01", os="linux", connection=OPS_PASSWORD)
    state = MissionState(mission_id="m", lab_type="t", hosts={"app-01": host})
    allow_all = Policy(name="yolo", rules=(PolicyRule(decision=Decision.ALLOW),))
    verdict = check(PlannedTask(host_id="app-01", action="linux.baseline"), state, allow_all)
    assert verdict.decision is Decision.DENY and verdict.code == "lockout"
    assert "would lock Reaper out of app-01" in verdict.reason
    assert "hint: connect with a key first" in verdict.reason
    shell = PlannedTask(
        host_id="app-01",
        action="linux.run_shell",
        params={"command": "userdel alice", "reason": "tidy"},
    )
    assert check(shell, state, allow_all).code == "allowed"  # alice is not the connecting user
    shell = shell.model_copy(update={"params": {"command": "passwd -l ops", "reason": "x"}})
    host.connection = OPS_KEY.model_copy(update={"port": None})
    assert check(shell, state, allow_all).code == "lockout"


def test_a_default_drop_after_the_declared_allow_for_the_management_port_passes() -> None:
    """The shipped Linux profile drops inbound by default after allowing SSH: no lockout.
    The same drop with no allow before it is one."""
    allow = {"kind": "firewall", "name": "ssh", "port": 22, "proto": "tcp", "action": "allow"}
    drop = {"kind": "firewall", "name": "default-inbound", "proto": "any", "action": "drop",
            "after": ["firewall/ssh"]}  # fmt: skip
    params = {"resource": drop, "check_mode": False}
    assert lockout("ensure_firewall", params, ROOT_KEY, "linux", [allow, drop]) is None
    assert lockout("ensure_firewall", params, ROOT_KEY, "linux", [drop]) is not None
    other_port = {**allow, "port": 2222}
    assert lockout("ensure_firewall", params, ROOT_KEY, "linux", [other_port, drop]) is not None
    alone = {"resource": {**drop, "after": []}, "check_mode": False}
    assert lockout("ensure_firewall", alone, ROOT_KEY, "linux", [allow, drop]) is not None
