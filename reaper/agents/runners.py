"""Action runners the worker calls, by transport name.

`OsCodeRunner` joins a `Transport` (how to reach a host and run commands) with OS action code
(how an action becomes commands and parsed facts). OS action code implements `OsActions`:

    async def run(self, verb: str, params: dict[str, Any], shell: CommandRunner, *,
                  host_id: str) -> ActionOutcome

`verb` is the part of the action after `<os>.` ("discover", "prepare", "baseline", "reboot");
`params` were validated against the catalog by the engine; `shell` is the transport's live
session. It returns an `ActionOutcome` whose `data` has the shapes documented in
`reaper.agents.transports.sim_facts` (the simulated hosts are the reference), answers
UNKNOWN_ACTION for a verb it does not know, and may raise `TransportError` (the worker turns it
into an error result with its code and retriable flag).

`default_runners()` builds the transport-name → runner mapping: `sim` always; `local`, `ssh` and
`winrm` when their modules exist, imported and built on first use (a transport whose module is
missing is left out, and the worker answers UNSUPPORTED_TRANSPORT for its hosts).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from reaper.agents.base import ActionOutcome, ActionRunner, CommandRunner, Transport
from reaper.agents.transports.sim import SimRunner
from reaper.clock import Clock
from reaper.infra.base import SimWorldStore
from reaper.models import HostConnection, ResultStatus, Task

__all__ = [
    "LazyOsCodeRunner",
    "OsActions",
    "OsCodeRunner",
    "default_runners",
    "load_oscode",
    "load_transport",
]

log = logging.getLogger(__name__)

# transport name → (module, class); OS code per transport: the OSes it can reach.
_TRANSPORTS = {
    "local": ("reaper.agents.transports.local", "LocalTransport"),
    "ssh": ("reaper.agents.transports.ssh", "SshTransport"),
    "winrm": ("reaper.agents.transports.winrm", "WinRMTransport"),
}
_OSES_BY_TRANSPORT = {"local": ("linux", "macos"), "ssh": ("linux", "macos"), "winrm": ("windows",)}
_OSCODE_CLASS = {"linux": "LinuxActions", "macos": "MacosActions", "windows": "WindowsActions"}


class OsActions(Protocol):
    """One OS's action code (`reaper.agents.oscode.<os>`)."""

    async def run(
        self, verb: str, params: dict[str, Any], shell: CommandRunner, *, host_id: str
    ) -> ActionOutcome: ...


class OsCodeRunner:
    """An `ActionRunner` from a transport and the OS code for the OSes it reaches."""

    def __init__(self, transport: Transport, oscode: Mapping[str, OsActions]) -> None:
        self.transport = transport
        self._oscode = dict(oscode)

    async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
        os_name, _, verb = task.action.partition(".")
        code = self._oscode.get(os_name)
        if code is None:
            return ActionOutcome(
                status=ResultStatus.ERROR,
                summary=f"transport {self.transport.name} has no {os_name or '?'} action code",
                error_code="UNKNOWN_ACTION",
            )
        # TransportError from connecting propagates: the worker maps it.
        shell = await self.transport.session(host_id, conn)
        return await code.run(verb, task.params, shell, host_id=host_id)

    async def close(self) -> None:
        await self.transport.close()


def _import(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # The module is not written yet, or an optional package it needs is missing; any
        # other error (a syntax error, a bug at import) propagates.
        if exc.name != module:
            log.info("module %s unavailable: %s", module, exc)
        return None


def load_transport(name: str, **kwargs: Any) -> Transport | None:
    """Build the named real transport, or None if its module is not there."""
    spec = _TRANSPORTS.get(name)
    if spec is None:
        return None
    module = _import(spec[0])
    cls = None if module is None else getattr(module, spec[1], None)
    if cls is None:
        return None
    transport: Transport = cls(**kwargs)
    return transport


def load_oscode(os_name: str) -> OsActions | None:
    """The OS action code for `os_name` (module attribute `ACTIONS`, else a no-argument
    `<Os>Actions` class), or None if its module is not there."""
    module = _import(f"reaper.agents.oscode.{os_name}")
    if module is None:
        return None
    actions = getattr(module, "ACTIONS", None)
    if actions is None:
        cls = getattr(module, _OSCODE_CLASS[os_name], None)
        actions = None if cls is None else cls()
    return actions


def _exists(module: str) -> bool:
    # Finds the file without running it: no paramiko/pywinrm import until a host needs one.
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


class LazyOsCodeRunner:
    """An `OsCodeRunner` built on first use, so a worker that never meets an ssh or winrm
    host never imports paramiko or pywinrm nor starts their thread pools."""

    def __init__(
        self,
        name: str,
        oses: Sequence[str],
        *,
        transport: Transport | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self._oses = tuple(oses)
        self._transport = transport
        self._options = dict(options or {})
        self._runner: OsCodeRunner | None = None
        self._missing: str | None = None

    def _build(self) -> OsCodeRunner | None:
        transport = self._transport or load_transport(self.name, **self._options)
        oscode = {os: code for os in self._oses if (code := load_oscode(os)) is not None}
        if transport is None or not oscode:
            self._missing = f"transport {self.name!r} is not available in this worker"
            log.warning("%s", self._missing)
            return None
        return OsCodeRunner(transport, oscode)

    async def run(self, task: Task, host_id: str, conn: HostConnection) -> ActionOutcome:
        if self._runner is None:
            if self._missing is None:
                self._runner = self._build()
            if self._runner is None:
                return ActionOutcome(
                    status=ResultStatus.ERROR,
                    summary=self._missing or self.name,
                    error_code="UNSUPPORTED_TRANSPORT",
                )
        return await self._runner.run(task, host_id, conn)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.close()


def default_runners(
    *,
    seed: int = 0,
    clock: Clock | None = None,
    transports: Mapping[str, Transport] | None = None,
    transport_options: Mapping[str, Mapping[str, Any]] | None = None,
    include: Collection[str] | None = None,
    worlds: SimWorldStore | None = None,
) -> dict[str, ActionRunner]:
    """Transport name → runner. `sim` is always there (its hosts' worlds in `worlds`, the
    backend's sim-world store, when given); `local`, `ssh` and `winrm` are there
    when their module and some OS code for them exist, and are built on first use (from
    `transports[name]` when given, else with `transport_options[name]`). `include` limits
    the real transports to those named."""
    runners: dict[str, ActionRunner] = {"sim": SimRunner(seed=seed, clock=clock, worlds=worlds)}
    given = transports or {}
    options = transport_options or {}
    for name, oses in _OSES_BY_TRANSPORT.items():
        if include is not None and name not in include:
            continue
        if name not in given and not _exists(_TRANSPORTS[name][0]):
            continue
        if not any(_exists(f"reaper.agents.oscode.{os}") for os in oses):
            log.info("transport %s has no OS action code for %s", name, ", ".join(oses))
            continue
        runners[name] = LazyOsCodeRunner(
            name, oses, transport=given.get(name), options=options.get(name)
        )
    return runners
