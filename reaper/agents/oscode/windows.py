"""Windows action code: discover, prepare, baseline and reboot as PowerShell over a shell;
`ensure_*` from `oscode.windows_ensure`, declared resources read by `oscode.windows_resources`.

Each verb runs one fixed script (`windows_scripts`) with its params bound as PowerShell
parameters, and parses the JSON it prints with pydantic. Output that does not parse is a
COMMAND_FAILED result with a summary saying what was wrong, never a guess. Data shapes follow
the simulated hosts (`reaper.agents.transports.sim_facts`), so planners see the same facts.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reaper.actions import CATALOG, DIAGNOSE_TOPICS
from reaper.agents.base import ActionOutcome, Command, CommandResult, CommandRunner
from reaper.agents.oscode import windows_scripts as scripts
from reaper.agents.oscode.windows_ensure import ensure
from reaper.agents.oscode.windows_resources import observe_declared
from reaper.models import ResultStatus

__all__ = ["ACTIONS", "BaselineReport", "ItemResult", "WindowsActions", "WindowsFacts"]

_TAIL = 2000
_STATUSES = ("changed", "would_change", "unchanged", "unavailable", "failed")
_M = TypeVar("_M", bound=BaseModel)


class _Out(BaseModel):
    # Tolerant of extra keys (a newer script may add some), strict about the ones we read.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class ComputerFacts(_Out):
    name: str
    domain: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    build: str | None = None
    description: str | None = None


class AddressFact(_Out):
    iface: str
    addr: str


class CpuFacts(_Out):
    model: str | None = None
    cores: int | None = None


OnOff = Literal["on", "off"]


class FirewallFacts(_Out):
    domain: OnOff | None = None
    private: OnOff | None = None
    public: OnOff | None = None


class RdpFacts(_Out):
    enabled: bool | None = None
    nla: bool | None = None


class DefenderFacts(_Out):
    realtime: bool | None = None
    signatures_age_days: int | None = None


class UpdateFacts(_Out):
    auto: bool | None = None
    last_installed: str | None = None


class SmbFacts(_Out):
    v1_enabled: bool | None = None


class WindowsFacts(_Out):
    """What `windows.discover` collects; a section that failed is None, its error in
    `discover_errors`; a section not asked for is absent."""

    computer: ComputerFacts | None = None
    addresses: list[AddressFact] | None = None
    cpu: CpuFacts | None = None
    memory_mb: int | None = None
    firewall: FirewallFacts | None = None
    rdp: RdpFacts | None = None
    defender: DefenderFacts | None = None
    updates: UpdateFacts | None = None
    local_admins: list[str] | None = None
    smb: SmbFacts | None = None
    discover_errors: dict[str, str] = Field(default_factory=dict)

    @field_validator("local_admins", "addresses", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        # ConvertTo-Json in Windows PowerShell writes a one-element array as the element.
        return [value] if isinstance(value, str | dict) else value


class ItemResult(_Out):
    name: str
    changed: bool
    before: Any = None
    after: Any = None
    error: str | None = None
    missing: bool = False


class BaselineReport(_Out):
    check_mode: bool = False
    items: list[ItemResult]

    @field_validator("items", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


class DiagnoseReport(_Out):
    report: dict[str, str | None] = Field(default_factory=dict)
    findings: list[str] = Field(default_factory=list)

    @field_validator("findings", mode="before")
    @classmethod
    def _one_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class SweepTotal(_Out):
    files: int
    bytes: int


class CleanupReport(_Out):
    targets: dict[str, SweepTotal] = Field(default_factory=dict)
    check_mode: bool = False


class _BadOutput(Exception):
    pass


def _outcome(
    status: ResultStatus,
    summary: str,
    data: dict[str, Any] | None = None,
    *,
    result: CommandResult | None = None,
    error_code: str | None = None,
) -> ActionOutcome:
    return ActionOutcome(
        status=status,
        summary=summary,
        data=data or {},
        stdout_tail=result.stdout[-_TAIL:] if result else "",
        stderr_tail=result.stderr[-_TAIL:] if result else "",
        error_code=error_code,
        retriable=False,
    )


def _invalid(message: str) -> ActionOutcome:
    return _outcome(ResultStatus.ERROR, message, error_code="INVALID_PARAMS")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:200]


def _parse(model: type[_M], stdout: str) -> _M:
    try:
        return model.model_validate(json.loads(stdout))
    except json.JSONDecodeError as exc:
        raise _BadOutput(f"not JSON ({exc.msg} at char {exc.pos})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "output"
        raise _BadOutput(f"unexpected JSON: {where}: {first['msg']}") from exc


class WindowsActions:
    """`OsActions` for Windows hosts, through a WinRM (PowerShell) `CommandRunner`."""

    os = "windows"

    async def run(
        self, verb: str, params: dict[str, Any], shell: CommandRunner, *, host_id: str
    ) -> ActionOutcome:
        if verb.startswith("ensure_"):
            facts = lambda: self._facts(shell)  # noqa: E731  (a file template's facts, on demand)
            return await ensure(
                verb.removeprefix("ensure_"), params, shell, host_id=host_id, facts=facts
            )
        spec = CATALOG.get(f"windows.{verb}")
        handler = getattr(self, f"_{verb}", None)
        if spec is None or handler is None:
            return _outcome(
                ResultStatus.ERROR, f"no Windows action {verb!r}", error_code="UNKNOWN_ACTION"
            )
        try:
            checked = spec.params_model.model_validate(params).model_dump()
        except ValidationError as exc:
            return _invalid(f"windows.{verb}: bad params: {exc.errors()[0]['msg']}")
        outcome: ActionOutcome = await handler(checked, shell, host_id, spec.timeout_s)
        return outcome

    async def _exec(
        self, name: str, script: str, ps_params: dict[str, Any], shell: CommandRunner, t: float
    ) -> CommandResult | ActionOutcome:
        result = await shell.run(Command(script=script, params=ps_params, timeout_s=t))
        if result.exit_code != 0:
            why = _first_line(result.stderr) or _first_line(result.stdout) or "no output"
            return _outcome(
                ResultStatus.ERROR,
                f"{name} exited {result.exit_code}: {why}",
                result=result,
                error_code="COMMAND_FAILED",
            )
        return result

    async def _exec_parsed(
        self,
        name: str,
        script: str,
        ps_params: dict[str, Any],
        model: type[_M],
        shell: CommandRunner,
        t: float,
    ) -> tuple[_M, CommandResult] | ActionOutcome:
        """Run a script and parse the one JSON document it prints, or the outcome of failing."""
        result = await self._exec(name, script, ps_params, shell, t)
        if isinstance(result, ActionOutcome):
            return result
        try:
            return _parse(model, result.stdout), result
        except _BadOutput as exc:
            return self._bad(name, exc, result)

    def _bad(self, name: str, exc: _BadOutput, result: CommandResult) -> ActionOutcome:
        return _outcome(
            ResultStatus.ERROR,
            f"{name} returned unusable output: {exc}",
            result=result,
            error_code="COMMAND_FAILED",
        )

    async def _discover(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str, t: float
    ) -> ActionOutcome:
        sections = params.get("sections")
        if sections is not None:
            unknown = sorted(set(sections) - set(scripts.DISCOVER_SECTIONS))
            if unknown:
                return _invalid(f"windows.discover: unknown sections {', '.join(unknown)}")
        ps = {"Sections": sections} if sections else {}
        result = await self._exec("windows.discover", scripts.DISCOVER, ps, shell, t)
        if isinstance(result, ActionOutcome):
            return result
        try:
            facts = _parse(WindowsFacts, result.stdout)
        except _BadOutput as exc:
            return self._bad("windows.discover", exc, result)
        data = facts.model_dump(mode="json", exclude_unset=True)
        data["discover_errors"] = facts.discover_errors
        if params.get("resources") is not None:
            # The declared resources: one more round trip, every resource in it.
            observed = await observe_declared(shell, params["resources"], t)
            if isinstance(observed, ActionOutcome):
                return observed
            data.update(observed)
        c = facts.computer
        what = f"{c.os_name or 'Windows'} build {c.build or '?'}" if c else "Windows"
        failed = f", {len(facts.discover_errors)} sections failed" if facts.discover_errors else ""
        return _outcome(
            ResultStatus.SUCCESS, f"discovered {host_id}: {what}{failed}", data, result=result
        )

    async def _facts(self, shell: CommandRunner) -> dict[str, Any]:
        """The host's facts (what a file template renders over); {} when they do not parse."""
        result = await shell.run(Command(script=scripts.DISCOVER, params={}, timeout_s=120.0))
        try:
            return _parse(WindowsFacts, result.stdout).model_dump(mode="json", exclude_unset=True)
        except _BadOutput:
            return {}

    async def _baseline(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str, t: float
    ) -> ActionOutcome:
        items = params.get("items")
        check = bool(params.get("check_mode"))
        if items is not None:
            unknown = sorted(set(items) - set(scripts.BASELINE_ITEMS))
            if unknown:
                return _invalid(f"windows.baseline: unknown items {', '.join(unknown)}")
        ps: dict[str, Any] = {"CheckMode": check}
        if items:
            ps["Items"] = list(items)
        result = await self._exec("windows.baseline", scripts.BASELINE, ps, shell, t)
        if isinstance(result, ActionOutcome):
            return result
        try:
            report = _parse(BaselineReport, result.stdout)
        except _BadOutput as exc:
            return self._bad("windows.baseline", exc, result)
        return _baseline_outcome(host_id, report, check, result)

    async def _prepare(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str, t: float
    ) -> ActionOutcome:
        items = params.get("items")
        if items is not None:
            unknown = sorted(set(items) - set(scripts.PREPARE_ITEMS))
            if unknown:
                return _invalid(f"windows.prepare: unknown items {', '.join(unknown)}")
        ps = {"Items": list(items)} if items else {}
        result = await self._exec("windows.prepare", scripts.PREPARE, ps, shell, t)
        if isinstance(result, ActionOutcome):
            return result
        try:
            report = _parse(BaselineReport, result.stdout)
        except _BadOutput as exc:
            return self._bad("windows.prepare", exc, result)
        failed = {i.name: i.error for i in report.items if i.error}
        installed = [i.name for i in report.items if i.changed and not i.error]
        present = [i.name for i in report.items if not i.changed and not i.error]
        data: dict[str, Any] = {"installed": installed, "already_present": present}
        if failed:
            data["failed"] = failed
            return _outcome(
                ResultStatus.ERROR,
                f"prepare on {host_id}: failed {', '.join(sorted(failed))}",
                data,
                result=result,
                error_code="COMMAND_FAILED",
            )
        return _outcome(
            ResultStatus.SUCCESS,
            f"prepared {host_id}: {len(installed)} installed, {len(present)} present",
            data,
            result=result,
        )

    async def _diagnose(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str, t: float
    ) -> ActionOutcome:
        ps = {
            "Topics": list(params.get("topics") or DIAGNOSE_TOPICS),
            "Service": params.get("service") or "",
            "Target": params.get("target") or "",
            "Port": int(params.get("port") or 0),
            "LogLines": int(params["log_lines"]),
        }
        got = await self._exec_parsed(
            "windows.diagnose", scripts.DIAGNOSE, ps, DiagnoseReport, shell, t
        )
        if isinstance(got, ActionOutcome):
            return got
        parsed, result = got
        report = {k: (v or "")[-4000:] for k, v in parsed.report.items()}
        summary = "; ".join(parsed.findings) or "nothing abnormal found"
        return _outcome(
            ResultStatus.SUCCESS,
            f"diagnose {host_id}: {summary}",
            {"topics": ps["Topics"], "report": report, "findings": parsed.findings},
            result=result,
        )

    async def _cleanup(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str, t: float
    ) -> ActionOutcome:
        ps = {
            "Targets": list(params.get("targets") or ("package_cache", "temp", "old_logs")),
            "OlderThanDays": int(params["older_than_days"]),
            "CheckMode": bool(params["check_mode"]),
        }
        got = await self._exec_parsed(
            "windows.cleanup", scripts.CLEANUP, ps, CleanupReport, shell, t
        )
        if isinstance(got, ActionOutcome):
            return got
        parsed, result = got
        freed = sum(v.bytes for v in parsed.targets.values())
        verb = "would free" if ps["CheckMode"] else "freed"
        return _outcome(
            ResultStatus.SUCCESS,
            f"cleanup {host_id}: {verb} {freed / 1_048_576:.1f} MiB",
            {
                "targets": {k: v.model_dump() for k, v in parsed.targets.items()},
                "check_mode": ps["CheckMode"],
                "changed": freed > 0 and not ps["CheckMode"],
            },
            result=result,
        )

    async def _run_powershell(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str, t: float
    ) -> ActionOutcome:
        result = await shell.run(
            Command(
                script=scripts.RUN_POWERSHELL,
                params={"Script": params["script"]},
                timeout_s=float(params["timeout_s"]),
            )
        )
        status = ResultStatus.SUCCESS if result.exit_code == 0 else ResultStatus.ERROR
        return _outcome(
            status,
            f"run_powershell on {host_id}: exit {result.exit_code}",
            {"exit_code": result.exit_code},
            result=result,
            error_code=None if result.exit_code == 0 else "COMMAND_FAILED",
        )

    async def _reboot(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str, t: float
    ) -> ActionOutcome:
        ps = {"DelayS": int(params.get("delay_s", 0)), "Reason": str(params.get("reason", ""))}
        result = await self._exec("windows.reboot", scripts.REBOOT, ps, shell, t)
        if isinstance(result, ActionOutcome):
            return result
        when = f"in {ps['DelayS']} s" if ps["DelayS"] else "now"
        return _outcome(
            ResultStatus.SUCCESS,
            f"reboot of {host_id} scheduled {when}",
            {"delay_s": ps["DelayS"]},
            result=result,
        )


def _status(item: ItemResult, check: bool) -> str:
    if item.missing:
        return "unavailable"
    if item.error:
        return "failed"
    if item.changed:
        return "would_change" if check else "changed"
    return "unchanged"


def _baseline_outcome(
    host_id: str, report: BaselineReport, check: bool, result: CommandResult
) -> ActionOutcome:
    # The item contract of `reaper.agents.oscode.baseline` (Linux, macOS): one status per item.
    items = [
        {
            "name": i.name,
            "status": _status(i, check),
            "changed": _status(i, check) == "changed",
            "before": i.before,
            "after": i.after,
            "detail": i.error or "",
        }
        for i in report.items
    ]
    counts = {s: sum(1 for i in items if i["status"] == s) for s in _STATUSES}
    data: dict[str, Any] = {"check_mode": check, "items": items} | {
        s: counts[s] for s in ("changed", "unchanged", "would_change", "failed")
    }
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no items"
    summary = f"baseline on {host_id}: " + ("check mode: " if check else "") + text
    missing = [i["name"] for i in items if i["status"] == "unavailable"]
    if missing and not counts["failed"]:
        data |= {"missing": missing, "fix": "windows.prepare"}
        return _outcome(
            ResultStatus.ERROR,
            f"{summary}; prerequisite missing for {', '.join(missing)}",
            data,
            result=result,
            error_code="PREREQ_MISSING",
        )
    if counts["failed"]:
        bad = [f"{i['name']} ({i['detail']})" for i in items if i["status"] == "failed"]
        every = counts["failed"] == len(items)
        return _outcome(
            ResultStatus.ERROR if every else ResultStatus.PARTIAL,
            f"{summary}; failed: {'; '.join(bad)}"[:500],
            data,
            result=result,
            error_code="COMMAND_FAILED",
        )
    return _outcome(ResultStatus.SUCCESS, summary, data, result=result)


ACTIONS = WindowsActions()
