"""A dnf repository served inside the test network, with a real RPM built on the machine.

The RPM (`reaper-hello`: a data file and a SysV init script) is built by `rpmbuild` from a
spec written here, signed by `rpmsign` with a throwaway key, indexed by `createrepo_c`, and
served over HTTP on a namespace host's gateway address by `aptmirror.serve`, as the apt
mirror is. The hosts that install it run the RHEL-like rootfs `.ci/dnf-setup` caches:
Debian's dnf and rpm under a Rocky os-release.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from benchmarks import netns

__all__ = ["INIT_SCRIPT", "PACKAGE", "ROOTFS", "build_repo", "missing_requirements"]

ROOTFS = netns.ROOTFS.with_name("bookworm-dnf")
STAMP = ROOTFS.with_name(ROOTFS.name + ".stamp")
SETUP = netns.SETUP.with_name("dnf-setup")
PACKAGE = "reaper-hello"
VERSION = "1.0-1"
DATA_FILE = "/usr/share/reaper-hello/hello.txt"
# No start-stop-daemon (Debian's): a RHEL host has none. `# chkconfig:` is read by chkconfig,
# the LSB block by update-rc.d; the rpm has no scriptlet, since its database knows no /bin/sh.
INIT_SCRIPT = """#!/bin/sh
# chkconfig: 345 90 10
# description: a daemon that only sleeps
### BEGIN INIT INFO
# Provides:          reaper-hello
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: a daemon that only sleeps
### END INIT INFO
PIDFILE=/run/reaper-hello.pid
running() { [ -f $PIDFILE ] && kill -0 "$(cat $PIDFILE)" 2>/dev/null; }
case "$1" in
  start) running && exit 0; setsid sleep infinity </dev/null >/dev/null 2>&1 &
         echo $! >$PIDFILE ;;
  stop) if running; then kill "$(cat $PIDFILE)"; fi; rm -f $PIDFILE ;;
  status) running ;;
  restart) "$0" stop; "$0" start ;;
  *) echo "Usage: $0 {start|stop|status|restart}" >&2; exit 3 ;;
esac
"""
_SPEC = f"""Name: {PACKAGE}
Version: {VERSION.split("-")[0]}
Release: {VERSION.split("-")[1]}
Summary: a file and an init script, for Reaper's dnf tests
License: MIT
BuildArch: noarch
AutoReqProv: no
%description
Ships {DATA_FILE} and /etc/init.d/{PACKAGE}.
%install
mkdir -p %{{buildroot}}{Path(DATA_FILE).parent} %{{buildroot}}/etc/init.d
echo "hello from an rpm" >%{{buildroot}}{DATA_FILE}
cp %{{_sourcedir}}/{PACKAGE}.init %{{buildroot}}/etc/init.d/{PACKAGE}
%files
{DATA_FILE}
%attr(0755,root,root) /etc/init.d/{PACKAGE}
"""


def missing_requirements() -> str | None:
    """Why the dnf hosts and their repository cannot be had here, or None. A missing rootfs
    is built by .ci/dnf-setup (after the bookworm one, which `netns` checks first)."""
    if not STAMP.exists():
        done = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f".ci/dnf-setup failed: {done.stderr.strip()[-300:]}"
    for tool in ("rpmbuild", "rpmsign", "createrepo_c", "gpg"):
        if shutil.which(tool) is None:
            return f"no {tool} (run .ci/dnf-setup as root)"
    if not (ROOTFS / "usr/bin/dnf").exists():
        return "cached dnf rootfs has no dnf (run .ci/dnf-setup)"
    return None


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, env=env, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()[-400:]}")
    return done.stdout


def _sign(rpms: list[Path], work: Path) -> str:
    """Sign `rpms` with a throwaway ed25519 key (rpm 4.18 reads EdDSA); its armoured public
    key, for the repository's gpgkey."""
    home = work / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    env = {"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"}
    gpg = shutil.which("gpg") or "gpg"  # rpm's default is gpg2, which Debian names gpg
    batch = [gpg, "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    _run([*batch, "--quick-gen-key", "reaper-rpm <rpm@reaper.test>", "ed25519", "sign", "never"],
         env=env)  # fmt: skip
    macros = ["--define", "_gpg_name reaper-rpm", "--define", f"_gpg_path {home}"]
    _run(["rpmsign", "--addsign", *macros, "--define", f"__gpg {gpg}", *map(str, rpms)], env=env)
    return _run([*batch, "--armor", "--export"], env=env)


def build_repo(root: Path) -> Path:
    """`reaper-hello`'s RPM, built and signed in `root`'s parent, in a repository at `root`
    (returned) whose `key.asc` is the signing key."""
    top = root.parent / "rpmbuild"
    sources = top / "SOURCES"
    sources.mkdir(parents=True, exist_ok=True)
    (sources / f"{PACKAGE}.init").write_text(INIT_SCRIPT)
    spec = top / f"{PACKAGE}.spec"
    spec.write_text(_SPEC)
    _run(["rpmbuild", "-bb", "--define", f"_topdir {top}", str(spec)])
    root.mkdir(parents=True, exist_ok=True)
    rpms = [Path(shutil.copy(rpm, root / rpm.name)) for rpm in (top / "RPMS").rglob("*.rpm")]
    (root / "key.asc").write_text(_sign(rpms, root.parent))
    _run(["createrepo_c", "--quiet", str(root)])
    return root
