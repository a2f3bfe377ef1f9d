"""The desired-state vocabulary: one `<os>.ensure_<kind>` per kind and OS it runs on, its
params validated by the kind's own model, and the lockout lab's one dangerous change refused
through the policy whatever planner proposes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from reaper.actions import (
    CATALOG,
    ENSURE_KINDS,
    FAILURE_CLASSES,
    DiscoverParams,
    Risk,
    ensure_action,
    validate_params,
)
from reaper.agents.base import ActionOutcome, Command, CommandResult
from reaper.agents.oscode.linux import LinuxActions
from reaper.agents.oscode.macos import MacosActions
from reaper.agents.oscode.windows import WindowsActions
from reaper.agents.transports.sim import SimRunner
from reaper.desired import KIND_OS, KINDS
from reaper.lab import load_lab
from reaper.models import PlannedTask, ResultStatus
from reaper.policy import check
from tests.agents.helpers import task

LOCKOUT_LAB = Path(__file__).parents[2] / "reaper" / "labs" / "lockout-lab.yaml"


def test_every_kind_has_its_ensure_action_on_every_os_it_runs_on() -> None:
    ensures = {name for name, spec in CATALOG.items() if spec.verb.startswith("ensure_")}
    want = {ensure_action(os, kind) for kind, oses in KIND_OS.items() for os in oses}
    assert ensures == want
    for name in ensures:
        spec = CATALOG[name]
        kind = spec.verb.removeprefix("ensure_")
        assert spec.idempotent and spec.supports_check_mode
        assert (
            spec.risk is ENSURE_KINDS[kind].risk and spec.timeout_s == ENSURE_KINDS[kind].timeout_s
        )
        assert spec.params_model.model_fields["resource"].annotation is KINDS[kind]
    # every tier is `change`: shipped labs run unattended; the lockout guard refuses the rest
    assert {CATALOG[n].risk for n in ensures} == {Risk.CHANGE}
    assert "windows.ensure_sshd_option" not in CATALOG and "linux.ensure_ad_user" not in CATALOG
    assert FAILURE_CLASSES["PM_LOCKED"][0] is True and FAILURE_CLASSES["DISK_FULL"][0] is False


def test_ensure_params_are_the_kinds_model_and_travel_whole() -> None:
    spec = CATALOG["linux.ensure_package"]
    params, error = validate_params(spec, {"resource": {"kind": "package", "name": "nginx"}})
    assert error is None
    assert params == {"resource": {"kind": "package", "after": [], "name": "nginx",
                                   "state": "present", "version": None}}  # fmt: skip
    _, error = validate_params(spec, {"resource": {"kind": "service", "name": "nginx"}})
    assert error is not None and error.startswith("resource.kind")
    _, error = validate_params(spec, {"resource": {"kind": "package", "name": "x", "password": 1}})
    assert error is not None and "password_env" in error
    params, error = validate_params(
        CATALOG["linux.ensure_file"],
        {"resource": {"kind": "file", "path": "/etc/motd", "content": "hi"}, "check_mode": True},
    )
    assert error is None and params["check_mode"] is True
    assert DiscoverParams(resources=[{"kind": "package", "name": "curl"}]).resources


async def test_the_lockout_lab_refuses_root_logins_off_while_connected_as_root() -> None:
    lab = load_lab(LOCKOUT_LAB)
    state = lab.to_state()
    refused, allowed = [], []
    for ref, resource in lab.desired:
        planned = PlannedTask(
            host_id=ref.host,
            action=ensure_action("linux", resource.kind),
            params={"resource": resource.model_dump(mode="json")},
        )
        verdict = check(planned, state, lab.resolved_policy())
        (refused if verdict.code == "lockout" else allowed).append((str(ref.rid), verdict))
    assert [rid for rid, _ in refused] == ["sshd_option/PermitRootLogin"]
    ((_, verdict),) = refused
    assert "PermitRootLogin no while Reaper connects as root" in verdict.reason
    assert "hint: connect as a sudo user first" in verdict.reason
    assert all(v.code == "allowed" for _, v in allowed) and len(allowed) == 3
    runner = SimRunner(seed=lab.seed)  # the rest converges on the host, still reachable
    conn = state.hosts["app-01"].connection
    for i, (rid, verdict) in enumerate(allowed):
        action = f"linux.ensure_{rid.split('/')[0]}"
        out = await runner.run(task(i, "app-01", action, params=verdict.params), "app-01", conn)
        assert out.status is ResultStatus.SUCCESS, (rid, out.error_code, out.stderr_tail)
    assert (await runner.run(task(9, "app-01"), "app-01", conn)).status is ResultStatus.SUCCESS
    check_only = PlannedTask(
        host_id="app-01",
        action="linux.ensure_sshd_option",
        params={"resource": {"kind": "sshd_option", "name": "PermitRootLogin", "value": "no"},
                "check_mode": True},
    )  # fmt: skip
    assert check(check_only, state, lab.resolved_policy()).code != "lockout"


class _NoShell:
    async def run(self, command: Command) -> CommandResult:
        raise AssertionError("an ensure with invalid params must run nothing")


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (LinuxActions(), "ensure_package"),
        (MacosActions(), "ensure_package"),
        (WindowsActions(), "ensure_ad_domain"),
    ],
)  # fmt: skip
async def test_real_os_code_checks_an_ensure_before_running_anything(
    code: object, action: str
) -> None:
    out: ActionOutcome = await code.run(action, {"resource": {}}, _NoShell(), host_id="h")  # type: ignore[attr-defined]
    assert out.error_code == "INVALID_PARAMS" and "resource.name" in out.summary
