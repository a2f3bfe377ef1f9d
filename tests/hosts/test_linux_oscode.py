"""Linux action code: parsers, the local transport on this machine, baseline logic on a fake
shell, and SSH error mapping that needs no namespace."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from reaper.agents.base import Command, CommandResult
from reaper.agents.oscode import posix
from reaper.agents.oscode.baseline import SSHD_BEGIN, render_sshd_config
from reaper.agents.oscode.linux import ACTIONS, parse_discover
from reaper.agents.transports.local import LocalTransport
from reaper.agents.transports.posixcmd import log_name, to_command_line
from reaper.agents.transports.ssh import SshTransport
from reaper.errors import TransportError
from reaper.models import HostConnection, ResultStatus
from tests.hosts.fakeshell import FakeShell


def test_parsers() -> None:
    ss = (
        'tcp   LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))\n'
        'tcp   LISTEN 0 128 [::]:22 [::]:* users:(("sshd",pid=1,fd=4))\n'
        "udp   UNCONN 0 0 127.0.0.1%lo:53 0.0.0.0:*\n"
    )
    assert posix.parse_ss(ss) == [
        {"proto": "tcp", "port": 22, "process": "sshd"},
        {"proto": "udp", "port": 53, "process": None},
    ]
    proc = (
        "  sl  local_address rem_address   st\n"
        "   0: 00000000:0016 00000000:0000 0A 00000000:00000000\n"
        "   1: 0100007F:1F90 0100007F:D2A4 01 00000000:00000000\n"
    )
    assert posix.parse_proc_net(proc, "tcp") == [{"proto": "tcp", "port": 22, "process": None}]
    assert posix.parse_uid0(
        "root:x:0:0::/root:/bin/sh\ntoor:x:0:0::/:/bin/sh\nbin:x:1:1::/:\n"
    ) == ["root", "toor"]
    cfg = "Include x\nPermitRootLogin yes\nPermitRootLogin no\nMatch User a\nX11Forwarding yes\n"
    assert posix.parse_sshd_config(cfg) == {"include": "x", "permitrootlogin": "yes"}
    df = (
        "Filesystem 1024-blocks Used Available Capacity Mounted on\n"
        "/dev/vda 264212084 23627496 82763416 23% /\n"
        "tmpfs 1000 0 1000 0% /run\n"
        "/dev/vdb 1048576 524288 524288 50% /mnt/my disk\n"
    )
    assert posix.parse_df(df) == [
        {"mount": "/", "device": "/dev/vda", "size_gb": 252.0, "used_pct": 23},
        {"mount": "/mnt/my disk", "device": "/dev/vdb", "size_gb": 1.0, "used_pct": 50},
    ]


def test_render_sshd_config_is_idempotent_and_first() -> None:
    original = "Include /etc/ssh/sshd_config.d/*.conf\nX11Forwarding yes\n"
    once = render_sshd_config(original, {"X11Forwarding": "no"})
    assert once.startswith(SSHD_BEGIN) and once.endswith(original)
    assert render_sshd_config(once, {"X11Forwarding": "no"}) == once


def test_command_line_quotes_every_value_and_sudo() -> None:
    line, stdin = to_command_line(
        Command(argv=["echo", "$(id)", "a b;c"], sudo=True), use_sudo=True
    )
    assert line == "sudo -n -- echo '$(id)' 'a b;c'" and stdin is None
    line, stdin = to_command_line(
        Command(argv=["id"], stdin="x"), use_sudo=True, become_password="pw"
    )
    assert line == "sudo -S -p '' -- id" and stdin == "pw\nx"
    assert log_name("../../etc/passwd") == "etc_passwd.log"


async def test_local_transport_discovers_this_machine(tmp_path: Path) -> None:
    transport = LocalTransport(logs_dir=tmp_path)
    shell = await transport.session("me", HostConnection(transport="local", become=True))
    out = await ACTIONS.run("discover", {}, shell, host_id="me")
    assert out.status == ResultStatus.SUCCESS, out.summary
    assert (
        out.data["hostname"] == socket.gethostname().split(".")[0]
        or out.data["hostname"] == socket.gethostname()
    )
    release = posix.parse_os_release(Path("/etc/os-release").read_text())
    assert out.data["os"]["id"] == release["id"]
    assert out.data["cpu"]["cores"] >= 1 and out.data["memory_mb"] > 0
    assert any(a["addr"] == "127.0.0.1" for a in out.data["addresses"])
    assert out.logs_ref == str(tmp_path / "me.log") and Path(out.logs_ref).exists()


async def test_local_transport_timeout_and_missing_binary(tmp_path: Path) -> None:
    shell = await LocalTransport(logs_dir=tmp_path).session("me", HostConnection())
    with pytest.raises(TransportError) as err:
        await shell.run(Command(argv=["sleep", "5"], timeout_s=0.2))
    assert (err.value.error_code, err.value.retriable) == ("TIMEOUT", True)
    missing = await shell.run(Command(argv=["/nonexistent-reaper-binary"]))
    assert missing.exit_code == 127


def _linux_shell(init: str = "systemd") -> FakeShell:
    probe = f"init={init}\nsystemd=0\nhas_nft=1\nhas_sshd=1\n"
    return FakeShell(
        {
            "has_$t": CommandResult(0, probe, ""),
            "sshd -T": CommandResult(
                0,
                "permitrootlogin no\npasswordauthentication no\n"
                "permitemptypasswords no\nx11forwarding no\nmaxauthtries 4\n",
                "",
            ),
            "stat -c": CommandResult(0, "755 0 0 /etc/ssh\n600 0 0 /etc/ssh/sshd_config\n", ""),
            "cat -- /etc/issue.net": CommandResult(0, "Debian\n", ""),
            "nft list table": CommandResult(1, "", "No such file or directory"),
            "randomize_va_space": CommandResult(
                0,
                "kernel/randomize_va_space=2\nkernel/kptr_restrict=0\nkernel/dmesg_restrict=1\n",
                "",
            ),
        }
    )


async def test_baseline_items_check_mode_and_apply_on_fake_host() -> None:
    shell = _linux_shell(init="sshd")  # PID 1 is no init system: shared kernel
    check = await ACTIONS.run("baseline", {"check_mode": True}, shell, host_id="x")
    status = {i["name"]: i["status"] for i in check.data["items"]}
    assert status == {
        "sshd_hardening": "unchanged",
        "ssh_permissions": "unchanged",
        "login_banner": "would_change",
        "firewall_default": "would_change",
        "time_sync": "skipped",
        "auditd": "skipped",
        "kernel_sysctl": "skipped",
    }
    assert not any(c.stdin for c in shell.commands)
    applied = await ACTIONS.run(
        "baseline", {"items": ["firewall_default", "login_banner"]}, shell, host_id="x"
    )
    assert applied.data["changed"] == 2
    nft = next(c for c in shell.commands if c.argv[:2] == ["nft", "-f"])
    assert nft.sudo and nft.stdin is not None and "policy drop" in nft.stdin
    bad = await ACTIONS.run("baseline", {"items": ["nope; rm -rf /"]}, shell, host_id="x")
    assert bad.error_code == "INVALID_PARAMS"


def test_parse_discover_without_ss_or_systemd() -> None:
    text = (
        "@@reaper:hostname@@\nbox\n@@reaper:services@@\n#ps\n    1     0 sshd\n"
        "    2     0 kthreadd\n   40     2 kworker/0\n@@reaper:ports@@\n#tcp\n"
        "   0: 00000000:0016 00000000:0000 0A 0\n#udp\n@@reaper:sshd@@\n#absent\n"
    )
    facts = parse_discover(text)
    assert facts["services"] == ["sshd"]
    assert facts["listening_ports"] == [{"proto": "tcp", "port": 22, "process": None}]
    assert facts["sshd"]["installed"] is False


async def test_ssh_banner_timeout_is_retriable(tmp_path: Path) -> None:
    # A TCP listener that never speaks SSH: the connect succeeds, the banner never comes.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    transport = SshTransport(logs_dir=None, connect_attempts=1)
    try:
        conn = HostConnection(
            transport="ssh",
            address="127.0.0.1",
            port=port,
            user="x",
            use_agent=False,
            known_hosts=str(tmp_path / "kh"),
            connect_timeout_s=0.3,
        )
        with pytest.raises(TransportError) as err:
            await asyncio.wait_for(transport.session("silent", conn), 10)
        assert (err.value.error_code, err.value.retriable) == ("TIMEOUT", True)
    finally:
        await transport.close()
        server.close()


def test_local_transport_survives_processes_that_exit_before_reading_stdin(tmp_path: Path) -> None:
    """Under uvloop (the CLI's loop), writing to the stdin pipe of a process that has already
    exited raised RuntimeError ("WriteUnixTransport closed") about a third of the time, with or
    without input; `transport: local` discovers crashed with it. 150 runs of each must pass."""
    uvloop = pytest.importorskip("uvloop")

    async def many() -> list[int]:
        shell = await LocalTransport(logs_dir=tmp_path).session("me", HostConnection())
        codes = []
        for stdin in (None, "x" * 200_000):
            for _ in range(150):
                result = await shell.run(Command(argv=["true"], stdin=stdin))
                codes.append(result.exit_code)
        echoed = await shell.run(Command(argv=["cat"], stdin="fed through stdin\n" * 5000))
        assert echoed.stdout == "fed through stdin\n" * 5000
        return codes

    assert set(uvloop.run(many())) == {0}
