"""The SSH transport (paramiko): one verified, reused connection per host.

    SshTransport.session(host_id, conn) → SshSession      (connects, or raises TransportError)
    SshSession.run(Command) → CommandResult               (a channel per command)

paramiko is blocking, so every connect and exec runs in the transport's own thread pool (the
default asyncio pool has only cpu+4 threads, too few for 20 hosts connecting at once). A host's
connection is made once under a per-host lock and reused for all its commands; a per-host
semaphore bounds open channels (OpenSSH allows 10 sessions per connection by default). A
transport found dead before a command starts is reconnected once; a command cut off mid-way is
reported (CONNECTION_LOST, retriable) and never re-run in place, since it may have had effects.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import select
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from reaper.agents.base import Command, CommandResult
from reaper.agents.transports.posixcmd import CommandLog, default_logs_dir, to_command_line
from reaper.agents.transports.sshconnect import ConnectSpec, map_exception, open_client, parse_jump
from reaper.errors import TransportError
from reaper.models import HostConnection
from reaper.secrets import secret_lookup

__all__ = ["SshSession", "SshTransport"]

log = logging.getLogger(__name__)
_IN_PLACE_RETRY = frozenset({"CONNECTION_REFUSED", "TIMEOUT", "CONNECTION_LOST"})


class _NotStarted(Exception):
    """The channel could not be opened: the command never ran, so reconnecting is safe."""


class _Host:
    def __init__(self, host_id: str, conn: HostConnection, channels: int) -> None:
        self.host_id = host_id
        self.conn = conn
        self.lock = asyncio.Lock()
        self.channels = asyncio.Semaphore(channels)
        self.client: paramiko.SSHClient | None = None
        self.jump: paramiko.SSHClient | None = None

    def alive(self) -> bool:
        transport = self.client.get_transport() if self.client is not None else None
        return transport is not None and transport.is_active()

    def close(self) -> None:
        for client in (self.client, self.jump):
            if client is not None:
                client.close()
        self.client = self.jump = None


class SshTransport:
    name = "ssh"

    def __init__(
        self,
        *,
        logs_dir: Path | None = None,
        max_channels_per_host: int = 8,
        max_threads: int = 64,
        connect_attempts: int = 3,
        tcp_nodelay: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        # Secrets by name (conn.password_env): this process's registry of inline inventory
        # secrets, then its environment (reaper.secrets); tests inject a mapping.
        self._environ = secret_lookup() if environ is None else environ
        self._log = CommandLog(logs_dir if logs_dir is not None else default_logs_dir())
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="ssh")
        self._channels = max_channels_per_host
        self._attempts = max(1, connect_attempts)
        self._nodelay = tcp_nodelay
        self._hosts: dict[str, _Host] = {}

    async def session(self, host_id: str, conn: HostConnection) -> SshSession:
        host = self._hosts.get(host_id)
        if host is None or host.conn != conn:
            if host is not None:  # settings changed: the old connection is for another target
                await self._blocking(host.close)
            host = self._hosts[host_id] = _Host(host_id, conn, self._channels)
        await self._ensure(host)
        return SshSession(self, host)

    async def drop(self, host_id: str) -> None:
        """Close a host's connection; the next session reconnects."""
        host = self._hosts.pop(host_id, None)
        if host is not None:
            await self._blocking(host.close)

    async def close(self) -> None:
        hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            await self._blocking(host.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _blocking(self, fn: object, *args: object) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)  # type: ignore[arg-type]

    async def _ensure(self, host: _Host, *, stale: paramiko.SSHClient | None = None) -> None:
        async with host.lock:
            if host.client is not None and host.client is not stale and host.alive():
                return
            if host.client is not None:
                await self._blocking(host.close)
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.2, max=2.0),
                retry=retry_if_exception(
                    lambda e: isinstance(e, TransportError) and e.error_code in _IN_PLACE_RETRY
                ),
                reraise=True,
            )
            started = time.perf_counter()
            async for attempt in retrying:
                with attempt:
                    await self._blocking(self._connect, host)
            log.info(
                "ssh %s connected in %.0f ms", host.host_id, (time.perf_counter() - started) * 1e3
            )

    def _spec(self, host: _Host, address: str, port: int, user: str) -> ConnectSpec:
        conn = host.conn
        password = None
        if conn.password_env:
            password = self._environ.get(conn.password_env)
            if password is None:
                raise TransportError(
                    f"{host.host_id}: password variable {conn.password_env} is not set",
                    error_code="AUTH_FAILED",
                    retriable=False,
                )
        known = Path(conn.known_hosts or "~/.ssh/known_hosts").expanduser()
        return ConnectSpec(
            host_id=host.host_id,
            address=address,
            port=port,
            user=user,
            key_file=str(Path(conn.key_file).expanduser()) if conn.key_file else None,
            password=password,
            use_agent=conn.use_agent,
            known_hosts=known,
            accept_new=conn.accept_new_host_key,
            timeout_s=conn.connect_timeout_s,
            tcp_nodelay=self._nodelay,
        )

    def _connect(self, host: _Host) -> None:
        conn = host.conn
        user = conn.user or getpass.getuser()
        if conn.jump_host:
            j_user, j_addr, j_port = parse_jump(conn.jump_host, user)
            host.jump = open_client(self._spec(host, j_addr, j_port, j_user))
        target = self._spec(host, conn.address or host.host_id, conn.port or 22, user)
        host.client = open_client(target, via=host.jump)

    def _user(self, host: _Host) -> str:
        return host.conn.user or getpass.getuser()

    async def _run(self, host: _Host, command: Command) -> tuple[CommandResult, str | None]:
        conn = host.conn
        become_password = None
        if conn.become_password_env:
            become_password = self._environ.get(conn.become_password_env)
        use_sudo = command.sudo and conn.become and self._user(host) != "root"
        line, stdin = to_command_line(command, use_sudo=use_sudo, become_password=become_password)
        async with host.channels:
            for attempt in (1, 2):
                client = host.client
                if client is None or not host.alive():
                    await self._ensure(host, stale=client)
                    client = host.client
                assert client is not None
                try:
                    result = await self._blocking(
                        _exec, client, host.host_id, line, stdin, command.timeout_s
                    )
                except _NotStarted:
                    if attempt == 2:
                        raise TransportError(
                            f"{host.host_id}: cannot open a channel after reconnecting",
                            error_code="CONNECTION_LOST",
                            retriable=True,
                        ) from None
                    log.info("ssh %s: connection dead, reconnecting once", host.host_id)
                    await self._ensure(host, stale=client)
                    continue
                assert isinstance(result, CommandResult)
                ref = await self._blocking(self._log.write, host.host_id, command.argv, result)
                return result, ref if isinstance(ref, str) else None
        raise AssertionError("unreachable")


class SshSession:
    """A host's reused connection, as the `CommandRunner` OS code talks to."""

    def __init__(self, transport: SshTransport, host: _Host) -> None:
        self._transport = transport
        self._host = host
        path = transport._log.path_for(host.host_id)
        # Where the full output of this host's commands goes (the results' logs_ref).
        self.logs_ref: str | None = str(path) if path is not None else None

    @property
    def host_id(self) -> str:
        return self._host.host_id

    async def run(self, command: Command) -> CommandResult:
        result, _ = await self._transport._run(self._host, command)
        return result


def _exec(
    client: paramiko.SSHClient, host_id: str, line: str, stdin: str | None, timeout: float
) -> CommandResult:
    """Run one command line on a fresh channel (blocking; in the thread pool)."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise _NotStarted
    try:
        chan = transport.open_session(timeout=min(timeout, 30.0))
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise _NotStarted from exc
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    try:
        chan.settimeout(timeout)
        chan.exec_command(line)
        if stdin:
            chan.sendall(stdin.encode())
        chan.shutdown_write()
        out, err = _drain(chan, deadline, host_id, timeout)
        code = chan.recv_exit_status()  # ready: _drain returned (closed channels count)
        if code == -1 and not transport.is_active():
            raise TransportError(
                f"{host_id}: connection lost while a command ran (it may have had effects)",
                error_code="CONNECTION_LOST",
                retriable=True,
            )
    except TransportError:
        raise
    except Exception as exc:
        raise map_exception(exc, host_id, "running a command") from exc
    finally:
        chan.close()
    return CommandResult(
        exit_code=code,
        stdout=out.decode("utf-8", errors="replace"),
        stderr=err.decode("utf-8", errors="replace"),
        duration_s=time.perf_counter() - started,
    )


def _drain(
    chan: paramiko.Channel, deadline: float, host_id: str, timeout: float
) -> tuple[bytes, bytes]:
    # select() on a paramiko Channel wakes on stdout or stderr data and on close, so there is
    # no polling delay; reading both streams as they come avoids a full-window deadlock.
    out: list[bytes] = []
    err: list[bytes] = []
    while True:
        if chan.recv_ready():
            out.append(chan.recv(65536))
        elif chan.recv_stderr_ready():
            err.append(chan.recv_stderr(65536))
        elif chan.exit_status_ready():
            break
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError(
                    f"{host_id}: command timed out after {timeout:.0f}s",
                    error_code="TIMEOUT",
                    retriable=True,
                )
            if chan.eof_received:
                # Output is complete; only the exit status is still on its way.
                chan.status_event.wait(remaining)
            else:
                select.select([chan], [], [], remaining)
    while chan.recv_ready():
        out.append(chan.recv(65536))
    while chan.recv_stderr_ready():
        err.append(chan.recv_stderr(65536))
    return b"".join(out), b"".join(err)
