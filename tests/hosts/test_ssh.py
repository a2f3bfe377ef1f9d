"""The SSH transport and the Linux action code against real OpenSSH servers in namespaces."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from reaper.agents.base import Command
from reaper.agents.oscode.baseline import SSHD_BEGIN
from reaper.agents.oscode.linux import ACTIONS
from reaper.agents.transports.ssh import SshTransport
from reaper.errors import TransportError
from reaper.models import ResultStatus
from tests.hosts.conftest import ssh_conn
from tests.hosts.netns import PASSWORD, NsLab

pytestmark = [pytest.mark.services, pytest.mark.slow]


async def test_discover_three_hosts(ns_lab: NsLab, logs_dir: Path) -> None:
    transport = SshTransport(logs_dir=logs_dir)
    hosts = [ns_lab.hosts[n] for n in ("h1", "h2", "h3")]
    try:
        started = time.perf_counter()

        async def one(h):  # type: ignore[no-untyped-def]
            shell = await transport.session(h.name, ssh_conn(ns_lab, h))
            return await ACTIONS.run("discover", {}, shell, host_id=h.name)

        outcomes = await asyncio.gather(*(one(h) for h in hosts))
        elapsed = time.perf_counter() - started
    finally:
        await transport.close()
    print(f"\ndiscover on {len(hosts)} namespace hosts: {elapsed * 1000:.0f} ms")
    for host, out in zip(hosts, outcomes, strict=True):
        assert out.status == ResultStatus.SUCCESS, out.summary
        facts = out.data
        assert facts["hostname"] == host.name
        assert facts["os"]["id"] == "debian" and facts["os"]["version"] == "12"
        assert host.addr in [a["addr"] for a in facts["addresses"]]
        assert facts["uid0_users"] == ["root"]
        assert facts["package_manager"] == "apt-get"
        assert facts["sshd"]["source"] == "sshd -T"  # ran through sudo: effective settings
        assert {"proto": "tcp", "port": 22, "process": "sshd"} in facts["listening_ports"]
        assert "sshd" in facts["services"]
        assert facts["cpu"]["cores"] >= 1 and facts["memory_mb"] > 0
        assert out.logs_ref and "@@reaper:os_release@@" in Path(out.logs_ref).read_text()


async def _latency(lab: NsLab, nodelay: bool, n: int = 40) -> float:
    transport = SshTransport(tcp_nodelay=nodelay, logs_dir=None)
    host = lab.hosts["h2"]
    try:
        shell = await transport.session(host.name, ssh_conn(lab, host))
        await shell.run(Command(argv=["true"]))
        started = time.perf_counter()
        for _ in range(n):
            result = await shell.run(Command(argv=["true"]))
            assert result.exit_code == 0
        return (time.perf_counter() - started) / n
    finally:
        await transport.close()


async def test_reused_connection_latency_with_nodelay(ns_lab: NsLab) -> None:
    fast = await _latency(ns_lab, nodelay=True)
    slow = await _latency(ns_lab, nodelay=False, n=10)
    print(
        f"\nper-command latency, reused connection: {fast * 1000:.1f} ms with TCP_NODELAY, "
        f"{slow * 1000:.1f} ms without"
    )
    assert fast < 0.030  # ~a few ms here; Nagle + delayed ACK alone would cost ~40 ms


async def test_stdin_stderr_exit_code_and_quoting(ns_lab: NsLab, logs_dir: Path) -> None:
    transport = SshTransport(logs_dir=logs_dir)
    host = ns_lab.hosts["h1"]
    try:
        shell = await transport.session(host.name, ssh_conn(ns_lab, host))
        r = await shell.run(
            Command(
                argv=["sh", "-c", 'cat; echo "$1" >&2; exit 7', "sh", 'it\'s a "value"'],
                stdin="in put",
            )
        )
        assert (r.exit_code, r.stdout, r.stderr) == (7, "in put", 'it\'s a "value"\n')
        root = await shell.run(Command(argv=["id", "-u"], sudo=True))
        assert root.stdout.strip() == "0"
        user = await shell.run(Command(argv=["id", "-un"]))
        assert user.stdout.strip() == "reaper"
    finally:
        await transport.close()


async def test_command_timeout_is_retriable(ns_lab: NsLab) -> None:
    transport = SshTransport(logs_dir=None)
    host = ns_lab.hosts["h1"]
    try:
        shell = await transport.session(host.name, ssh_conn(ns_lab, host))
        with pytest.raises(TransportError) as err:
            await shell.run(Command(argv=["sleep", "5"], timeout_s=0.5))
        assert (err.value.error_code, err.value.retriable) == ("TIMEOUT", True)
        assert (await shell.run(Command(argv=["echo", "ok"]))).stdout == "ok\n"
    finally:
        await transport.close()


async def test_unknown_host_key_refused_then_accepted_on_request(
    ns_lab: NsLab, tmp_path: Path
) -> None:
    host = ns_lab.hosts["h2"]
    known = tmp_path / "known_hosts"
    transport = SshTransport(logs_dir=None)
    try:
        with pytest.raises(TransportError) as err:
            await transport.session(host.name, ssh_conn(ns_lab, host, known_hosts=str(known)))
        assert (err.value.error_code, err.value.retriable) == ("HOST_KEY_UNKNOWN", False)
        assert not known.exists()
        conn = ssh_conn(ns_lab, host, known_hosts=str(known), accept_new_host_key=True)
        shell = await transport.session(host.name, conn)
        assert (await shell.run(Command(argv=["hostname"]))).stdout.strip() == "h2"
    finally:
        await transport.close()
    assert host.host_key_pub in known.read_text()
    # Saved: a default (rejecting) client now trusts it.
    again = SshTransport(logs_dir=None)
    try:
        await again.session(host.name, ssh_conn(ns_lab, host, known_hosts=str(known)))
    finally:
        await again.close()


async def test_changed_host_key_refused_and_nothing_runs(ns_lab: NsLab, tmp_path: Path) -> None:
    host, other = ns_lab.hosts["h3"], ns_lab.hosts["h1"]
    known = tmp_path / "known_hosts"
    # h3's address with h1's key: what a man in the middle (or a reinstalled host) looks like.
    known.write_text(f"{host.addr} ssh-ed25519 {other.host_key_pub}\n")
    accepted_before = sum("Accepted" in line for line in host.log)
    transport = SshTransport(logs_dir=None)
    try:
        for accept_new in (False, True):  # accept-new never covers a *changed* key
            conn = ssh_conn(ns_lab, host, known_hosts=str(known), accept_new_host_key=accept_new)
            with pytest.raises(TransportError) as err:
                await transport.session(host.name, conn)
            assert (err.value.error_code, err.value.retriable) == ("HOST_KEY_MISMATCH", False)
    finally:
        await transport.close()
    assert sum("Accepted" in line for line in host.log) == accepted_before  # never authenticated
    assert known.read_text().count("\n") == 1


async def test_password_auth_and_auth_failure(ns_lab: NsLab) -> None:
    host = ns_lab.hosts["h1"]
    transport = SshTransport(logs_dir=None, environ={"PW": PASSWORD, "BAD": "nope"})
    try:
        conn = ssh_conn(ns_lab, host, key_file=None, password_env="PW")
        shell = await transport.session(host.name, conn)
        assert (await shell.run(Command(argv=["id", "-un"]))).stdout.strip() == "reaper"
        with pytest.raises(TransportError) as err:
            await transport.session(
                host.name, ssh_conn(ns_lab, host, key_file=None, password_env="BAD")
            )
        assert (err.value.error_code, err.value.retriable) == ("AUTH_FAILED", False)
        assert "nope" not in str(err.value)
    finally:
        await transport.close()


async def test_sshd_stopped_midway_is_retriable_and_recovers(ns_lab: NsLab) -> None:
    host = ns_lab.hosts["hx"]
    transport = SshTransport(logs_dir=None, connect_attempts=2)
    try:
        shell = await transport.session(host.name, ssh_conn(ns_lab, host))
        assert (await shell.run(Command(argv=["true"]))).exit_code == 0
        ns_lab.stop_sshd(host)
        with pytest.raises(TransportError) as err:
            await shell.run(Command(argv=["true"]))
        assert err.value.retriable
        assert err.value.error_code in ("CONNECTION_REFUSED", "TIMEOUT", "CONNECTION_LOST")
        ns_lab.start_sshd(host)
        assert (await shell.run(Command(argv=["echo", "back"]))).stdout == "back\n"
    finally:
        await transport.close()


async def test_connection_refused_is_retriable(ns_lab: NsLab) -> None:
    host = ns_lab.hosts["h1"]
    transport = SshTransport(logs_dir=None, connect_attempts=1)
    try:
        with pytest.raises(TransportError) as err:
            await transport.session("p", ssh_conn(ns_lab, host, port=2222))
        assert (err.value.error_code, err.value.retriable) == ("CONNECTION_REFUSED", True)
    finally:
        await transport.close()


METACHAR = [
    "$(touch {m})",
    "; touch {m}",
    "| touch {m}",
    "`touch {m}`",
    "' ; touch {m} ; '",
    '" ; touch {m} ; "',
    "\ntouch {m}\n",
    "&& touch {m}",
    "$(touch {m})'\"`touch {m}`",
]


async def test_shell_metacharacters_in_params_never_execute(ns_lab: NsLab, tmp_path: Path) -> None:
    host = ns_lab.hosts["h2"]
    marker = "/tmp/reaper-pwned"
    transport = SshTransport(logs_dir=tmp_path / "logs")
    try:
        for template in METACHAR:
            payload = template.format(m=marker)
            shell = await transport.session(f"h2{payload}", ssh_conn(ns_lab, host))
            echoed = await shell.run(Command(argv=["echo", payload], sudo=True))
            assert echoed.stdout == payload + "\n"
            for verb, params in (
                ("discover", {"sections": [payload]}),
                ("prepare", {"items": [payload]}),
                ("baseline", {"items": [payload], "check_mode": True}),
                ("reboot", {"reason": payload}),
            ):
                out = await ACTIONS.run(verb, params, shell, host_id=host.name)
                assert out.status == ResultStatus.ERROR, (verb, out.summary)
            assert not (host.root / marker.lstrip("/")).exists(), payload
            assert not Path(marker).exists(), payload
    finally:
        await transport.close()
    # host ids become log file names; none escaped the logs directory.
    assert all(p.parent == tmp_path / "logs" for p in (tmp_path / "logs").iterdir())


async def test_baseline_check_apply_and_idempotent(ns_lab: NsLab, logs_dir: Path) -> None:
    host = ns_lab.hosts["hb"]
    config = host.root / "etc/ssh/sshd_config"
    original = config.read_bytes()
    transport = SshTransport(logs_dir=logs_dir)
    try:
        shell = await transport.session(host.name, ssh_conn(ns_lab, host))
        check = await ACTIONS.run("baseline", {"check_mode": True}, shell, host_id=host.name)
        assert check.status == ResultStatus.SUCCESS, check.summary
        items = {i["name"]: i for i in check.data["items"]}
        assert items["sshd_hardening"]["status"] == "would_change"
        assert items["login_banner"]["status"] == "would_change"
        assert items["kernel_sysctl"]["status"] in ("skipped", "unchanged")
        assert check.data["changed"] == 0
        assert config.read_bytes() == original  # check mode changed nothing
        assert not (host.root / "etc/issue.net").read_text().startswith("Authorized")

        applied = await ACTIONS.run("baseline", {}, shell, host_id=host.name)
        assert applied.status == ResultStatus.SUCCESS, applied.data
        items = {i["name"]: i for i in applied.data["items"]}
        assert items["sshd_hardening"]["status"] == "changed"
        assert items["sshd_hardening"]["after"]["PermitRootLogin"] == "without-password"  # sshd -T
        assert items["login_banner"]["status"] == "changed"
        assert items["ssh_permissions"]["status"] in ("changed", "unchanged")
        assert items["firewall_default"]["status"] == "unavailable"
        assert items["time_sync"]["status"] == "skipped"
        assert items["auditd"]["status"] == "skipped"
        text = config.read_text()
        assert text.startswith(SSHD_BEGIN)
        for line in (
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "X11Forwarding no",
            "MaxAuthTries 4",
        ):
            assert line in text
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        assert (host.root / "etc/issue.net").read_text().startswith("Authorized use only")

        again = await ACTIONS.run("baseline", {}, shell, host_id=host.name)
        assert again.data["changed"] == 0, again.data
        assert config.read_text() == text
    finally:
        await transport.close()
    # sshd was reloaded with the new config and still takes new connections.
    fresh = SshTransport(logs_dir=None)
    try:
        shell = await fresh.session(host.name, ssh_conn(ns_lab, host))
        facts = await ACTIONS.run("discover", {"sections": ["sshd"]}, shell, host_id=host.name)
        assert facts.data["sshd"]["permitrootlogin"] == "without-password"
        assert facts.data["sshd"]["maxauthtries"] == "4"
    finally:
        await fresh.close()
