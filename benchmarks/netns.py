"""Real OpenSSH hosts, each in its own network namespace, PID/UTS/mount namespace and chroot
(an overlay over a cached debootstrap rootfs, so a host's changes land in its own dir).

Used by the tests (tests/hosts/) and by `reaper bench ssh`; it imports nothing from Reaper.

    lab = NsLab.create(["h1", "h2"], workdir)   # needs root, ip, unshare, the rootfs cache
    NsLab.create(["d1"], workdir, rootfs=CACHE / "bookworm-dnf")   # another cached tree
    lab.hosts["h1"].addr, .root (the host's /), .known_hosts_line
    lab.stop_sshd(host); lab.start_sshd(host); lab.destroy()

Each host: a veth pair in 10.213.<n>.0/24 (host side .1, namespace side .2), its own ed25519
host key, user `reaper` (sudo without password, the lab's client key authorised, password
`reaper-pw`) and sshd run as PID 1 of its PID namespace: killing it ends the whole host.
Subnet numbers are allocated under a lock file from those no interface or namespace uses, so
several labs (in one process, or test runs side by side) never collide.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CACHE", "PASSWORD", "USER", "NsHost", "NsLab", "missing_requirements"]

CACHE = Path(os.environ.get("REAPER_ROOTFS_CACHE", "/var/cache/reaper-test-rootfs"))
ROOTFS = CACHE / "bookworm"
STAMP = CACHE / "bookworm.stamp"
SETUP = Path(__file__).resolve().parents[1] / ".ci" / "netns-setup"
PASSWORD = "reaper-pw"
USER = "reaper"
NET = "10.213"
_LOCK = Path("/run/reaper-netns.lock")


def _run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def missing_requirements(*, build: bool = True) -> str | None:
    """Why namespace hosts cannot be built here, or None. With `build`, a missing rootfs
    cache is built by .ci/netns-setup when debootstrap is there."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "unshare", "ssh-keygen", "chroot"):
        if shutil.which(tool) is None:
            return f"no {tool}"
    if not STAMP.exists():
        if shutil.which("debootstrap") is None:
            return "no debootstrap and no cached rootfs (run .ci/netns-setup as root)"
        if not build:
            return "no cached rootfs (run .ci/netns-setup as root)"
        done = subprocess.run([str(SETUP)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f".ci/netns-setup failed: {done.stderr.strip()[-300:]}"
    if not (ROOTFS / "usr" / "sbin" / "sshd").exists():
        return "cached rootfs has no sshd (run .ci/netns-setup)"
    return None


@dataclass
class NsHost:
    name: str
    index: int
    ns: str
    veth: str
    addr: str
    dir: Path
    proc: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)
    listening: threading.Event = field(default_factory=threading.Event)

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def host_key_pub(self) -> str:
        return (self.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split(" ")[1]

    @property
    def known_hosts_line(self) -> str:
        return f"{self.addr} ssh-ed25519 {self.host_key_pub}\n"


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    with _LOCK.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _used_subnets() -> set[int]:
    used: set[int] = set()
    addrs = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for word in addrs.split():
        if word.startswith(NET + "."):
            with contextlib.suppress(ValueError, IndexError):
                used.add(int(word.split(".")[2]))
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in names.splitlines():
        name = line.split(" ")[0]
        if name.startswith("reaper-n"):
            with contextlib.suppress(ValueError):
                used.add(int(name.removeprefix("reaper-n")))
    return used


class NsLab:
    def __init__(self, workdir: Path, rootfs: Path = ROOTFS) -> None:
        self.workdir = workdir
        self.rootfs = rootfs  # the cached tree each host's overlay lies over
        self.hosts: dict[str, NsHost] = {}
        self.client_key = workdir / "client_ed25519"
        self.known_hosts = workdir / "known_hosts"

    @classmethod
    def create(
        cls, names: list[str], workdir: Path, *, parallel: int = 8, rootfs: Path = ROOTFS
    ) -> NsLab:
        lab = cls(workdir, rootfs)
        workdir.mkdir(parents=True, exist_ok=True)
        _run(
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "reaper-test",
            "-f",
            str(lab.client_key),
        )
        try:
            with _allocation_lock():
                free = [n for n in range(1, 255) if n not in _used_subnets()]
                if len(free) < len(names):
                    raise RuntimeError(f"only {len(free)} free {NET}.x subnets")
                for name, n in zip(names, free, strict=False):
                    lab.hosts[name] = lab._network(name, n)
            # Building rootfs overlays and starting sshd is independent per host.
            with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
                list(pool.map(lab._build, lab.hosts.values()))
                list(pool.map(lab.start_sshd, lab.hosts.values()))
            lab.known_hosts.write_text("".join(h.known_hosts_line for h in lab.hosts.values()))
        except BaseException:
            lab.destroy()
            raise
        return lab

    def _network(self, name: str, n: int) -> NsHost:
        host = NsHost(
            name=name,
            index=n,
            ns=f"reaper-n{n}",
            veth=f"rvn{n}",
            addr=f"{NET}.{n}.2",
            dir=self.workdir / name,
        )
        _run("ip", "netns", "add", host.ns)
        _run(
            "ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns
        )
        _run("ip", "addr", "add", f"{NET}.{n}.1/24", "dev", host.veth)
        _run("ip", "link", "set", host.veth, "up")
        _run("ip", "-n", host.ns, "addr", "add", f"{host.addr}/24", "dev", "eth0")
        _run("ip", "-n", host.ns, "link", "set", "eth0", "up")
        _run("ip", "-n", host.ns, "link", "set", "lo", "up")
        return host

    def _build(self, host: NsHost) -> None:
        for sub in ("upper", "work", "root"):
            (host.dir / sub).mkdir(parents=True)
        _run(
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={self.rootfs},upperdir={host.dir}/upper,workdir={host.dir}/work",
            str(host.root),
        )
        root = str(host.root)
        _run(
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            f"{root}/etc/ssh/ssh_host_ed25519_key",
        )
        (host.root / "etc/hostname").write_text(f"{host.name}\n")
        # As Debian's installer does: sudo resolves the host's own name, and with no entry it
        # asks the resolver, which from a namespace waits 5 s per lookup for no answer.
        with (host.root / "etc/hosts").open("a") as hosts:
            hosts.write(f"127.0.1.1\t{host.name}\n")
        _run("chroot", root, "useradd", "-m", "-s", "/bin/bash", USER)
        _run("chroot", root, "chpasswd", stdin=f"{USER}:{PASSWORD}\n")
        ssh_dir = host.root / "home" / USER / ".ssh"
        ssh_dir.mkdir(mode=0o700)
        (ssh_dir / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        _run("chroot", root, "chown", "-R", f"{USER}:{USER}", f"/home/{USER}/.ssh")
        sudoers = host.root / "etc/sudoers.d/reaper"
        sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD: ALL\n")
        sudoers.chmod(0o440)
        (host.root / "run/sshd").mkdir(exist_ok=True)

    def start_sshd(self, host: NsHost, timeout: float = 10.0) -> None:
        host.listening.clear()
        host.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host.ns,
                "unshare",
                "--mount",
                "--pid",
                "--uts",
                "--fork",
                "--kill-child",
                f"--mount-proc={host.root}/proc",
                "chroot",
                str(host.root),
                "sh",
                "-c",
                'hostname "$(cat /etc/hostname)"; exec /usr/sbin/sshd -D -e',
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read_log, args=(host, host.proc), daemon=True).start()
        # sshd says when it listens (-e logs to stderr): wait for that line, not a sleep.
        if not host.listening.wait(timeout):
            raise RuntimeError(f"sshd on {host.name} did not start: {host.log[-5:]}")

    @staticmethod
    def _read_log(host: NsHost, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            host.log.append(line.rstrip("\n"))
            if "Server listening on 0.0.0.0" in line:
                host.listening.set()

    def stop_sshd(self, host: NsHost) -> None:
        pids = subprocess.run(
            ["ip", "netns", "pids", host.ns], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        if host.proc is not None:
            host.proc.kill()
            host.proc.wait(timeout=10)
            host.proc = None

    def destroy(self) -> None:
        for host in self.hosts.values():
            self.stop_sshd(host)
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", host.veth], capture_output=True, check=False)
            subprocess.run(["umount", "-l", str(host.root)], capture_output=True, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
