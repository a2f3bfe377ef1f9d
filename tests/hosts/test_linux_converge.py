"""Desired state on real Linux hosts: a role converges end to end on a namespace host (the
engine, the rule converger, SSH, `linux.ensure_*`), with a real Debian package from a signed
local mirror inside the test network; a second run changes nothing; a drift made by hand is
the only thing fixed; check mode leaves the host byte-identical; and the failures real tools
print (an unknown package, a held dpkg lock, a bad sshd option, an unreachable mirror) come
back with their failure class and the tool's own text."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from reaper.agents.oscode.linux import ACTIONS
from reaper.agents.runners import default_runners
from reaper.agents.transports.ssh import SshTransport
from reaper.bench.role import INIT_SCRIPT, PACKAGE
from reaper.cli.plan import discover_lab, plan_report
from reaper.desired.progress import progress
from reaper.lab import LabFile, parse_lab
from reaper.models import MissionStatus, ResultStatus
from tests.hosts.aptmirror import Mirror, build_repo, fetch, missing_tools, serve
from tests.hosts.conftest import ssh_conn, ssh_settings
from tests.hosts.netns import NsHost, NsLab
from tests.hosts.test_mission_ssh import results, run_mission
from tests.needs import require_service

pytestmark = [pytest.mark.services, pytest.mark.slow]

# nftables and the libraries of it the rootfs lacks (the firewall kind needs `nft`).
NFTABLES = ["nftables", "libnftables1", "libnftnl11", "libjansson4"]
# What a run may touch outside the declared resources: logs, runtime state, sudo's and
# apt's caches, the SSH login's own traces.
EXCLUDED = ("proc", "run", "tmp", "var/log", "var/tmp", "var/cache", "var/lib/sudo", "dev")


def gateway(host: NsHost) -> str:
    """The host side of the namespace's veth: the only address a test host reaches."""
    return host.addr.rsplit(".", 1)[0] + ".1"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    why = missing_tools()
    require_service("a local apt mirror", why is None, why or "")
    try:
        debs = fetch([PACKAGE, *NFTABLES])
    except RuntimeError as exc:
        require_service("apt-get download (the machine's own mirror)", False, str(exc))
    root = tmp_path_factory.mktemp("mirror") / "repo"
    return root, build_repo(debs, root)


@pytest.fixture(scope="module")
def mirrors(converge_lab: NsLab, repo: tuple[Path, Path]) -> Iterator[dict[str, Mirror]]:
    root, _ = repo
    c1, c2 = (gateway(converge_lab.hosts[n]) for n in ("c1", "c2"))
    with serve(root, c1) as m1, serve(root, c2) as m2:
        for host in converge_lab.hosts.values():
            # Air-gapped: the rootfs's own source (deb.debian.org) is unreachable here.
            (host.root / "etc/apt/sources.list").write_text("")
        yield {"c1": m1, "c2": m2}


def repository(mirror: Mirror, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "package_repository",
        "name": "reaper-mirror",
        "format": "apt",
        "url": mirror.url,
        "suite": "./",
        "components": [],
        "key_url": mirror.url + "key.asc",
        **extra,
    }


def role(mirror: Mirror, host: NsHost) -> list[dict[str, Any]]:
    return [
        repository(mirror),
        {"kind": "package", "name": PACKAGE, "after": ["package_repository/reaper-mirror"]},
        {"kind": "group", "name": "deployers"},
        {
            "kind": "user",
            "name": "deploy",
            "groups": ["deployers"],
            "shell": "/bin/bash",
            "after": ["group/deployers"],
        },
        {
            "kind": "file",
            "path": "/etc/reaper-motd",
            "content": "converged by reaper\n",
            "mode": "0640",
            "owner": "deploy",
            "group": "deployers",
            "after": ["user/deploy"],
            "notify": ["reaper-demo"],  # restarted when the file changes, if it runs
        },
        {"kind": "directory", "path": "/srv/app", "mode": "0750"},
        {"kind": "file", "path": "/etc/init.d/reaper-demo", "content": INIT_SCRIPT, "mode": "0755"},
        {
            "kind": "service",
            "name": "reaper-demo",
            "state": "running",
            "enabled": True,
            "after": ["file//etc/init.d/reaper-demo"],
        },
        {"kind": "sshd_option", "name": "MaxAuthTries", "value": "4"},
        {"kind": "sshd_option", "name": "X11Forwarding", "value": "no"},
        {"kind": "setting", "name": "net.ipv4.ip_forward", "value": "1"},  # per netns
        {"kind": "package", "name": "nftables", "after": ["package_repository/reaper-mirror"]},
        {"kind": "firewall", "name": "web", "port": 8080, "after": ["package/nftables"]},
        {"kind": "dns_client", "servers": [gateway(host)], "search": ["lab.test"]},
    ]


def converge_lab_file(
    lab: NsLab, host: NsHost, mirror: Mirror, mission_id: str, **settings: Any
) -> LabFile:
    text = {
        "schema_version": 2,
        "mission_id": mission_id,
        "lab_type": "linux-converge",
        "policy": "standard",
        "settings": settings,
        "roles": {"web": role(mirror, host)},
        "hosts": [
            {"host_id": host.name, "os": "linux", "roles": ["web"], **ssh_settings(lab, host)}
        ],
    }
    return parse_lab(json.dumps(text))


def _entry(path: str) -> bytes | None:
    """A path's type, mode, owner and content (None: no such path)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    out = f"{st.st_mode} {st.st_uid} {st.st_gid}\n".encode()
    if os.path.islink(path):
        return out + os.readlink(path).encode()
    if os.path.isfile(path):
        return out + Path(path).read_bytes()
    return out


def tree_digest(host: NsHost, *, lower: Path | None = None, skip: tuple[str, ...] = ()) -> str:
    """Every path a run could change, with its type, mode, owner and content. The host is an
    overlay over the shared rootfs, which nothing writes: its upper dir is all that changed.
    With `lower` (that rootfs), a path copied up unchanged (a file only opened for writing, as
    SQLite opens its log) is no change. `skip`: paths left out, for a reason the caller gives."""
    upper = host.dir / "upper"
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(upper):
        rel = os.path.relpath(dirpath, upper)
        dirnames[:] = sorted(
            d for d in dirnames if os.path.normpath(os.path.join(rel, d)) not in EXCLUDED
        )
        for name in sorted(filenames) + dirnames:
            relpath = os.path.normpath(os.path.join(rel, name))
            entry = _entry(os.path.join(dirpath, name))
            if relpath in skip or (lower is not None and entry == _entry(str(lower / relpath))):
                continue
            digest.update(relpath.encode() + b"\0" + (entry or b""))
    return digest.hexdigest()


def ensures(events: Any, result: str | None = None) -> list[str]:
    return sorted(
        str(r.data.get("resource"))
        for r in results(events)
        if r.action.startswith("linux.ensure_")
        and (result is None or r.data.get("result") == result)
    )


def in_host(host: NsHost, *argv: str) -> str:
    """Run a command inside the host (its namespace and root), as root."""
    done = subprocess.run(
        ["ip", "netns", "exec", host.ns, "chroot", str(host.root), *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def sshd_pid(host: NsHost) -> str:
    """The host's sshd (PID 1 of its PID namespace), as the machine numbers it."""
    return next(
        pid
        for pid in subprocess.run(
            ["ip", "netns", "pids", host.ns], capture_output=True, text=True, check=True
        ).stdout.split()
        if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"
    )


@contextmanager
def held(argv: list[str]) -> Iterator[None]:
    """A lock held by `argv` while the block runs: it prints `locked` once it holds it and
    lets go when its stdin closes (no sleep to wait for either)."""
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


async def install_while_held(shell: Any, host: NsHost, holder: list[str], package: str) -> Any:
    """`package`'s install while `holder` (see `held`) holds the package manager's lock: it
    fails at once as PM_LOCKED, a retriable class; the outcome is returned for its text."""
    with held(holder):
        locked = await _ensure(shell, host, "package", {"name": package})
    assert (locked.error_code, locked.retriable) == ("PM_LOCKED", True), locked.stderr_tail
    return locked


async def test_a_role_converges_then_changes_nothing_then_fixes_only_drift(
    converge_lab: NsLab, mirrors: dict[str, Mirror], logs_dir: Path
) -> None:
    host, mirror = converge_lab.hosts["c1"], mirrors["c1"]
    declared = len(role(mirror, host))

    # `reaper plan` on the fresh host: every resource is read, none is as declared yet, and
    # the host stays byte-identical.
    before = tree_digest(host)
    runners = default_runners(transport_options={"ssh": {"logs_dir": logs_dir}}, include={"ssh"})
    planned = await discover_lab(
        converge_lab_file(converge_lab, host, mirror, "conv-plan"), runners=runners
    )
    report = plan_report(progress(planned))
    actions = {e["resource"]: e["action"] for e in report["hosts"]["c1"]}
    assert len(actions) == declared and set(actions.values()) <= {"add", "change"}, actions
    assert actions["sshd_option/MaxAuthTries"] == "change"  # sshd's default, 6, was read
    assert tree_digest(host) == before

    # --check: every resource would change, and still the host stays byte-identical.
    lab = converge_lab_file(converge_lab, host, mirror, "conv-check", check_mode=True)
    state, events = await run_mission(lab, logs_dir, timeout_s=120.0)
    assert ensures(events, "changed") == []
    assert len(ensures(events, "would_change")) >= 1, [r.summary for r in results(events)]
    assert tree_digest(host) == before

    # The real run converges every resource.
    state, events = await run_mission(
        converge_lab_file(converge_lab, host, mirror, "conv-1"), logs_dir, timeout_s=300.0
    )
    failed = [r.summary for r in results(events) if not r.ok]
    assert (state.status, state.goal_reached) == (MissionStatus.COMPLETED, True), failed
    assert len(ensures(events, "changed")) == declared
    root = host.root
    assert (root / "usr/bin/tree").exists()
    assert "tree v2" in in_host(host, "tree", "--version")
    assert (root / "etc/reaper-motd").read_text() == "converged by reaper\n"
    assert "deploy:" in (root / "etc/passwd").read_text()
    assert "deployers" in in_host(host, "id", "-Gn", "deploy")
    assert in_host(host, "stat", "-c", "%a %U %G", "/etc/reaper-motd").split() == [
        "640",
        "deploy",
        "deployers",
    ]
    assert "maxauthtries 4" in in_host(host, "sshd", "-T")
    live = subprocess.run(
        ["ip", "netns", "exec", host.ns, "cat", "/proc/sys/net/ipv4/ip_forward"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert live.stdout.strip() == "1"  # net.* sysctls are per network namespace
    assert "net.ipv4.ip_forward = 1" in (root / "etc/sysctl.d/99-reaper.conf").read_text()
    assert "nameserver " + gateway(host) in (root / "etc/resolv.conf").read_text()
    rules = subprocess.run(
        ["ip", "netns", "exec", host.ns, "chroot", str(root), "nft", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'tcp dport 8080 accept comment "reaper:web"' in rules
    # Its pid lives in the host's own PID namespace: ask the mission's last read-back.
    last = [r for r in results(events) if r.action == "linux.discover"][-1]
    assert last.data["resources"]["service/reaper-demo"] == {"state": "running", "enabled": True}
    assert (root / "run/reaper-demo.pid").exists()
    assert list((root / "etc/rc2.d").glob("S*reaper-demo"))  # enabled: update-rc.d links

    # A second run changes nothing: discover only.
    state, events = await run_mission(
        converge_lab_file(converge_lab, host, mirror, "conv-2"), logs_dir, timeout_s=120.0
    )
    assert (state.status, state.goal_reached) == (MissionStatus.COMPLETED, True)
    assert ensures(events) == [], [r.summary for r in results(events)]

    # A drift made by hand (the file edited, the user removed) is all that is fixed.
    demo_pid = (root / "run/reaper-demo.pid").read_text()
    (root / "etc/reaper-motd").write_text("edited by hand\n")
    in_host(host, "userdel", "deploy")
    state, events = await run_mission(
        converge_lab_file(converge_lab, host, mirror, "conv-3"), logs_dir, timeout_s=120.0
    )
    assert (state.status, state.goal_reached) == (MissionStatus.COMPLETED, True)
    assert ensures(events, "changed") == ["file//etc/reaper-motd", "user/deploy"]
    assert ensures(events) == ensures(events, "changed")
    assert (root / "etc/reaper-motd").read_text() == "converged by reaper\n"
    assert (root / "run/reaper-demo.pid").read_text() != demo_pid  # notify restarted it
    # sshd still answers after its reloads: this mission logged in again.
    assert state.hosts["c1"].facts["sshd"]["maxauthtries"] == "4"


@asynccontextmanager
async def host_shell(lab: NsLab, host: NsHost, logs_dir: Path) -> AsyncIterator[Any]:
    """An SSH session on `host`, closed after the block."""
    transport = SshTransport(logs_dir=logs_dir)
    try:
        yield await transport.session(host.name, ssh_conn(lab, host))
    finally:
        await transport.close()


async def _ensure(shell: Any, host: NsHost, kind: str, resource: dict[str, Any]) -> Any:
    params = {"resource": {"kind": kind, **resource}}
    return await ACTIONS.run(f"ensure_{kind}", params, shell, host_id=host.name)


async def test_failures_come_back_as_the_tools_print_them(
    converge_lab: NsLab, mirrors: dict[str, Mirror], tmp_path: Path
) -> None:
    host, mirror = converge_lab.hosts["c2"], mirrors["c2"]
    transport = SshTransport(logs_dir=tmp_path)
    try:
        shell = await transport.session(host.name, ssh_conn(converge_lab, host))
        added = await _ensure(shell, host, "package_repository", repository(mirror))
        assert added.status is ResultStatus.SUCCESS, added.stderr_tail
        assert added.data["result"] == "changed"

        bogus = await _ensure(shell, host, "package", {"name": "reaper-no-such-package"})
        assert (bogus.status, bogus.error_code) == (ResultStatus.ERROR, "PACKAGE_NOT_FOUND")
        assert "Unable to locate package reaper-no-such-package" in bogus.stderr_tail
        assert bogus.data == {"resource": "package/reaper-no-such-package", "before": None}

        # Another process holds dpkg's frontend lock (an fcntl lock, as apt takes it).
        dpkg_lock = [
            *("ip", "netns", "exec", host.ns, "chroot", str(host.root), "python3", "-c"),
            "import fcntl, sys; f = open('/var/lib/dpkg/lock-frontend', 'w'); "
            "fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
        ]
        locked = await install_while_held(shell, host, dpkg_lock, PACKAGE)
        assert "Could not get lock /var/lib/dpkg/lock-frontend" in locked.stderr_tail

        bad = await _ensure(shell, host, "sshd_option", {"name": "NoSuchOption", "value": "1"})
        assert bad.error_code == "CONFIG_INVALID", bad.stderr_tail
        assert "Bad configuration option" in bad.stderr_tail
        assert not (host.root / "etc/ssh/sshd_config.d/00-reaper.conf").exists()

        closed = f"http://{gateway(host)}:9/"  # discard: nothing listens there
        dead = await _ensure(
            shell,
            host,
            "package_repository",
            repository(mirror, name="dead-mirror", url=closed),
        )
        assert dead.error_code == "REPO_UNREACHABLE", dead.stderr_tail
        assert "Failed to fetch" in dead.stderr_tail or "connect" in dead.stderr_tail.lower()
        assert not (host.root / "etc/apt/sources.list.d/dead-mirror.list").exists()

        # c2 has no nftables: the firewall says it is unavailable, plainly.
        wall = await _ensure(shell, host, "firewall", {"port": 8080})
        assert wall.error_code == "UNSUPPORTED" and "no nft" in wall.stderr_tail

        # A full filesystem (a 64 KiB tmpfs mounted in the host's own mount namespace).
        full = host.root / "srv/full"
        full.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "nsenter",
                "-t",
                sshd_pid(host),
                "-m",
                "mount",
                "-t",
                "tmpfs",
                "-o",
                "size=64k",
                "tmpfs",
                str(full),
            ],
            check=True,
        )
        try:
            big = {"path": "/srv/full/big", "content": "x" * 200_000}
            disk = await _ensure(shell, host, "file", big)
        finally:
            subprocess.run(["nsenter", "-t", sshd_pid(host), "-m", "umount", str(full)], check=True)
        assert disk.error_code == "DISK_FULL", disk.stderr_tail
        assert "No space left on device" in disk.stderr_tail

        # The package installs once the lock is free, and then is unchanged.
        ok = await _ensure(shell, host, "package", {"name": PACKAGE})
        assert ok.status is ResultStatus.SUCCESS, ok.stderr_tail
        again = await _ensure(shell, host, "package", {"name": PACKAGE})
        assert again.data["result"] == "unchanged"
    finally:
        await transport.close()


async def test_accounts_and_paths_are_removed_locked_and_checked_without_changes(
    converge_lab: NsLab, tmp_path: Path
) -> None:
    host = converge_lab.hosts["c2"]
    transport = SshTransport(logs_dir=tmp_path)
    try:
        shell = await transport.session(host.name, ssh_conn(converge_lab, host))

        async def result(kind: str, spec: dict[str, Any], check: bool = False) -> str:
            params = {"resource": {"kind": kind, **spec}, "check_mode": check}
            out = await ACTIONS.run(f"ensure_{kind}", params, shell, host_id=host.name)
            assert out.status is ResultStatus.SUCCESS, (out.summary, out.stderr_tail)
            return str(out.data["result"])

        locked = {"name": "tmpusr", "groups": ["tmpgrp"], "enabled": False}
        assert await result("group", {"name": "tmpgrp", "gid": 2345}) == "changed"
        assert await result("user", locked) == "changed"
        assert await result("user", locked) == "unchanged"
        assert in_host(host, "getent", "group", "tmpgrp").startswith("tmpgrp:x:2345:tmpusr")
        shadow = (host.root / "etc/shadow").read_text().splitlines()
        entry = next(ln for ln in shadow if ln.startswith("tmpusr:")).split(":")
        assert entry[1].startswith("!") and entry[7] == "1"  # locked and expired
        assert await result("user", {**locked, "enabled": True}) == "changed"
        assert await result("user", locked) == "changed"
        assert await result("user", {"name": "tmpusr", "state": "absent"}) == "changed"
        assert await result("user", {"name": "tmpusr", "state": "absent"}) == "unchanged"
        assert await result("group", {"name": "tmpgrp", "state": "absent"}) == "changed"
        assert "tmpgrp:" not in (host.root / "etc/group").read_text()

        assert await result("directory", {"path": "/srv/gone/deep", "mode": "0700"}) == "changed"
        assert (host.root / "srv/gone/deep").is_dir()
        assert await result("directory", {"path": "/srv/gone", "state": "absent"}) == "changed"
        assert not (host.root / "srv/gone").exists()

        sysctl = {"name": "net.ipv4.conf.all.forwarding", "value": "1"}
        before = tree_digest(host)
        assert await result("setting", sysctl, check=True) == "would_change"
        assert await result("file", {"path": "/etc/checked", "content": "x\n"}, check=True) == (
            "would_change"
        )
        assert tree_digest(host) == before
    finally:
        await transport.close()


def _is_hash_of(password: str, hashed: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # Python 3.11's; the hash is the host's crypt(3) (yescrypt or SHA-512)

    return hashed.startswith("$") and crypt.crypt(password, hashed) == hashed


def _hash(host: NsHost, name: str) -> str:
    shadow = (host.root / "etc/shadow").read_text().splitlines()
    return next(ln for ln in shadow if ln.startswith(f"{name}:")).split(":")[1]


async def test_a_users_password_is_set_at_creation_and_with_always_on_every_run(
    converge_lab: NsLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = converge_lab.hosts["c2"]
    secret = "pa:ss w'ord; $(reboot)"
    monkeypatch.setenv("REAPER_TEST_PWUSER_PASSWORD", secret)
    transport = SshTransport(logs_dir=tmp_path)
    try:
        shell = await transport.session(host.name, ssh_conn(converge_lab, host))

        async def ensure(check: bool = False, **spec: Any) -> Any:
            resource = {"kind": "user", "name": "pwusr", **spec}
            params = {"resource": resource, "check_mode": check}
            out = await ACTIONS.run("ensure_user", params, shell, host_id=host.name)
            assert out.status is ResultStatus.SUCCESS, (out.summary, out.stderr_tail)
            assert secret not in out.summary + out.stdout_tail + out.stderr_tail
            return out.data["result"]

        pw = {"password_env": "REAPER_TEST_PWUSER_PASSWORD"}
        assert await ensure(**pw) == "changed"
        created = _hash(host, "pwusr")
        assert _is_hash_of(secret, created) and not _is_hash_of(secret[:-1], created)
        assert await ensure(**pw) == "unchanged" and _hash(host, "pwusr") == created
        always = {**pw, "update_password": "always"}
        assert await ensure(check=True, **always) == "would_change"
        assert _hash(host, "pwusr") == created  # check mode set nothing
        assert await ensure(**always) == "changed"
        again = _hash(host, "pwusr")
        assert _is_hash_of(secret, again) and again != created  # set again (a new salt)
        # Locked: the password set on every run does not lift the lock.
        assert await ensure(enabled=False, **always) == "changed"
        assert _hash(host, "pwusr").startswith("!$")
        logs = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
        assert secret not in logs
        assert await ensure(state="absent") == "changed"
    finally:
        await transport.close()
