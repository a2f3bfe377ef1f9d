"""Ansible inventories read as Reaper labs: INI and YAML, groups, children, ranges, variable
precedence, connection mapping, one-line errors, and inline secrets that never leak."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reaper.errors import ConfigError
from reaper.infra.factory import open_backend
from reaper.inventory.load import LAB_TYPE, load_inventory, parse_inventory, resolve_host_vars
from reaper.inventory.parse import expand_pattern, parse_ini
from reaper.lab import LabFile
from reaper.models import Stage
from reaper.overseer import Overseer
from reaper.secrets import redact, secret_lookup
from tests.hosts.netns import USER, NsLab

WIN_PW = 'W1n$ecret;"pw-7f3a'
BECOME_PW = "b3come!pw-91c2"

INI = f"""\
# The lab, as Ansible sees it
bastion.lab.example ansible_host=10.0.0.2

[web]
web[01:03].lab.example ansible_user=deploy
api.lab.example:2222

[db]
db-[a:c].lab.example ansible_become=true ansible_become_password="{BECOME_PW}"

[db:vars]
ansible_user=dbadmin

[windows]  # domain members
dc01.lab.example ansible_host=10.0.1.10  # the DC
ws[1:2].lab.example

[windows:vars]
ansible_connection=winrm
ansible_winrm_transport=ntlm
ansible_winrm_server_cert_validation=ignore
ansible_password='{WIN_PW}'
ansible_user=LAB\\Administrator

[linux:children]
web
db

[linux:vars]
ansible_user=linuxadmin
ansible_ssh_private_key_file=~/.ssh/lab_ed25519
ansible_ssh_common_args='-o ProxyJump=ops@bastion.lab.example:2200 \
-o StrictHostKeyChecking=accept-new'

[prod:children]
linux
windows

[all:vars]
ansible_user=ops
"""

YAML = f"""\
all:
  hosts:
    bastion.lab.example: {{ansible_host: 10.0.0.2}}
  vars:
    ansible_user: ops
  children:
    prod:
      children:
        linux:
          vars:
            ansible_user: linuxadmin
            ansible_ssh_private_key_file: ~/.ssh/lab_ed25519
            ansible_ssh_common_args: >-
              -o ProxyJump=ops@bastion.lab.example:2200 -o StrictHostKeyChecking=accept-new
          children:
            web:
              hosts:
                web[01:03].lab.example: {{ansible_user: deploy}}
                api.lab.example: {{ansible_port: 2222}}
            db:
              hosts:
                db-[a:c].lab.example:
                  ansible_become: "true"
                  ansible_become_password: "{BECOME_PW}"
              vars:
                ansible_user: dbadmin
        windows:
          hosts:
            dc01.lab.example: {{ansible_host: 10.0.1.10}}
            ws[1:2].lab.example:
          vars:
            ansible_connection: winrm
            ansible_winrm_transport: ntlm
            ansible_winrm_server_cert_validation: ignore
            ansible_password: '{WIN_PW}'
            ansible_user: LAB\\Administrator
"""


def _hosts(lab: LabFile) -> dict[str, dict[str, object]]:
    # Connection settings only: the groups (which feed roles) are tested in tests/desired.
    return {
        h.host_id: h.model_dump(exclude_unset=True, exclude={"groups"}, mode="json")
        for h in lab.hosts
    }


def test_ini_inventory_groups_children_ranges_and_precedence() -> None:
    lab = parse_inventory(INI, source="hosts.ini")
    hosts = _hosts(lab)
    assert lab.lab_type == LAB_TYPE and lab.goal is Stage.BASELINED
    assert sorted(hosts) == sorted(
        [
            "bastion.lab.example",
            "web01.lab.example",
            "web02.lab.example",
            "web03.lab.example",
            "api.lab.example",
            "db-a.lab.example",
            "db-b.lab.example",
            "db-c.lab.example",
            "dc01.lab.example",
            "ws1.lab.example",
            "ws2.lab.example",
        ]
    )
    web = hosts["web02.lab.example"]
    assert web == {
        "host_id": "web02.lab.example",
        "os": "linux",
        "transport": "ssh",
        "address": "web02.lab.example",
        "user": "deploy",  # host var beats every group
        "key_file": "~/.ssh/lab_ed25519",
        "jump_host": "ops@bastion.lab.example:2200",
        "accept_new_host_key": True,
    }
    assert hosts["api.lab.example"]["port"] == 2222
    assert hosts["api.lab.example"]["user"] == "linuxadmin"  # linux (depth 2) beats all
    db = hosts["db-b.lab.example"]
    assert db["user"] == "dbadmin"  # db (depth 3) beats its parent linux
    assert db["become"] is True and db["become_password_env"]
    assert secret_lookup({})[str(db["become_password_env"])] == BECOME_PW
    assert hosts["bastion.lab.example"] == {
        "host_id": "bastion.lab.example",
        "os": "linux",
        "transport": "ssh",
        "address": "10.0.0.2",
        "user": "ops",
    }
    dc = hosts["dc01.lab.example"]
    assert (dc["os"], dc["transport"], dc["address"], dc["user"]) == (
        "windows",
        "winrm",
        "10.0.1.10",
        "LAB\\Administrator",
    )
    assert dc["winrm"] == {"auth": "ntlm", "validate_certs": False}
    assert secret_lookup({})[str(dc["password_env"])] == WIN_PW


def test_yaml_inventory_reads_the_same_lab() -> None:
    assert _hosts(parse_inventory(YAML, source="hosts.yml")) == _hosts(
        parse_inventory(INI, source="hosts.ini")
    )


@pytest.mark.skipif(
    shutil.which("ansible-inventory", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    is None,
    reason="ansible-core not installed (only the SSH benchmark installs it)",
)
def test_variables_match_ansible_inventory(tmp_path: Path) -> None:
    """Cross-check the merge against Ansible itself, on the same file."""
    path = tmp_path / "hosts.ini"
    path.write_text(INI)
    exe = shutil.which(
        "ansible-inventory", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    )
    assert exe is not None
    done = subprocess.run(
        [exe, "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_HOME": str(tmp_path)},
        check=True,
    )
    theirs = json.loads(done.stdout)["_meta"]["hostvars"]
    ours = {
        h: {k: v.value for k, v in vs.items()}
        for h, vs in resolve_host_vars(parse_ini(INI, str(path))).items()
    }
    assert ours == theirs


def test_ranges() -> None:
    assert expand_pattern("web[01:03]") == ["web01", "web02", "web03"]
    assert expand_pattern("db-[a:c]-[1:2]") == [
        "db-a-1",
        "db-a-2",
        "db-b-1",
        "db-b-2",
        "db-c-1",
        "db-c-2",
    ]
    assert expand_pattern("n[0:10:5]") == ["n0", "n5", "n10"]
    lab = parse_inventory("[g]\nweb[1:2]:2200 ansible_user=x\n2001:db8::5\n")
    ports = {h.host_id: (h.address, h.port) for h in lab.hosts}
    assert ports == {
        "web1": ("web1", 2200),
        "web2": ("web2", 2200),
        "2001-db8-5": ("2001:db8::5", None),
    }


def test_connections_psrp_local_and_options() -> None:
    lab = parse_inventory(
        "[w]\nps1 ansible_connection=psrp ansible_psrp_protocol=https ansible_psrp_auth=kerberos"
        " ansible_psrp_ca_cert=/etc/ca.pem ansible_port=5986\n"
        "cert1 ansible_connection=ansible.builtin.winrm ansible_winrm_transport=certificate"
        " ansible_winrm_cert_pem=/c.pem ansible_winrm_cert_key_pem=/k.pem\n"
        "[l]\nlocalhost ansible_connection=local\n"
        "mac1 reaper_os=darwin ansible_ssh_common_args='-J jump:2222'"
        " ansible_ssh_extra_args='-o UserKnownHostsFile=/lab/known_hosts'\n"
        "old ansible_ssh_host=10.9.9.9 ansible_ssh_port=2022 ansible_ssh_user=u"
        " ansible_connection=paramiko ansible_timeout=5\n"
        "[all:vars]\nreaper_goal=discovered\nreaper_policy=read-only\n"
    )
    hosts = _hosts(lab)
    assert lab.goal is Stage.DISCOVERED and lab.policy == "read-only"
    assert hosts["ps1"]["winrm"] == {
        "scheme": "https",
        "auth": "kerberos",
        "ca_file": "/etc/ca.pem",
    }
    assert hosts["ps1"]["port"] == 5986 and hosts["ps1"]["os"] == "windows"
    assert hosts["cert1"]["winrm"] == {"auth": "certificate", "cert_file": "/c.pem"}
    assert hosts["cert1"]["key_file"] == "/k.pem"
    assert hosts["localhost"] == {"host_id": "localhost", "os": "linux", "transport": "local"}
    assert hosts["mac1"]["os"] == "macos" and hosts["mac1"]["jump_host"] == "jump:2222"
    assert hosts["mac1"]["known_hosts"] == "/lab/known_hosts"
    assert (
        hosts["old"]["address"],
        hosts["old"]["port"],
        hosts["old"]["user"],
        hosts["old"]["connect_timeout_s"],
    ) == ("10.9.9.9", 2022, "u", 5.0)


@pytest.mark.parametrize(
    ("args", "jump"),
    [
        ('-o ProxyCommand="ssh -W %h:%p -q ops@bastion"', "ops@bastion"),
        ('-o ProxyCommand="ssh -p 2200 -l me -W %h:%p bastion"', "me@bastion:2200"),
        ("-oProxyJump=j1", "j1"),
        ('-o "ProxyJump j2:22"', "j2:22"),
        ("-J u@j3", "u@j3"),
    ],
)
def test_jump_host_from_ssh_args(args: str, jump: str) -> None:
    lab = parse_inventory(f"[g]\nh ansible_ssh_common_args='{args}'\n")
    assert lab.hosts[0].jump_host == jump


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[g]\nh ansible_ssh_common_args='-o ProxyCommand=\"nc %h %p\"'\n", 2, "ProxyCommand"),
        ("[web]\nw1\n[web:hosts2]\n", 3, "unknown section type"),
        ("[web]\nw1\nw2 ansible_port=abc\n", 3, "ansible_port must be an integer"),
        ("[c]\nbox ansible_connection=docker\n", 2, "ansible_connection is not supported"),
        ("[a:children]\nb\n[b:children]\na\n[b]\nh1\n", 1, "group cycle"),
        ("[web]\nweb[05:01]\n", 2, "range start after end"),
        ("[web]\nw1 ansible_user\n", 2, "expected key=value"),
        ("[web\nw1\n", 1, "malformed section header"),
        ("[web]\nw1 reaper_os=plan9\n", 2, "reaper_os must be"),
        ("[all:vars]\nreaper_goal=everything\n[g]\nh\n", 2, "reaper_goal must be"),
    ],
)
def test_bad_ini_is_one_line_with_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_inventory(path)
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("all:\n  children:\n    web:\n      host:\n        w1:\n", 4, "unknown key 'host'"),
        ("all:\n  hosts:\n    w1:\n   bad: [\n", 4, "invalid YAML"),
        ("all:\n  hosts:\n    w1:\n      ansible_port: many\n", 4, "must be an integer"),
        ("all:\n  hosts: [w1, w2]\n", 2, "must be a mapping"),
    ],
)
def test_bad_yaml_is_one_line_with_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_inventory(path)
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_errors_never_quote_a_secret(tmp_path: Path) -> None:
    secret = "Sup3r-" + secrets.token_hex(4)
    for text in (
        f"[g]\nh ansible_password='{secret}\n",  # unbalanced quote
        f"[g]\nh ansible_password={secret} ansible_port=x{secret}\n",
        f"[g]\nh ansible_password={{{{ vault_{secret} }}}}\n",
    ):
        path = tmp_path / "hosts.ini"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_inventory(path)
        assert secret not in str(err.value)


async def test_inline_secrets_are_never_logged_or_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    lab = load_inventory(_write(tmp_path / "hosts.ini", INI))
    db = tmp_path / "m.db"
    backend = open_backend(f"sqlite:///{db}")
    try:
        state = await Overseer(backend).create_mission(lab)
        stored = await backend.store.load(state.mission_id)
        events = await backend.store.events(state.mission_id)
    finally:
        await backend.close()
    assert stored is not None
    texts = [
        caplog.text,
        lab.model_dump_json(),
        state.model_dump_json(),
        stored.model_dump_json(),
        *(e.model_dump_json() for e in events),
    ]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("m.db*"))
    for pw in (WIN_PW, BECOME_PW):
        assert all(pw not in t for t in texts)
        assert pw.encode() not in raw
    assert "certificate will NOT be checked" in caplog.text  # the loud warning
    assert redact(f"x {WIN_PW} y") == "x [REDACTED] y"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.services
def test_reaper_run_inventory_with_inline_password(mission_lab: NsLab, tmp_path: Path) -> None:
    """`reaper run --inventory` over SSH with password auth from the inventory: the mission
    works, and the password is in no output, log, command log or database."""
    host = mission_lab.hosts["mi"]
    password = "Inv-" + secrets.token_hex(8)
    subprocess.run(
        ["chroot", str(host.root), "chpasswd"], input=f"{USER}:{password}\n", text=True, check=True
    )
    inventory = _write(
        tmp_path / "hosts.ini",
        (
            "[lab]\n"
            f"mi ansible_host={host.addr} ansible_user={USER} ansible_password='{password}'"
            " ansible_become=true\n"
            "[all:vars]\n"
            "reaper_goal=discovered\n"
            f"ansible_ssh_common_args='-o UserKnownHostsFile={mission_lab.known_hosts}'\n"
        ),
    )
    db, log_file = tmp_path / "reaper.db", tmp_path / "reaper.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reaper.cli",
            "run",
            "--inventory",
            str(inventory),
            "--db",
            str(db),
            "--no-live",
            "--no-input",
            "--json",
            "--log-file",
            str(log_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert (report["status"], report["goal_reached"]) == ("completed", True)
    assert report["hosts"]["mi"]["stage"] == "discovered"
    assert report["lab_type"] == LAB_TYPE
    assert any(f"Accepted password for {USER}" in line for line in host.log)
    files = [log_file, *tmp_path.glob("reaper.db*"), *(tmp_path / "state").rglob("*")]
    assert any((tmp_path / "state").rglob("*.log"))  # the command log was written
    for blob in (done.stdout, done.stderr):
        assert password not in blob
    for path in files:
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_cli_bad_inventory_exits_2_with_one_line(tmp_path: Path) -> None:
    inventory = _write(tmp_path / "hosts.ini", "[web]\nw1 ansible_port=http\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reaper.cli",
            "run",
            "--inventory",
            str(inventory),
            "--db",
            str(tmp_path / "r.db"),
            "--no-live",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"{inventory}:2: host 'w1': ansible_port must be an integer" in done.stderr
