"""A signed flat apt repository served inside the test network, as an air-gapped lab's mirror.

Real packages are fetched on the machine with `apt-get download` (with the dependencies the
test rootfs lacks) into a cache, indexed with `dpkg-scanpackages`, given a Release file signed
by a throwaway key (gpg), and served by a Python HTTP server bound on a namespace host's
gateway address (the host side of its veth): the test hosts reach it and nothing outside.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate
from pathlib import Path

__all__ = ["Mirror", "build_repo", "missing_tools", "serve"]

CACHE = Path("/var/cache/reaper-test-rootfs/debs")  # shared by the tests and `reaper bench ssh`


def missing_tools() -> str | None:
    for tool in ("apt-get", "dpkg-scanpackages", "gpg"):
        if shutil.which(tool) is None:
            return f"no {tool} (run .ci/netns-setup as root)"
    return None


def _run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()[-400:]}")
    return done.stdout


def fetch(packages: list[str]) -> list[Path]:
    """The .deb files of `packages`, downloaded once into the cache (None of their
    dependencies: the chosen packages need only what the rootfs has)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = []
    for name in packages:
        found = sorted(CACHE.glob(f"{name}_*.deb"))
        if not found:
            _run(["apt-get", "download", "-q", name], cwd=CACHE)
            found = sorted(CACHE.glob(f"{name}_*.deb"))
        out.append(found[-1])
    return out


def build_repo(debs: list[Path], root: Path) -> Path:
    """A flat repository (`deb [signed-by=key] URL ./`) in `root`; returns its key.asc."""
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        shutil.copy(deb, root / deb.name)
    packages = _run(["dpkg-scanpackages", "--multiversion", "."], cwd=root)
    (root / "Packages").write_text(packages)
    (root / "Packages.gz").write_bytes(gzip.compress(packages.encode()))
    lines = ["Origin: reaper-test", "Label: reaper-test", f"Date: {formatdate(usegmt=True)}"]
    lines.append("SHA256:")
    for name in ("Packages", "Packages.gz"):
        data = (root / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (root / "Release").write_text("\n".join(lines) + "\n")
    home = root.parent / "gnupg"
    home.mkdir(mode=0o700, exist_ok=True)
    env = {"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"}
    gpg = ["gpg", "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
    _run(
        [*gpg, "--quick-gen-key", "reaper-test <t@reaper.test>", "ed25519", "sign", "never"],
        env=env,
    )
    _run([*gpg, "--clearsign", "-o", str(root / "InRelease"), str(root / "Release")], env=env)
    key = root / "key.asc"
    key.write_text(_run([*gpg, "--armor", "--export"], env=env))
    return key


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


class Mirror:
    def __init__(self, server: http.server.ThreadingHTTPServer) -> None:
        self.server = server
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}/"


@contextmanager
def serve(root: Path, address: str) -> Iterator[Mirror]:
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Mirror(server)
    finally:
        server.shutdown()
        server.server_close()
