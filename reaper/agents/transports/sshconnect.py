"""Opening one verified paramiko connection, and mapping its failures to `TransportError`.

Blocking code: `SshTransport` runs it in its thread pool. Host keys are checked against
known_hosts with a reject policy; an unknown key is accepted (and saved) only when the host's
settings ask for it, and a changed key is always refused.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from reaper.errors import TransportError

__all__ = ["ConnectSpec", "map_exception", "open_client", "parse_jump"]

log = logging.getLogger(__name__)
_known_hosts_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class ConnectSpec:
    """Everything needed to connect, secrets resolved (never logged, never repr'd)."""

    host_id: str
    address: str
    port: int
    user: str
    key_file: str | None
    password: str | None
    use_agent: bool
    known_hosts: Path
    accept_new: bool
    timeout_s: float
    tcp_nodelay: bool = True

    def __repr__(self) -> str:  # the password must never reach a log or traceback
        return f"ConnectSpec({self.user}@{self.address}:{self.port})"


class _UnknownHostKey(paramiko.SSHException):
    pass


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise _UnknownHostKey(f"host key for {hostname} ({key.get_name()}) is not in known_hosts")


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Accept and save an unknown key. A *changed* key never gets here: paramiko raises
    BadHostKeyException before consulting the policy."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line() or ""
        with _known_hosts_lock:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self._path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        log.warning(
            "accepted new host key for %s (%s %s), saved to %s",
            hostname,
            key.get_name(),
            key.fingerprint,
            self._path,
        )


def parse_jump(spec: str, default_user: str) -> tuple[str, str, int]:
    """`user@host:port` (user and port optional) → (user, host, port)."""
    user, _, hostport = spec.rpartition("@")
    host, port = hostport, 22
    if hostport.startswith("["):  # [v6]:port
        host, _, rest = hostport[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 22
    elif hostport.count(":") == 1:
        host, _, p = hostport.partition(":")
        port = int(p)
    return user or default_user, host, port


def _tcp_socket(address: str, port: int, timeout: float, nodelay: bool) -> socket.socket:
    sock = socket.create_connection((address, port), timeout=timeout)
    if nodelay:
        # Nagle + delayed ACKs cost ~40 ms per small exec round trip (REFERENCES.md).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def open_client(spec: ConnectSpec, *, via: paramiko.SSHClient | None = None) -> paramiko.SSHClient:
    """Connect and authenticate, or raise TransportError. `via` is a connected jump host."""
    client = paramiko.SSHClient()
    started = time.monotonic()
    try:
        if spec.known_hosts.exists():
            client.load_host_keys(str(spec.known_hosts))
        policy: paramiko.MissingHostKeyPolicy = (
            _AcceptNew(spec.known_hosts) if spec.accept_new else _RejectUnknown()
        )
        client.set_missing_host_key_policy(policy)
        sock: socket.socket | paramiko.Channel
        if via is not None:
            jump = via.get_transport()
            if jump is None or not jump.is_active():
                raise TransportError(
                    f"{spec.host_id}: jump host connection is down",
                    error_code="CONNECTION_LOST",
                    retriable=True,
                )
            sock = jump.open_channel(
                "direct-tcpip", (spec.address, spec.port), ("127.0.0.1", 0), timeout=spec.timeout_s
            )
        else:
            sock = _tcp_socket(spec.address, spec.port, spec.timeout_s, spec.tcp_nodelay)
        client.connect(
            hostname=spec.address,
            port=spec.port,
            username=spec.user,
            password=spec.password,
            key_filename=spec.key_file,
            allow_agent=spec.use_agent,
            look_for_keys=False,
            sock=sock,
            timeout=spec.timeout_s,
            banner_timeout=spec.timeout_s,
            auth_timeout=spec.timeout_s,
        )
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
        return client
    except TransportError:
        client.close()
        raise
    except Exception as exc:
        # When the transport thread failed (e.g. a banner timeout), connect() only says
        # "No existing session": the real cause is the transport's saved exception.
        transport = client.get_transport()
        cause = getattr(transport, "saved_exception", None) or exc
        client.close()
        mapped = map_exception(cause, spec.host_id, f"{spec.address}:{spec.port}")
        if mapped.error_code == "CONNECTION_LOST" and time.monotonic() - started >= (
            0.9 * spec.timeout_s
        ):
            # The banner or key exchange never came within the timeout (paramiko only logs it).
            mapped = TransportError(
                f"{spec.host_id} ({spec.address}:{spec.port}): timed out waiting for the server",
                error_code="TIMEOUT",
                retriable=True,
            )
        raise mapped from exc


def map_exception(  # noqa: C901  (a flat classification table; splitting it hides the order)
    exc: BaseException, host_id: str, where: str
) -> TransportError:
    """Classify a connect or channel failure. Retriable: the host may come back by itself."""

    def err(code: str, retriable: bool, what: str) -> TransportError:
        return TransportError(f"{host_id} ({where}): {what}", error_code=code, retriable=retriable)

    if isinstance(exc, paramiko.BadHostKeyException):
        return err(
            "HOST_KEY_MISMATCH",
            False,
            f"host key changed (got {exc.key.get_name()} {exc.key.fingerprint}, "
            "known_hosts has another): refusing to connect",
        )
    if isinstance(exc, _UnknownHostKey):
        return err("HOST_KEY_UNKNOWN", False, f"{exc}; add it or set accept_new_host_key")
    if isinstance(exc, paramiko.AuthenticationException):
        return err("AUTH_FAILED", False, f"authentication failed: {exc}")
    if isinstance(exc, socket.gaierror):
        return err("DNS_FAILURE", True, f"cannot resolve host: {exc}")
    if isinstance(exc, ConnectionRefusedError):
        return err("CONNECTION_REFUSED", True, "connection refused")
    if isinstance(exc, TimeoutError | socket.timeout) or (
        # paramiko wraps a banner read timeout in SSHException("Error reading SSH protocol banner")
        isinstance(exc, paramiko.SSHException) and isinstance(exc.__context__, TimeoutError)
    ):
        return err("TIMEOUT", True, "timed out")
    if isinstance(exc, paramiko.ChannelException):
        return err("CONNECTION_REFUSED", True, f"jump host could not open channel: {exc}")
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return err("AUTH_FAILED", False, f"cannot read key file: {exc.strerror}")
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return err("UNREACHABLE", True, f"unreachable: {exc.strerror}")
    if isinstance(exc, paramiko.SSHException | EOFError | ConnectionError | OSError):
        # Banner read errors, resets and EOF mid-handshake: a flaky or restarting server.
        return err("CONNECTION_LOST", True, f"connection failed: {exc or type(exc).__name__}")
    if isinstance(exc, ValueError):
        return err("AUTH_FAILED", False, f"unusable credentials: {exc}")
    return err("TRANSPORT_ERROR", False, f"{type(exc).__name__}: {exc}")
