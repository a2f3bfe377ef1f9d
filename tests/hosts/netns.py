"""Real OpenSSH test hosts, each in its own network namespace, PID/UTS/mount namespace and
chroot (an overlay over a cached debootstrap rootfs, so a host's changes land in its own dir).

    lab = NsLab.create(["h1", "h2"], workdir)   # needs root, ip, unshare, the rootfs cache
    lab.hosts["h1"].addr, .root (the host's /), .known_hosts_line
    lab.stop_sshd(host); lab.start_sshd(host); lab.destroy()

Each host: a veth pair in 10.213.<n>.0/24 (host side .1, namespace side .2), its own ed25519
host key, user `reaper` (sudo without password, the lab's client key authorised, password
`reaper-pw`) and sshd run as PID 1 of its PID namespace: killing it ends the whole host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CACHE", "PASSWORD", "NsHost", "NsLab", "missing_requirements"]

CACHE = Path(os.environ.get("REAPER_ROOTFS_CACHE", "/var/cache/reaper-test-rootfs"))
ROOTFS = CACHE / "bookworm"
STAMP = CACHE / "bookworm.stamp"
SETUP = Path(__file__).resolve().parents[2] / ".ci" / "netns-setup"
PASSWORD = "reaper-pw"
USER = "reaper"


def _run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def missing_requirements() -> str | None:
    """Why namespace hosts cannot be built here, or None (builds the rootfs cache if needed)."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "unshare", "ssh-keygen", "chroot"):
        if shutil.which(tool) is None:
            return f"no {tool}"
    if not STAMP.exists():
        if shutil.which("debootstrap") is None:
            return "no debootstrap and no cached rootfs (run .ci/netns-setup)"
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


class NsLab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.hosts: dict[str, NsHost] = {}
        self.client_key = workdir / "client_ed25519"
        self.known_hosts = workdir / "known_hosts"

    @classmethod
    def create(cls, names: list[str], workdir: Path) -> NsLab:
        lab = cls(workdir)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "reaper-test",
             "-f", str(lab.client_key))
        # Distinct subnets per test process, so two runs on one machine do not collide.
        base = (os.getpid() % 40) * 6 + 1
        try:
            for i, name in enumerate(names):
                lab.hosts[name] = lab._build(name, base + i)
            for host in lab.hosts.values():
                lab.start_sshd(host)
            lab.known_hosts.write_text("".join(h.known_hosts_line for h in lab.hosts.values()))
        except BaseException:
            lab.destroy()
            raise
        return lab

    def _build(self, name: str, n: int) -> NsHost:
        tag = f"{os.getpid() % 100000}-{n}"
        host = NsHost(name=name, index=n, ns=f"reaper-t{tag}", veth=f"rv{tag}"[:15],
                      addr=f"10.213.{n}.2", dir=self.workdir / name)
        for sub in ("upper", "work", "root"):
            (host.dir / sub).mkdir(parents=True)
        _run("mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={ROOTFS},upperdir={host.dir}/upper,workdir={host.dir}/work", str(host.root))
        root = str(host.root)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
             f"{root}/etc/ssh/ssh_host_ed25519_key")
        (host.root / "etc/hostname").write_text(f"{name}\n")
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
        _run("ip", "netns", "add", host.ns)
        _run("ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
             "netns", host.ns)
        _run("ip", "addr", "add", f"10.213.{n}.1/24", "dev", host.veth)
        _run("ip", "link", "set", host.veth, "up")
        _run("ip", "-n", host.ns, "addr", "add", f"{host.addr}/24", "dev", "eth0")
        _run("ip", "-n", host.ns, "link", "set", "eth0", "up")
        _run("ip", "-n", host.ns, "link", "set", "lo", "up")
        return host

    def start_sshd(self, host: NsHost, timeout: float = 10.0) -> None:
        host.listening.clear()
        host.proc = subprocess.Popen(
            ["ip", "netns", "exec", host.ns, "unshare", "--mount", "--pid", "--uts", "--fork",
             "--kill-child", f"--mount-proc={host.root}/proc", "chroot", str(host.root),
             "sh", "-c", 'hostname "$(cat /etc/hostname)"; exec /usr/sbin/sshd -D -e'],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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
        pids = subprocess.run(["ip", "netns", "pids", host.ns], capture_output=True,
                              text=True, check=False).stdout.split()
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
