"""The local transport: runs argv commands on this machine with no shell and no SSH, so the
Linux action code can discover (and baseline) the machine Reaper runs on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from reaper.agents.base import Command, CommandResult
from reaper.agents.transports.posixcmd import CommandLog, default_logs_dir, sudo_argv
from reaper.errors import TransportError
from reaper.models import HostConnection

__all__ = ["LocalSession", "LocalTransport"]

log = logging.getLogger(__name__)


class LocalTransport:
    name = "local"

    def __init__(self, *, logs_dir: Path | None = None, max_concurrency: int = 8) -> None:
        self._log = CommandLog(logs_dir if logs_dir is not None else default_logs_dir())
        self._max = max_concurrency
        self._sems: dict[str, asyncio.Semaphore] = {}

    async def session(self, host_id: str, conn: HostConnection) -> LocalSession:
        sem = self._sems.setdefault(host_id, asyncio.Semaphore(self._max))
        return LocalSession(host_id, conn, self._log, sem)

    async def close(self) -> None:
        return None


class LocalSession:
    def __init__(
        self, host_id: str, conn: HostConnection, cmdlog: CommandLog, sem: asyncio.Semaphore
    ) -> None:
        self.host_id = host_id
        self._conn = conn
        self._log = cmdlog
        self._sem = sem
        path = cmdlog.path_for(host_id)
        self.logs_ref: str | None = str(path) if path is not None else None

    async def run(self, command: Command) -> CommandResult:
        if command.script is not None or not command.argv:
            raise ValueError("the local transport runs argv commands")
        argv = list(command.argv)
        # Already root: sudo would only add a dependency (and a prompt) for nothing.
        if command.sudo and self._conn.become and os.geteuid() != 0:
            argv = sudo_argv(argv, with_password=False)
        async with self._sem:
            result = await self._exec(argv, command)
        await asyncio.to_thread(self._log.write, self.host_id, command.argv, result)
        return result

    async def _exec(self, argv: list[str], command: Command) -> CommandResult:
        started = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                # No input: no pipe at all, so there is nothing to race the process's exit.
                stdin=asyncio.subprocess.PIPE if command.stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # a timeout kills the whole process group
            )
        except FileNotFoundError:
            return CommandResult(127, "", f"{argv[0]}: command not found", 0.0)
        except PermissionError as exc:
            return CommandResult(126, "", f"{argv[0]}: {exc.strerror}", 0.0)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races the awaited result (a stopping worker would go on).
            async with asyncio.timeout(command.timeout_s):
                _, (out, err) = await asyncio.gather(
                    _feed(proc, command.stdin.encode() if command.stdin else None),
                    proc.communicate(),
                )
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            raise TransportError(
                f"{self.host_id}: command timed out after {command.timeout_s:.0f}s",
                error_code="TIMEOUT",
                retriable=True,
            ) from None
        return CommandResult(
            exit_code=proc.returncode if proc.returncode is not None else -1,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
            duration_s=time.perf_counter() - started,
        )


async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    """Write a command's input and close its stdin, tolerating a process that exits first.

    `communicate(input)` does this too, but it only forgives BrokenPipeError: under uvloop (the
    CLI's loop) a write to the pipe of a process that has already exited raises RuntimeError
    ("unable to perform operation on <WriteUnixTransport closed=True ...>"), which crashed
    discovers at random. A process that exits without reading its input is its own answer.
    """
    if proc.stdin is None or data is None:
        return
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
        proc.stdin.close()
    except (BrokenPipeError, ConnectionResetError, RuntimeError) as exc:
        log.debug("stdin of pid %s closed before its input was written: %s", proc.pid, exc)
