"""WinRM transport (pywinrm): PowerShell on Windows hosts over WS-Management.

Secure by default: HTTPS with the server certificate validated (against `winrm.ca_file` when
given, else the system bundle); over plain HTTP only an auth that encrypts the messages
(NTLM, Kerberos, CredSSP) is accepted, and Basic/unencrypted is refused unless the host says
`winrm.allow_unencrypted`. The password comes from the environment variable named by
`password_env` and is never logged. One remote shell per host is opened when the session is
made and reused for every command. A command's `stdin` (secrets, file content) is sent with one
WS-Management Send after the command starts, never on its command line. pywinrm is blocking:
its calls run in this transport's thread pool, one at a time per host, and its errors become
`TransportError`s here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from xml.etree.ElementTree import ParseError

import requests
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from winrm.exceptions import (
    AuthenticationError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from reaper.agents.base import Command, CommandResult
from reaper.agents.transports.powershell import (
    MAX_COMMAND_LINE,
    POWERSHELL_EXE,
    clean_clixml,
    encode_command,
    wrap_script,
)
from reaper.errors import TransportError
from reaper.models import HostConnection, WinRMSettings
from reaper.secrets import secret_lookup

__all__ = ["WinRMSession", "WinRMTransport", "classify_error", "protocol_options"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_ENCRYPTING_AUTHS = frozenset({"ntlm", "kerberos", "credssp"})
_PASSWORD_AUTHS = frozenset({"ntlm", "basic", "credssp"})
# WSMan faults meaning our shell is gone (idle timeout, host restarted the service).
_SHELL_GONE = frozenset({2150858843})
_MAX_OUTPUT = 32 * 1024 * 1024
# The errors pywinrm and requests raise; anything else is a bug and propagates as is.
_PYWINRM_ERRORS = (
    WinRMError,
    WinRMTransportError,
    WinRMOperationTimeoutError,
    requests.RequestException,
    OSError,
)


class _CommandTimeout(Exception):
    pass


class _ProtocolError(Exception):
    """A reply pywinrm could not make sense of (it asserts and calls next() on it)."""


@dataclass(frozen=True, slots=True)
class _Target:
    host_id: str
    conn: HostConnection
    options: dict[str, Any]
    secret: str | None


def _refuse(host_id: str, message: str, code: str) -> TransportError:
    return TransportError(f"{host_id}: {message}", error_code=code, retriable=False)


def protocol_options(
    host_id: str,
    conn: HostConnection,
    environ: Mapping[str, str],
    *,
    operation_timeout_s: int = 20,
) -> tuple[dict[str, Any], str | None]:
    """Keyword arguments for `winrm.protocol.Protocol` and the password; refuses unsafe setups."""
    w = conn.winrm or WinRMSettings()
    if not conn.address:
        raise _refuse(host_id, "no address to connect to", "CONFIG_INVALID")
    https = w.scheme == "https"
    encrypts = w.auth in _ENCRYPTING_AUTHS and w.message_encryption != "never"
    if w.auth == "certificate" and not https:
        raise _refuse(host_id, "certificate auth needs HTTPS", "INSECURE_TRANSPORT")
    if not https and not encrypts and not w.allow_unencrypted:
        raise _refuse(
            host_id,
            f"refusing WinRM over plain HTTP with {w.auth} auth and no message encryption: "
            "credentials and commands would cross the network in clear; use HTTPS, "
            "NTLM/Kerberos/CredSSP with message encryption, or set winrm.allow_unencrypted",
            "INSECURE_TRANSPORT",
        )
    if w.message_encryption == "always" and w.auth not in _ENCRYPTING_AUTHS:
        raise _refuse(
            host_id,
            f"{w.auth} auth cannot encrypt messages (message_encryption=always)",
            "CONFIG_INVALID",
        )
    password: str | None = None
    if w.auth in _PASSWORD_AUTHS:
        if not conn.user:
            raise _refuse(host_id, f"{w.auth} auth needs a user", "CREDENTIALS_MISSING")
        password = environ.get(conn.password_env) if conn.password_env else None
        if password is None:
            what = (
                f"variable {conn.password_env} is not set"
                if conn.password_env
                else ("no password_env given")
            )
            raise _refuse(host_id, f"no password: {what}", "CREDENTIALS_MISSING")
    if w.auth == "certificate" and not conn.key_file:
        raise _refuse(host_id, "certificate auth needs key_file (PEM)", "CREDENTIALS_MISSING")
    if https and not w.validate_certs:
        log.warning("winrm %s: server certificate validation is OFF", host_id)
    port = w.port or conn.port or (5986 if https else 5985)
    host = f"[{conn.address}]" if ":" in conn.address else conn.address
    options: dict[str, Any] = {
        "endpoint": f"{w.scheme}://{host}:{port}/{w.path.lstrip('/')}",
        "transport": w.auth,
        "username": conn.user,
        "password": password,
        "server_cert_validation": "validate" if w.validate_certs else "ignore",
        # An explicit bundle: never the REQUESTS_CA_BUNDLE the process happens to inherit.
        "ca_trust_path": w.ca_file or DEFAULT_CA_BUNDLE_PATH,
        "message_encryption": w.message_encryption,
        "operation_timeout_sec": operation_timeout_s,
        # requests uses one timeout for connect and read; a Receive may block for the whole
        # operation timeout before the server answers.
        "read_timeout_sec": operation_timeout_s + max(5, int(conn.connect_timeout_s)),
        "proxy": None,  # never an environment-defined proxy
    }
    if w.auth == "certificate":
        # The client certificate (`winrm.cert_file`) and its key (`key_file`); one PEM may
        # hold both, so the certificate defaults to the key file.
        options["cert_pem"] = w.cert_file or conn.key_file
        options["cert_key_pem"] = conn.key_file
    return options, password


def classify_error(exc: BaseException) -> tuple[str, bool, str]:
    """(error_code, retriable, short reason) for an exception pywinrm or requests raised."""
    if isinstance(exc, AuthenticationError):
        return "AUTH_FAILED", False, "credentials rejected"
    if isinstance(exc, requests.RequestException | OSError | _CommandTimeout):
        return _classify_network(exc)
    if isinstance(exc, WinRMOperationTimeoutError):
        return "TIMEOUT", True, "timed out"
    if isinstance(exc, WSManFaultError):
        return "WSMAN_FAULT", False, f"WS-Management fault: {exc.reason}"
    if isinstance(exc, WinRMTransportError):
        return "HTTP_ERROR", exc.code >= 500, f"HTTP {exc.code}"
    if isinstance(exc, _ProtocolError):
        return "PROTOCOL_ERROR", False, "malformed WS-Management reply"
    if isinstance(exc, WinRMError) and "not installed" in str(exc):
        return "AUTH_UNSUPPORTED", False, "auth method unavailable"
    return "WINRM_ERROR", False, "WinRM error"


def _classify_network(exc: BaseException) -> tuple[str, bool, str]:
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower():
            return "CERT_INVALID", False, "server certificate not trusted"
        if "EOF" in text:
            return "CONNECTION_RESET", True, "TLS connection closed"
        return "TLS_ERROR", False, "TLS handshake failed"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "CONNECT_TIMEOUT", True, "connect timed out"
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError | _CommandTimeout):
        return "TIMEOUT", True, "timed out"
    if any(s in text for s in ("Failed to resolve", "Name or service not known", "resolution")):
        return "DNS_FAILURE", True, "name does not resolve"
    if "refused" in text.lower():
        return "CONNECTION_REFUSED", True, "connection refused"
    return "CONNECTION_FAILED", True, "connection failed"


class WinRMSession:
    """One host's WinRM shell; commands run one at a time (pywinrm's HTTP session is not
    thread-safe, and a shell runs its commands in order anyway)."""

    def __init__(self, target: _Target, executor: ThreadPoolExecutor) -> None:
        self._target = target
        self._executor = executor
        self._protocol = Protocol(**target.options)
        self._shell_id: str | None = None
        self._lock = asyncio.Lock()
        self.broken = False

    @property
    def host_id(self) -> str:
        return self._target.host_id

    @property
    def conn(self) -> HostConnection:
        return self._target.conn

    async def open(self) -> None:
        async with self._lock:
            await self._call(self._ensure_shell)

    async def run(self, command: Command) -> CommandResult:
        if command.script is None:
            raise _refuse(self.host_id, "WinRM runs PowerShell scripts only", "UNSUPPORTED_COMMAND")
        stdin = command.stdin
        args = encode_command(wrap_script(command.script, command.params, stdin=stdin is not None))
        if sum(len(a) + 1 for a in args) + len(POWERSHELL_EXE) > MAX_COMMAND_LINE:
            raise _refuse(self.host_id, "script too long for one command line", "SCRIPT_TOO_LONG")
        async with self._lock:
            return await self._call(lambda: self._run_blocking(args, command.timeout_s, stdin))

    async def aclose(self) -> None:
        async with self._lock:
            if self._shell_id is None or self.broken:
                self.discard()
                return
            shell_id, self._shell_id = self._shell_id, None
            try:
                await self._call(lambda: self._protocol.close_shell(shell_id))
            except TransportError as exc:
                log.info("winrm %s: closing shell failed: %s", self.host_id, exc)
                self.discard()

    def discard(self) -> None:
        """Drop the HTTP connections without talking to the host (it is unreachable)."""
        self.broken = True
        self._protocol.transport.close_session()

    async def _call(self, fn: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._guarded, fn)
        except asyncio.CancelledError:
            # The thread runs on and still owns this HTTP session: never hand it out again.
            self.broken = True
            raise
        except (*_PYWINRM_ERRORS, _CommandTimeout, _ProtocolError) as exc:
            code, retriable, reason = classify_error(exc)
            if retriable:
                self.broken = True  # the next session() reconnects and opens a new shell
            message = self._scrub(f"{self.host_id}: WinRM {reason}: {exc}")
            raise TransportError(message, error_code=code, retriable=retriable) from exc

    @staticmethod
    def _guarded(fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except (StopIteration, AssertionError, ParseError, KeyError, ValueError) as exc:
            raise _ProtocolError(str(exc) or type(exc).__name__) from exc

    def _scrub(self, text: str) -> str:
        secret = self._target.secret
        return text.replace(secret, "***") if secret else text

    def _ensure_shell(self) -> str:
        if self._shell_id is None:
            # UTF-8 code page: our wrapper writes UTF-8 and we decode it as such.
            self._shell_id = self._protocol.open_shell(codepage=65001, noprofile=True)
            log.debug("winrm %s: shell opened", self.host_id)
        return self._shell_id

    def _start(self, args: list[str]) -> tuple[str, str]:
        shell_id = self._ensure_shell()
        try:
            cid = self._protocol.run_command(shell_id, POWERSHELL_EXE, args, skip_cmd_shell=True)
        except WSManFaultError as exc:
            if exc.wsman_fault_code not in _SHELL_GONE:
                raise
            log.info("winrm %s: shell gone, opening a new one", self.host_id)
            self._shell_id = None
            shell_id = self._ensure_shell()
            cid = self._protocol.run_command(shell_id, POWERSHELL_EXE, args, skip_cmd_shell=True)
        return shell_id, cid

    def _run_blocking(self, args: list[str], timeout_s: float, stdin: str | None) -> CommandResult:
        start = time.monotonic()
        shell_id, command_id = self._start(args)
        try:
            if stdin is not None:
                # One Send, stdin closed after it: the script reads it to the end first.
                data = stdin.encode("utf-8")
                self._protocol.send_command_input(shell_id, command_id, data, end=True)
            out, err, code = self._collect(shell_id, command_id, start + timeout_s)
        finally:
            try:
                self._protocol.cleanup_command(shell_id, command_id)
            except _PYWINRM_ERRORS as exc:  # the result is what matters; the shell may be gone
                log.info("winrm %s: signal terminate failed: %s", self.host_id, exc)
        return CommandResult(
            exit_code=code,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=clean_clixml(err),
            duration_s=time.monotonic() - start,
        )

    def _collect(self, shell_id: str, command_id: str, deadline: float) -> tuple[bytes, bytes, int]:
        # pywinrm's get_command_output retries operation timeouts forever; we keep a deadline.
        out: list[bytes] = []
        err: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise _CommandTimeout("command exceeded its timeout")
            try:
                o, e, code, done = self._protocol.get_command_output_raw(shell_id, command_id)
            except WinRMOperationTimeoutError:
                continue  # no output yet: the server's long-poll expired
            out.append(o)
            err.append(e)
            size += len(o) + len(e)
            if size > _MAX_OUTPUT:
                raise _ProtocolError(f"output over {_MAX_OUTPUT} bytes")
            if done:
                return b"".join(out), b"".join(err), code


class WinRMTransport:
    """`Transport` for Windows hosts; `environ` is where passwords are looked up."""

    name = "winrm"

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        max_workers: int = 16,
        operation_timeout_s: int = 20,
    ) -> None:
        self._environ = secret_lookup() if environ is None else environ
        self._operation_timeout_s = operation_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="winrm")
        self._sessions: dict[str, WinRMSession] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def session(self, host_id: str, conn: HostConnection) -> WinRMSession:
        lock = self._locks.setdefault(host_id, asyncio.Lock())
        async with lock:
            current = self._sessions.get(host_id)
            if current is not None and not current.broken and current.conn == conn:
                return current
            if current is not None:
                del self._sessions[host_id]
                await current.aclose()
            options, secret = protocol_options(
                host_id, conn, self._environ, operation_timeout_s=self._operation_timeout_s
            )
            try:
                session = WinRMSession(_Target(host_id, conn, options, secret), self._executor)
            except WinRMError as exc:  # pywinrm validates auth arguments up front
                code, retriable, reason = classify_error(exc)
                raise TransportError(
                    f"{host_id}: WinRM {reason}: {exc}", error_code=code, retriable=retriable
                ) from exc
            try:
                await session.open()
            except TransportError:
                session.discard()
                raise
            self._sessions[host_id] = session
            return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            await s.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)
