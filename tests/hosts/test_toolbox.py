"""diagnose, cleanup and run_shell: the findings parsers, and the actions on namespace hosts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from reaper.actions import CATALOG, validate_params
from reaper.agents.oscode.linux import ACTIONS
from reaper.agents.oscode.toolbox import cleanup_findings, diagnose_findings
from reaper.agents.transports.ssh import SshTransport
from reaper.models import ResultStatus
from tests.hosts.conftest import ssh_conn
from tests.hosts.netns import NsLab

DF = (
    "Filesystem 1024-blocks Used Available Capacity Mounted on\n"
    "/dev/vda1 1000 970 30 97% /\n"
    "tmpfs 1000 10 990 1% /run\n"
    "#inodes\n"
    "Filesystem Inodes IUsed IFree IUse% Mounted on\n"
    "/dev/vda1 100 95 5 95% /\n"
)


def test_findings_name_a_full_disk_a_held_lock_a_failed_service_and_dns() -> None:
    report = {
        "disk": DF,
        "packages": "manager: apt-get\n#repositories\ndeb http://m/ bookworm main\n"
        "#lock\n4242 apt-get\n#broken\n",
        "service": "#state failed\n× nginx.service - A web server",
        "network": "#resolve\nunresolved dc-01.lab.local\n#port\nclosed 10.0.0.5:389\n",
    }
    assert diagnose_findings(report, "nginx", "dc-01.lab.local") == [
        "disk / is 97% full",
        "inodes on / 95% used",
        "package manager busy: 4242 apt-get",
        "service nginx is failed",
        "dc-01.lab.local does not resolve",
        "port 10.0.0.5:389 is closed",
    ]
    calm = {"disk": "Filesystem x\n/dev/vda1 1000 10 990 1% /\n", "service": "#state active\n"}
    assert diagnose_findings(calm, "nginx", None) == []


def test_cleanup_totals_sum_over_cache_directories() -> None:
    out = "package_cache 3 3000\npackage_cache 1 24\ntemp 2 10\nold_logs 0 0\nnoise line\n"
    assert cleanup_findings(out) == {
        "package_cache": {"files": 4, "bytes": 3024},
        "temp": {"files": 2, "bytes": 10},
        "old_logs": {"files": 0, "bytes": 0},
    }


@pytest.mark.parametrize(
    ("action", "params", "error"),
    [
        ("linux.diagnose", {"service": "x; touch /tmp/p"}, "service"),
        ("linux.diagnose", {"service": "-h"}, "service"),
        ("linux.diagnose", {"topics": ["disk", "kernel"]}, "topics"),
        ("linux.cleanup", {"targets": ["/etc"]}, "targets"),
        ("linux.run_shell", {"command": "id"}, "reason"),
        ("windows.run_powershell", {"script": "", "reason": "x"}, "script"),
        ("windows.run_powershell", {"script": "\u00e9" * 700, "reason": "x"}, "script"),
    ],
)
def test_toolbox_params_are_checked_by_the_catalog(
    action: str, params: dict[str, object], error: str
) -> None:
    _, why = validate_params(CATALOG[action], dict(params))
    assert why is not None and why.startswith(error), why


@pytest.mark.services
@pytest.mark.slow
async def test_diagnose_reports_every_topic_read_only(ns_lab: NsLab, tmp_path: Path) -> None:
    host = ns_lab.hosts["h3"]
    transport = SshTransport(logs_dir=tmp_path)
    try:
        shell = await transport.session(host.name, ssh_conn(ns_lab, host))
        out = await ACTIONS.run(
            "diagnose",
            {"service": "ssh", "target": "no-such-host.invalid", "log_lines": 5},
            shell,
            host_id=host.name,
        )
        assert out.status == ResultStatus.SUCCESS, out.summary
        report = out.data["report"]
        assert set(report) == {"disk", "packages", "service", "network", "time", "processes"}
        assert "manager: apt-get" in report["packages"]
        assert "#state " in report["service"]
        assert "#resolvers" in report["network"]
        assert "no-such-host.invalid does not resolve" in out.data["findings"]
        assert "PID" in report["processes"] and "sshd" in report["processes"]

        port = await ACTIONS.run(
            "diagnose",
            {"topics": ["network"], "target": host.addr, "port": 22},
            shell,
            host_id=host.name,
        )
        assert f"open {host.addr}:22" in port.data["report"]["network"], port.data
        closed = await ACTIONS.run(
            "diagnose",
            {"topics": ["network"], "target": host.addr, "port": 1},
            shell,
            host_id=host.name,
        )
        assert f"port {host.addr}:1 is closed" in closed.data["findings"]
    finally:
        await transport.close()


@pytest.mark.services
@pytest.mark.slow
async def test_cleanup_check_mode_removes_nothing_then_removes_only_old_files(
    ns_lab: NsLab, tmp_path: Path
) -> None:
    host = ns_lab.hosts["h3"]
    old = [host.root / "var/tmp/reaper-old-1", host.root / "tmp/reaper-old-2"]
    fresh = host.root / "tmp/reaper-fresh"
    month_ago = time.time() - 30 * 86400
    for path in old:
        path.write_bytes(b"x" * 1000)
        os.utime(path, (month_ago, month_ago))
    fresh.write_bytes(b"y" * 10)
    transport = SshTransport(logs_dir=tmp_path)
    try:
        shell = await transport.session(host.name, ssh_conn(ns_lab, host))
        check = await ACTIONS.run(
            "cleanup", {"targets": ["temp"], "check_mode": True}, shell, host_id=host.name
        )
        assert check.status == ResultStatus.SUCCESS, check.summary
        assert check.data["targets"]["temp"]["files"] >= 2
        assert check.data["targets"]["temp"]["bytes"] >= 2000
        assert all(p.exists() for p in old) and fresh.exists()

        done = await ACTIONS.run("cleanup", {"targets": ["temp"]}, shell, host_id=host.name)
        assert done.status == ResultStatus.SUCCESS and done.data["changed"] is True
        assert not any(p.exists() for p in old) and fresh.exists()
        again = await ACTIONS.run("cleanup", {"targets": ["temp"]}, shell, host_id=host.name)
        assert again.data["changed"] is False
    finally:
        fresh.unlink(missing_ok=True)
        await transport.close()


@pytest.mark.services
@pytest.mark.slow
async def test_run_shell_reports_exit_code_and_output(ns_lab: NsLab, tmp_path: Path) -> None:
    host = ns_lab.hosts["h3"]
    transport = SshTransport(logs_dir=tmp_path)
    try:
        shell = await transport.session(host.name, ssh_conn(ns_lab, host))
        ok = await ACTIONS.run(
            "run_shell", {"command": "id -u; echo to-stderr >&2", "reason": "t"}, shell,
            host_id=host.name,
        )  # fmt: skip
        assert ok.status == ResultStatus.SUCCESS and ok.stdout_tail.strip() == "0"  # become
        assert "to-stderr" in ok.stderr_tail
        bad = await ACTIONS.run(
            "run_shell", {"command": "echo partial; exit 3", "reason": "t"}, shell,
            host_id=host.name,
        )  # fmt: skip
        assert bad.status == ResultStatus.ERROR and bad.data == {"exit_code": 3}
        assert bad.error_code == "COMMAND_FAILED" and "partial" in bad.stdout_tail
    finally:
        await transport.close()
