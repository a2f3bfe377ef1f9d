"""OsCodeRunner joins a transport with OS code; default_runners builds what is available."""

from __future__ import annotations

from typing import Any

import pytest

from reaper.agents.base import ActionOutcome, Command, CommandResult, CommandRunner
from reaper.agents.runners import (
    LazyOsCodeRunner,
    OsCodeRunner,
    default_runners,
    load_oscode,
    load_transport,
)
from reaper.agents.transports.sim import SimRunner
from reaper.errors import TransportError
from reaper.models import HostConnection, ResultStatus

from .helpers import task


class FakeShell:
    async def run(self, command: Command) -> CommandResult:
        return CommandResult(0, "Linux\n", "")


class FakeTransport:
    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sessions: list[str] = []
        self.closed = False

    async def session(self, host_id: str, conn: HostConnection) -> CommandRunner:
        if self.fail:
            raise TransportError("refused", error_code="HOST_UNREACHABLE", retriable=True)
        self.sessions.append(host_id)
        return FakeShell()

    async def close(self) -> None:
        self.closed = True


class EchoActions:
    async def run(
        self, verb: str, params: dict[str, Any], shell: CommandRunner, *, host_id: str
    ) -> ActionOutcome:
        out = await shell.run(Command(argv=("uname",)))
        return ActionOutcome(
            status=ResultStatus.SUCCESS, summary=verb, data={"params": params, "uname": out.stdout}
        )


async def test_os_code_runner_passes_verb_params_and_session() -> None:
    transport = FakeTransport()
    runner = OsCodeRunner(transport, {"linux": EchoActions()})
    out = await runner.run(
        task(1, "h9", "linux.baseline", params={"check_mode": True}),
        "h9",
        HostConnection(transport="ssh"),
    )
    assert out.summary == "baseline" and out.data == {
        "params": {"check_mode": True},
        "uname": "Linux\n",
    }
    assert transport.sessions == ["h9"]
    await runner.close()
    assert transport.closed


async def test_os_code_runner_unknown_os_and_connect_failure() -> None:
    runner = OsCodeRunner(FakeTransport(), {"linux": EchoActions()})
    out = await runner.run(task(1, action="windows.discover"), "h1", HostConnection())
    assert out.status is ResultStatus.ERROR and out.error_code == "UNKNOWN_ACTION"
    failing = OsCodeRunner(FakeTransport(fail=True), {"linux": EchoActions()})
    with pytest.raises(TransportError):
        await failing.run(task(1), "h1", HostConnection())


def test_default_runners_always_has_sim() -> None:
    runners = default_runners(seed=3, include=())
    assert set(runners) == {"sim"} and isinstance(runners["sim"], SimRunner)


async def test_default_runners_build_real_transports_lazily() -> None:
    fake = FakeTransport()
    runners = default_runners(transports={"winrm": fake, "ssh": fake}, include=("winrm", "ssh"))
    has_windows = load_oscode("windows") is not None
    has_posix = load_oscode("linux") is not None or load_oscode("macos") is not None
    assert ("winrm" in runners) == has_windows
    assert ("ssh" in runners) == has_posix
    if has_windows:
        lazy = runners["winrm"]
        assert isinstance(lazy, LazyOsCodeRunner) and lazy._runner is None
        # A Linux action on the WinRM runner: built now, then refused by the OS-code lookup.
        out = await lazy.run(task(1, action="linux.discover"), "h1", HostConnection())
        assert out.error_code == "UNKNOWN_ACTION"
        assert lazy._runner is not None and lazy._runner.transport is fake
        await lazy.close()
        assert fake.closed


async def test_unavailable_transport_answers_unsupported() -> None:
    lazy = LazyOsCodeRunner("carrier-pigeon", ("linux",))
    out = await lazy.run(task(1), "h1", HostConnection())
    assert out.status is ResultStatus.ERROR and out.error_code == "UNSUPPORTED_TRANSPORT"
    await lazy.close()


def test_missing_modules_are_absent_not_errors() -> None:
    assert load_transport("carrier-pigeon") is None
    assert load_oscode("linux") is None or hasattr(load_oscode("linux"), "run")
