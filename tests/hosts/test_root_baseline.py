"""Connecting as root with a key, the shipped baseline applied twice leaves Reaper able to
connect and reports nothing changed the second time (it used to set PermitRootLogin no and
lock Reaper out of every host on the second run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reaper.agents.oscode.linux import ACTIONS
from reaper.agents.transports.ssh import SshTransport
from reaper.models import ResultStatus
from tests.hosts.conftest import ssh_conn
from tests.hosts.netns import NsLab

pytestmark = [pytest.mark.services, pytest.mark.slow]


async def test_baseline_twice_as_root_with_a_key_keeps_reaper_in(
    root_lab: NsLab, tmp_path: Path
) -> None:
    host = root_lab.hosts["r1"]
    conn = ssh_conn(root_lab, host, user="root", become=False)
    for run in (1, 2):
        transport = SshTransport(logs_dir=tmp_path)  # a fresh connection each time
        try:
            shell = await transport.session(host.name, conn)
            out = await ACTIONS.run("baseline", {}, shell, host_id=host.name)
        finally:
            await transport.close()
        assert out.status == ResultStatus.SUCCESS, out.summary
        items = {i["name"]: i for i in out.data["items"]}
        if run == 1:
            assert items["sshd_hardening"]["status"] == "changed"
        else:
            assert out.data["changed"] == 0, out.data
    transport = SshTransport(logs_dir=None)
    try:
        shell = await transport.session(host.name, conn)
        facts = await ACTIONS.run("discover", {"sections": ["sshd"]}, shell, host_id=host.name)
    finally:
        await transport.close()
    assert facts.status == ResultStatus.SUCCESS  # still reachable as root, with the key
    assert facts.data["sshd"]["permitrootlogin"] in ("without-password", "prohibit-password")
    assert facts.data["sshd"]["passwordauthentication"] == "no"
