"""The RHEL-family (dnf) path of the Linux ensure on real hosts: namespace hosts whose rootfs
carries Debian's dnf 4.14 and rpm 4.18 under a Rocky Linux os-release (.ci/dnf-setup), a
real RPM built here by rpmbuild in a createrepo_c repository served inside the test network.

A role (the dnf repository, the package from it, the service its init script runs) converges
over SSH; a second run changes nothing; plan and --check leave the host byte-identical; an
unknown package, an unreachable repository and a held dnf lock come back with their failure
class and dnf's own text. Not a real RHEL: the same dnf, on Debian's libraries."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.dnfrepo import DATA_FILE, PACKAGE, ROOTFS, VERSION, build_repo
from reaper.agents.runners import default_runners
from reaper.cli.plan import discover_lab, plan_report
from reaper.desired.progress import progress
from reaper.lab import LabFile, parse_lab
from reaper.models import MissionStatus, ResultStatus
from tests.hosts.aptmirror import Mirror, serve
from tests.hosts.conftest import ssh_settings
from tests.hosts.netns import NsHost, NsLab
from tests.hosts.test_linux_converge import (
    _ensure,
    ensures,
    gateway,
    host_shell,
    in_host,
    install_while_held,
    sshd_pid,
    tree_digest,
)
from tests.hosts.test_mission_ssh import results, run_mission

pytestmark = [pytest.mark.services, pytest.mark.slow]

REPO = "reaper-rpms"
# Any `rpm -q` as root rewrites the shared-memory index of the rpm database's SQLite file (as
# on RHEL 9): not data. The database and its write-ahead log stay in the digest.
RPMDB_SHM = ("var/lib/rpm/rpmdb.sqlite-shm",)


@pytest.fixture(scope="module")
def dnf_mirrors(
    dnf_lab: NsLab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Mirror]]:
    root = build_repo(tmp_path_factory.mktemp("dnf-mirror") / "repo")
    d1, d2 = (gateway(dnf_lab.hosts[n]) for n in ("d1", "d2"))
    with serve(root, d1) as m1, serve(root, d2) as m2:
        yield {"d1": m1, "d2": m2}


def repository(mirror: Mirror, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "package_repository",
        "name": REPO,
        "format": "dnf",
        "url": mirror.url,
        "key_url": mirror.url + "key.asc",  # dnf imports it at the first install (-y)
        **extra,
    }


def role(mirror: Mirror) -> list[dict[str, Any]]:
    return [
        repository(mirror),
        {"kind": "package", "name": PACKAGE, "after": [f"package_repository/{REPO}"]},
        {  # no systemd on the host: the init script the RPM ships
            "kind": "service",
            "name": PACKAGE,
            "state": "running",
            "enabled": True,
            "after": [f"package/{PACKAGE}"],
        },
    ]


def lab_file(lab: NsLab, host: NsHost, mirror: Mirror, mission_id: str, **settings: Any) -> LabFile:
    text = {
        "schema_version": 2,
        "mission_id": mission_id,
        "lab_type": "linux-converge-dnf",
        "policy": "standard",
        "settings": settings,
        "roles": {"rpm": role(mirror)},
        "hosts": [
            {"host_id": host.name, "os": "linux", "roles": ["rpm"], **ssh_settings(lab, host)}
        ],
    }
    return parse_lab(json.dumps(text))


async def test_a_dnf_role_converges_then_changes_nothing(
    dnf_lab: NsLab, dnf_mirrors: dict[str, Mirror], logs_dir: Path
) -> None:
    host, mirror = dnf_lab.hosts["d1"], dnf_mirrors["d1"]
    declared = len(role(mirror))

    # `reaper plan`: the facts say a RHEL-family host with dnf (apt-get is in the tree too:
    # the os-release decides), nothing is as declared yet, and the host stays byte-identical.
    before = tree_digest(host, lower=ROOTFS, skip=RPMDB_SHM)
    runners = default_runners(transport_options={"ssh": {"logs_dir": logs_dir}}, include={"ssh"})
    planned = await discover_lab(lab_file(dnf_lab, host, mirror, "dnf-plan"), runners=runners)
    facts = planned.hosts["d1"].facts
    assert (facts["os"]["id"], facts["package_manager"]) == ("rocky", "dnf"), facts["os"]
    actions = {e["resource"]: e["action"] for e in plan_report(progress(planned))["hosts"]["d1"]}
    assert len(actions) == declared and set(actions.values()) == {"add"}, actions
    assert tree_digest(host, lower=ROOTFS, skip=RPMDB_SHM) == before

    lab = lab_file(dnf_lab, host, mirror, "dnf-check", check_mode=True)
    state, events = await run_mission(lab, logs_dir, timeout_s=120.0)
    assert ensures(events, "changed") == []
    assert len(ensures(events, "would_change")) >= 1, [r.summary for r in results(events)]
    assert tree_digest(host, lower=ROOTFS, skip=RPMDB_SHM) == before

    state, events = await run_mission(
        lab_file(dnf_lab, host, mirror, "dnf-1"), logs_dir, timeout_s=300.0
    )
    failed = [(r.summary, r.stderr_tail) for r in results(events) if not r.ok]
    assert (state.status, state.goal_reached) == (MissionStatus.COMPLETED, True), failed
    assert len(ensures(events, "changed")) == declared
    assert in_host(host, "rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", PACKAGE) == VERSION
    # Signed, and checked: dnf imported the repository's key into rpm's keyring to install it.
    # (rpm keeps an EdDSA header signature in the tag DSA ones use)
    assert "EdDSA" in in_host(host, "rpm", "-q", "--qf", "%{DSAHEADER:pgpsig}", PACKAGE)
    assert in_host(host, "rpm", "-q", "gpg-pubkey").startswith("gpg-pubkey-")
    assert (host.root / DATA_FILE.lstrip("/")).read_text() == "hello from an rpm\n"
    assert f"baseurl={mirror.url}" in (host.root / f"etc/yum.repos.d/{REPO}.repo").read_text()
    # Installed by dnf into the rpm database, not by apt: dpkg has never heard of it.
    dpkg = subprocess.run(
        ["chroot", str(host.root), "dpkg-query", "-W", PACKAGE], capture_output=True, check=False
    )
    assert dpkg.returncode != 0
    last = [r for r in results(events) if r.action == "linux.discover"][-1]
    assert last.data["resources"][f"service/{PACKAGE}"] == {"state": "running", "enabled": True}
    assert (host.root / f"run/{PACKAGE}.pid").exists()

    state, events = await run_mission(
        lab_file(dnf_lab, host, mirror, "dnf-2"), logs_dir, timeout_s=120.0
    )
    assert (state.status, state.goal_reached) == (MissionStatus.COMPLETED, True)
    assert ensures(events) == [], [r.summary for r in results(events)]


async def test_dnf_failures_come_back_as_dnf_prints_them(
    dnf_lab: NsLab, dnf_mirrors: dict[str, Mirror], tmp_path: Path
) -> None:
    host, mirror = dnf_lab.hosts["d2"], dnf_mirrors["d2"]
    async with host_shell(dnf_lab, host, tmp_path) as shell:
        added = await _ensure(shell, host, "package_repository", repository(mirror))
        assert added.status is ResultStatus.SUCCESS, added.stderr_tail
        assert added.data["result"] == "changed"
        again = await _ensure(shell, host, "package_repository", repository(mirror))
        assert again.data["result"] == "unchanged"

        bogus = await _ensure(shell, host, "package", {"name": "reaper-no-such-package"})
        assert (bogus.status, bogus.error_code) == (ResultStatus.ERROR, "PACKAGE_NOT_FOUND")
        assert "No match for argument: reaper-no-such-package" in bogus.stderr_tail
        assert bogus.data == {"resource": "package/reaper-no-such-package", "before": None}

        # A repository whose address is unreachable inside the namespace (a route of type
        # unreachable: nothing leaves the host): the repository is refused, its file removed.
        blocked = gateway(host).rsplit(".", 1)[0] + ".9"
        subprocess.run(
            ["ip", "-n", host.ns, "route", "add", "unreachable", f"{blocked}/32"], check=True
        )
        dead_url = f"http://{blocked}/"
        dead = await _ensure(
            shell, host, "package_repository", repository(mirror, name="dead-rpms", url=dead_url)
        )
        assert dead.error_code == "REPO_UNREACHABLE", dead.stderr_tail
        assert "dead-rpms" in dead.stderr_tail and "Curl error" in dead.stderr_tail
        assert not (host.root / "etc/yum.repos.d/dead-rpms.repo").exists()
        # The same mirror left in a .repo file by hand: a package install fails on it.
        dead_repo = host.root / "etc/yum.repos.d/dead-rpms.repo"
        dead_repo.write_text(f"[dead-rpms]\nname=dead\nbaseurl={dead_url}\ngpgcheck=0\n")
        try:
            stuck = await _ensure(shell, host, "package", {"name": PACKAGE})
        finally:
            dead_repo.unlink()
        assert stuck.error_code == "REPO_UNREACHABLE", stuck.stderr_tail
        assert "Failed to download metadata for repo 'dead-rpms'" in stuck.stderr_tail

        # Another dnf holds the RPMDB lock: dnf's own lock code, in the host's PID namespace
        # (dnf checks the holder's pid under its /proc). Without exit_on_lock dnf would wait
        # for it ("Waiting for process with pid N to finish") until the action timed out.
        rpmdb_lock = [
            *("nsenter", "-t", sshd_pid(host), "-n", "-m", "-p", "-r", "-w", "python3", "-c"),
            "import sys, dnf.lock; lock = dnf.lock.build_rpmdb_lock('/var/lib/dnf', True); "
            "lock.__enter__(); print('locked', flush=True); sys.stdin.read()",
        ]
        locked = await install_while_held(shell, host, rpmdb_lock, PACKAGE)
        assert "RPMDB already locked by" in locked.stderr_tail

        ok = await _ensure(shell, host, "package", {"name": PACKAGE})
        assert ok.status is ResultStatus.SUCCESS, ok.stderr_tail
        assert ok.data["after"] == {"state": "present", "version": VERSION}
        again = await _ensure(shell, host, "package", {"name": PACKAGE})
        assert again.data["result"] == "unchanged"
        # A pinned version reads as rpm prints it (VERSION-RELEASE): the same, so unchanged.
        pinned = await _ensure(shell, host, "package", {"name": PACKAGE, "version": VERSION})
        assert pinned.data["result"] == "unchanged", pinned.summary
        gone = await _ensure(shell, host, "package", {"name": PACKAGE, "state": "absent"})
        assert gone.data["result"] == "changed", gone.stderr_tail
        assert not (host.root / DATA_FILE.lstrip("/")).exists()
        # And back, pinned: dnf is asked for NAME-VERSION-RELEASE.
        back = await _ensure(shell, host, "package", {"name": PACKAGE, "version": VERSION})
        assert back.data["result"] == "changed", back.stderr_tail
        assert back.data["after"] == {"state": "present", "version": VERSION}
