"""macOS action code: discover (one round trip, like Linux), baseline and reboot; `ensure_*`
from `oscode.macos_ensure`.

Sources: sw_vers, system_profiler SPHardwareDataType -json, ifconfig, df, socketfilterfw,
systemsetup -getremotelogin, fdesetup status, spctl --status, csrutil status, sshd -T, dscl.
"""

from __future__ import annotations

import json
import re
from functools import partial
from typing import Any

from reaper.actions import BaselineParams, DiscoverParams, RebootParams
from reaper.agents.base import ActionOutcome, Command, CommandRunner
from reaper.agents.oscode import posix
from reaper.agents.oscode.baseline import (
    BaselineCtx,
    Item,
    ItemReport,
    ItemStatus,
    baseline_outcome,
    sshd_item,
)
from reaper.agents.oscode.macos_args import argument_problem
from reaper.agents.oscode.macos_ensure import ensure
from reaper.agents.oscode.macos_observe import OBSERVE_SCRIPT, observe_args, parse_observed
from reaper.agents.oscode.readable import observe_argv, readable_resources
from reaper.agents.oscode.toolbox import Toolbox
from reaper.models import ResultStatus

__all__ = ["ACTIONS", "DISCOVER_SCRIPT", "ITEMS", "MacosActions", "parse_discover"]

_FW = "/usr/libexec/ApplicationFirewall/socketfilterfw"
DISCOVER_SCRIPT = rf"""PATH="$PATH:/usr/sbin:/sbin:/usr/libexec"; export LC_ALL=C
echo "@@reaper:sw_vers@@"; sw_vers
echo "@@reaper:kernel@@"; uname -r
echo "@@reaper:hostname@@"; hostname
echo "@@reaper:ifconfig@@"; ifconfig -a
echo "@@reaper:hardware@@"; system_profiler SPHardwareDataType -json 2>/dev/null
echo "@@reaper:df@@"; df -P -k -l 2>/dev/null
echo "@@reaper:firewall@@"; {_FW} --getglobalstate 2>&1
echo "@@reaper:stealth@@"; {_FW} --getstealthmode 2>&1
echo "@@reaper:remote_login@@"; systemsetup -getremotelogin 2>&1
echo "@@reaper:filevault@@"; fdesetup status 2>&1
echo "@@reaper:gatekeeper@@"; spctl --status 2>&1
echo "@@reaper:sip@@"; csrutil status 2>&1
echo "@@reaper:uid0@@"; dscl . -list /Users UniqueID 2>/dev/null
echo "@@reaper:ports@@"; lsof -nP -iTCP -sTCP:LISTEN 2>/dev/null
echo "@@reaper:sshd@@"; sshd -T 2>/dev/null
echo "@@reaper:brew@@"; command -v brew || ls /opt/homebrew/bin/brew /usr/local/bin/brew 2>/dev/null
"""
FACT_SECTIONS = (
    "os",
    "sw_vers",
    "kernel",
    "hostname",
    "addresses",
    "hardware",
    "cpu",
    "memory_mb",
    "disks",
    "package_manager",
    "listening_ports",
    "uid0_users",
    "firewall",
    "sshd",
    "filevault",
    "gatekeeper",
    "sip",
)


def _on(text: str, *words: str) -> bool:
    low = text.lower()
    return any(w in low for w in words)


def _hardware(text: str) -> dict[str, Any]:
    try:
        items = json.loads(text).get("SPHardwareDataType") or [{}]
    except (json.JSONDecodeError, AttributeError):
        items = [{}]
    hw = items[0]
    mem = str(hw.get("physical_memory", ""))
    m = re.match(r"([\d.]+)\s*(GB|MB|TB)", mem)
    mem_gb = (float(m.group(1)) * {"MB": 1 / 1024, "GB": 1, "TB": 1024}[m.group(2)]) if m else None
    procs = str(hw.get("number_processors", ""))
    cores = int(procs.split()[-1].split(":")[0]) if procs and procs.split()[-1][:1].isdigit() else 0
    return {
        "model": hw.get("machine_model") or hw.get("machine_name", "Mac"),
        "chip": hw.get("chip_type") or hw.get("cpu_type", "unknown"),
        "memory_gb": mem_gb,
        "cores": cores,
        "serial_present": bool(hw.get("serial_number")),
    }


def _lsof(text: str) -> list[dict[str, Any]]:
    ports: dict[int, dict[str, Any]] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 9 and "(LISTEN)" in line:
            port = parts[8].rsplit(":", 1)[-1]
            if port.isdigit():
                ports.setdefault(
                    int(port), {"proto": "tcp", "port": int(port), "process": parts[0]}
                )
    return sorted(ports.values(), key=lambda p: p["port"])


def parse_discover(text: str) -> dict[str, Any]:
    s = posix.split_sections(text)
    vers = posix.parse_key_values(s.get("sw_vers", ""), sep=":")
    hw = _hardware(s.get("hardware", ""))
    sshd_settings = posix.parse_sshd_t(s.get("sshd", ""))
    remote = s.get("remote_login", "")
    fv = s.get("filevault", "")
    version = vers.get("ProductVersion", "")
    return {
        "os": {
            "id": "macos",
            "name": vers.get("ProductName", "macOS"),
            "version": version,
            "pretty_name": f"{vers.get('ProductName', 'macOS')} {version}".strip(),
        },
        "sw_vers": {
            "product_name": vers.get("ProductName", ""),
            "product_version": version,
            "build": vers.get("BuildVersion", ""),
        },
        "kernel": s.get("kernel", "").strip(),
        "hostname": s.get("hostname", "").strip(),
        "addresses": posix.parse_ifconfig(s.get("ifconfig", "")),
        "hardware": hw,
        "cpu": {"model": hw["chip"], "cores": hw["cores"]},
        "memory_mb": int(hw["memory_gb"] * 1024) if hw["memory_gb"] else None,
        "disks": posix.parse_df(s.get("df", "")),
        "package_manager": "brew" if s.get("brew", "").strip() else None,
        "listening_ports": _lsof(s.get("ports", "")),
        "uid0_users": [
            ln.split()[0]
            for ln in s.get("uid0", "").splitlines()
            if len(ln.split()) == 2 and ln.split()[1] == "0"
        ],
        "firewall": {
            "enabled": _on(s.get("firewall", ""), "enabled", "state = 1", "state = 2"),
            "stealth": _on(s.get("stealth", ""), "stealth mode enabled", "is on"),
        },
        "sshd": {
            "enabled": "remote login: on" in remote.lower(),
            **{k: sshd_settings[k] for k in posix.SSHD_FACT_KEYS if k in sshd_settings},
        },
        "filevault": "On" if "filevault is on" in fv.lower() else "Off",
        "gatekeeper": {"enabled": "assessments enabled" in s.get("gatekeeper", "")},
        "sip": {"enabled": "status: enabled" in s.get("sip", "").lower()},
    }


def _toggle(name: str, read: list[str], on_words: tuple[str, ...], apply: list[str]) -> Item:
    async def item(ctx: BaselineCtx) -> ItemReport:
        state = await ctx.run(read)
        before = _on(state.stdout + state.stderr, *on_words)
        if before:
            return ItemReport(name, "unchanged", True, True)
        if ctx.check_mode:
            return ItemReport(name, "would_change", False, True)
        done = await ctx.run(apply)
        status: ItemStatus = "changed" if done.exit_code == 0 else "failed"
        return ItemReport(name, status, False, True, done.stderr.strip()[-300:])

    return item


async def _filevault(ctx: BaselineCtx) -> ItemReport:
    # Enabling FileVault needs a user's password and hands back a recovery key: never automatic.
    state = await ctx.run(["fdesetup", "status"])
    on = "filevault is on" in state.stdout.lower()
    return ItemReport(
        "filevault",
        "unchanged" if on else "unavailable",
        on,
        on,
        "" if on else "FileVault is off: enable it interactively (fdesetup enable)",
    )


async def _no_reload(ctx: BaselineCtx) -> None:
    # launchd starts sshd per connection: the next connection reads the new config.
    return None


ITEMS: dict[str, Item] = {
    "sshd_hardening": sshd_item("/etc/ssh/sshd_config", _no_reload),
    "firewall": _toggle(
        "firewall",
        [_FW, "--getglobalstate"],
        ("enabled", "state = 1"),
        [_FW, "--setglobalstate", "on"],
    ),
    "firewall_stealth": _toggle(
        "firewall_stealth",
        [_FW, "--getstealthmode"],
        ("stealth mode enabled", "is on"),
        [_FW, "--setstealthmode", "on"],
    ),
    "gatekeeper": _toggle(
        "gatekeeper", ["spctl", "--status"], ("assessments enabled",), ["spctl", "--master-enable"]
    ),
    "filevault": _filevault,
}


_TOOLBOX = Toolbox("macos")


async def _facts(shell: CommandRunner) -> dict[str, Any]:
    """The host's facts (what a file template renders over)."""
    result = await shell.run(Command(argv=["sh", "-c", DISCOVER_SCRIPT], sudo=True))
    return parse_discover(result.stdout)


class MacosActions:
    os_name = "macos"

    async def run(
        self, verb: str, params: dict[str, Any], shell: CommandRunner, *, host_id: str
    ) -> ActionOutcome:
        ref = getattr(shell, "logs_ref", None)
        if verb.startswith("ensure_"):
            kind = verb.removeprefix("ensure_")
            return await ensure(kind, params, shell, host_id=host_id, facts=partial(_facts, shell))
        if verb == "discover":
            return await self.discover(params, shell, host_id)
        if verb == "baseline":
            return await self.baseline(params, shell, host_id)
        if verb == "reboot":
            return await self.reboot(params, shell, host_id)
        if verb in ("diagnose", "cleanup", "run_shell"):
            tool: Any = getattr(_TOOLBOX, verb)
            outcome: ActionOutcome = await tool(params, shell, host_id)
            return outcome
        if verb == "prepare":
            return ActionOutcome(
                status=ResultStatus.SUCCESS,
                logs_ref=ref,
                summary="nothing to prepare: the macOS baseline uses built-ins",
                data={"installed": [], "already_present": []},
            )
        return ActionOutcome(
            status=ResultStatus.ERROR, summary=f"unknown verb {verb!r}", error_code="UNKNOWN_ACTION"
        )

    async def discover(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str
    ) -> ActionOutcome:
        ref = getattr(shell, "logs_ref", None)
        p = posix.load_params(DiscoverParams, params)
        if isinstance(p, str):
            return posix.invalid_params(p)
        unknown = sorted(set(p.sections or ()) - set(FACT_SECTIONS))
        if unknown:
            known = list(FACT_SECTIONS)
            return posix.invalid_params(f"unknown sections {unknown}; known: {known}")
        declared, problems = readable_resources(p.resources or [], argument_problem)
        # The declared resources are read in the same round trip, after the facts.
        script = DISCOVER_SCRIPT if p.resources is None else DISCOVER_SCRIPT + OBSERVE_SCRIPT
        argv = observe_argv(script, declared, observe_args)
        result = await shell.run(Command(argv=argv, sudo=True))
        if "@@reaper:" not in result.stdout:
            return posix.error_outcome("discover", result, ref)
        facts = parse_discover(result.stdout)
        if p.sections:
            facts = {k: v for k, v in facts.items() if k in p.sections}
        if p.resources is not None:
            facts["resources"] = parse_observed(result.stdout, declared)
            if problems:
                facts["resource_problems"] = problems
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            data=facts,
            logs_ref=ref,
            summary=f"{facts.get('hostname', host_id)}: macOS "
            f"{facts.get('sw_vers', {}).get('product_version', '')}",
        )

    async def baseline(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str
    ) -> ActionOutcome:
        ref = getattr(shell, "logs_ref", None)
        b = posix.load_params(BaselineParams, params)
        if isinstance(b, str):
            return posix.invalid_params(b)
        names = list(b.items) if b.items else list(ITEMS)
        unknown = sorted(set(names) - set(ITEMS))
        if unknown:
            known = list(ITEMS)
            return posix.invalid_params(f"unknown baseline items {unknown}; known: {known}")
        ctx = BaselineCtx(shell=shell, check_mode=b.check_mode)
        reports = [await ITEMS[name](ctx) for name in names]
        return baseline_outcome(reports, check_mode=b.check_mode, ctx=ctx, logs_ref=ref)

    async def reboot(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str
    ) -> ActionOutcome:
        ref = getattr(shell, "logs_ref", None)
        r = posix.load_params(RebootParams, params)
        if isinstance(r, str):
            return posix.invalid_params(r)
        # shutdown takes minutes; the reason is a separate argv word (the broadcast message).
        minutes = f"+{(r.delay_s + 59) // 60}" if r.delay_s else "now"
        result = await shell.run(
            Command(argv=["shutdown", "-r", minutes, r.reason or "reaper reboot"], sudo=True)
        )
        if result.exit_code != 0:
            return posix.error_outcome("reboot", result, ref)
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary="reboot scheduled",
            data={"rebooting": True, "delay_s": r.delay_s},
            logs_ref=ref,
        )


ACTIONS = MacosActions()
