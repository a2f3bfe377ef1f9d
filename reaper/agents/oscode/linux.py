# ruff: noqa: E501  (shell scripts are kept on one line per statement)
"""Linux action code: discover, prepare, baseline and reboot, through any `CommandRunner`;
diagnose, cleanup and run_shell come from the POSIX toolbox (`oscode.toolbox`); `ensure_*`
from `oscode.linux_ensure` (declared resources are read by `oscode.linux_observe`).

Discover is ONE round trip: a fixed `sh -c` script (no interpolated values) prints every fact
source between section markers and Python parses them; one exec instead of Ansible's dozens
is most of why Reaper discovers faster.
"""

from __future__ import annotations

from typing import Any

from reaper.actions import BaselineParams, DiscoverParams, PrepareParams, RebootParams
from reaper.agents.base import ActionOutcome, Command, CommandRunner
from reaper.agents.oscode import posix
from reaper.agents.oscode.baseline import BaselineCtx, ItemReport, baseline_outcome
from reaper.agents.oscode.linux_args import argument_problem
from reaper.agents.oscode.linux_baseline import ITEMS, probe_host
from reaper.agents.oscode.linux_ensure import ensure
from reaper.agents.oscode.linux_observe import OBSERVE_SCRIPT, observe_args, parse_observed
from reaper.agents.oscode.linux_scripts import PM_PICK
from reaper.agents.oscode.readable import observe_argv, readable_resources
from reaper.agents.oscode.toolbox import Toolbox
from reaper.models import ResultStatus

__all__ = ["ACTIONS", "DISCOVER_SCRIPT", "FACT_SECTIONS", "LinuxActions", "parse_discover"]

DISCOVER_SCRIPT = r"""PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"; export LC_ALL=C
echo "@@reaper:os_release@@"; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
echo "@@reaper:kernel@@"; uname -r
echo "@@reaper:uname_s@@"; uname -s
echo "@@reaper:hostname@@"; uname -n
echo "@@reaper:addresses@@"
if command -v ip >/dev/null 2>&1; then ip -o addr show; else echo "#ifconfig"; ifconfig -a 2>/dev/null; fi
echo "@@reaper:cpuinfo@@"; cat /proc/cpuinfo 2>/dev/null
echo "@@reaper:nproc@@"; nproc 2>/dev/null
echo "@@reaper:meminfo@@"; grep MemTotal /proc/meminfo 2>/dev/null
echo "@@reaper:df@@"; df -P -k 2>/dev/null
echo "@@reaper:package_manager@@"
@PM_PICK@echo "$pm"
echo "@@reaper:services@@"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  echo "#systemd"; systemctl list-units --type=service --state=running --no-legend --plain 2>/dev/null
else echo "#ps"; ps -eo pid=,ppid=,comm= 2>/dev/null; fi
echo "@@reaper:ports@@"
if command -v ss >/dev/null 2>&1; then echo "#ss"; ss -H -ltnup 2>/dev/null
else for f in tcp tcp6 udp udp6; do echo "#$f"; cat /proc/net/$f 2>/dev/null; done; fi
echo "@@reaper:passwd@@"; cat /etc/passwd 2>/dev/null
echo "@@reaper:sshd@@"
if out=$(sshd -T 2>/dev/null); then echo "#sshd -T"; echo "$out"
elif [ -e /etc/ssh/sshd_config ]; then echo "#sshd_config"; cat /etc/ssh/sshd_config.d/*.conf /etc/ssh/sshd_config 2>/dev/null
else echo "#absent"; fi
echo "@@reaper:firewall@@"
if command -v nft >/dev/null 2>&1; then echo "#nft"; nft list ruleset 2>/dev/null | grep -c "hook input"
elif command -v iptables >/dev/null 2>&1; then echo "#iptables"; iptables -S INPUT 2>/dev/null
else echo "#none"; fi
echo "@@reaper:sysctl@@"
for k in net/ipv4/ip_forward kernel/randomize_va_space; do printf "%s=%s\n" "$k" "$(cat /proc/sys/$k 2>/dev/null)"; done
echo "@@reaper:auditd@@"
if command -v auditd >/dev/null 2>&1; then echo installed=1; else echo installed=0; fi
if pgrep -x auditd >/dev/null 2>&1; then echo running=1; else echo running=0; fi
"""
DISCOVER_SCRIPT = DISCOVER_SCRIPT.replace("@PM_PICK@", PM_PICK)
_PM_SCRIPT = PM_PICK + 'echo "$pm"\n'
FACT_SECTIONS = (
    "os",
    "kernel",
    "hostname",
    "addresses",
    "cpu",
    "memory_mb",
    "disks",
    "package_manager",
    "services",
    "listening_ports",
    "uid0_users",
    "sshd",
    "firewall",
    "sysctl",
    "auditd",
)
_PACKAGES = {  # what baseline items need, per package manager
    "apt-get": ("auditd", "chrony", "nftables"),
    "dnf": ("audit", "chrony", "nftables"),
    "yum": ("audit", "chrony", "nftables"),
    "zypper": ("audit", "chrony", "nftables"),
}
_INSTALL = {
    "apt-get": "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && "
    'apt-get install -y -q --no-install-recommends "$@"',
    "dnf": 'dnf install -y --setopt=exit_on_lock=True "$@"',  # fail on a held lock, not wait
    "yum": 'yum install -y --setopt=exit_on_lock=True "$@"',
    "zypper": 'zypper --non-interactive install "$@"',
}
_REBOOT = r"""PATH="$PATH:/usr/sbin:/sbin"
logger -t reaper -- "reboot requested: $2" 2>/dev/null || true
case "$(cat /proc/1/comm 2>/dev/null)" in systemd|init|openrc-init|runit) ;; *)
  echo "no init system (container or test host): refusing to reboot a shared kernel" >&2; exit 64;;
esac
nohup sh -c 'sleep "$1"; systemctl reboot 2>/dev/null || reboot' sh "$1" >/dev/null 2>&1 &
echo "reboot scheduled in $1s"
"""


_TOOLBOX = Toolbox("linux")


def _sub(sections: dict[str, str], name: str) -> tuple[str, str]:
    """(mode from a leading `#mode` line, the rest)."""
    text = sections.get(name, "")
    first, _, rest = text.partition("\n")
    return (first[1:], rest) if first.startswith("#") else ("", text)


def _ports(sections: dict[str, str]) -> list[dict[str, Any]]:
    mode, text = _sub(sections, "ports")
    if mode == "ss":
        return posix.parse_ss(text)
    ports: list[dict[str, Any]] = []
    chunk: list[str] = []
    proto = ""
    for line in (sections.get("ports", "") + "\n#end").splitlines():
        if line.startswith("#"):
            if proto:
                ports += posix.parse_proc_net("\n".join(chunk), proto)
            proto, chunk = line[1:4], []
        else:
            chunk.append(line)
    unique = {(p["proto"], p["port"]): p for p in ports}
    return sorted(unique.values(), key=lambda p: (p["proto"], p["port"]))


def parse_discover(text: str) -> dict[str, Any]:
    s = posix.split_sections(text)
    addr_mode, addr_text = _sub(s, "addresses")
    svc_mode, svc_text = _sub(s, "services")
    if svc_mode == "systemd":
        services = [ln.split()[0].removesuffix(".service") for ln in svc_text.splitlines() if ln]
    else:
        # ps: pid ppid comm; kernel threads (kthreadd, pid 2, and its children) are no services.
        procs = [ln.split(None, 2) for ln in svc_text.splitlines()]
        services = sorted({p[2] for p in procs if len(p) == 3 and "2" not in (p[0], p[1])})
    sshd_mode, sshd_text = _sub(s, "sshd")
    settings = (
        posix.parse_sshd_t(sshd_text)
        if sshd_mode == "sshd -T"
        else posix.parse_sshd_config(sshd_text)
    )
    sshd: dict[str, Any] = {k: settings[k] for k in posix.SSHD_FACT_KEYS if k in settings}
    sshd.update(installed=sshd_mode != "absent", source=sshd_mode or "unknown")
    fw_mode, fw_text = _sub(s, "firewall")
    enabled = (
        fw_text.strip() not in ("", "0")
        if fw_mode == "nft"
        else "-P INPUT DROP" in fw_text or "-A INPUT" in fw_text
    )
    sysctl = {
        k.replace("/", "."): (int(v) if v.isdigit() else None)
        for k, v in posix.parse_key_values(s.get("sysctl", "")).items()
    }
    audit = posix.parse_key_values(s.get("auditd", ""))
    # An inventory may have guessed the OS (Ansible has no such field): say what it is.
    family = "macos" if s.get("uname_s", "").strip() == "Darwin" else "linux"
    return {
        "os_family": family,
        "os": posix.parse_os_release(s.get("os_release", "")),
        "kernel": s.get("kernel", "").strip(),
        "hostname": s.get("hostname", "").strip(),
        "addresses": (
            posix.parse_ifconfig(addr_text)
            if addr_mode == "ifconfig"
            else posix.parse_ip_addr(addr_text)
        ),
        "cpu": posix.parse_cpuinfo(s.get("cpuinfo", ""), s.get("nproc", "")),
        "memory_mb": posix.parse_meminfo_mb(s.get("meminfo", "")),
        "disks": posix.parse_df(s.get("df", "")),
        "package_manager": s.get("package_manager", "").strip() or None,
        "services": services,
        "listening_ports": _ports(s),
        "uid0_users": posix.parse_uid0(s.get("passwd", "")),
        "sshd": sshd,
        "firewall": {"backend": fw_mode or "none", "enabled": fw_mode != "none" and enabled},
        "sysctl": sysctl,
        "auditd": {
            "installed": audit.get("installed") == "1",
            "enabled": audit.get("running") == "1",
        },
    }


class LinuxActions:
    """`ACTIONS` of this module: what `OsCodeRunner` calls."""

    os_name = "linux"

    async def run(
        self, verb: str, params: dict[str, Any], shell: CommandRunner, *, host_id: str
    ) -> ActionOutcome:
        if verb.startswith("ensure_"):
            return await ensure(
                verb.removeprefix("ensure_"),
                params,
                shell,
                host_id=host_id,
                facts=lambda: self._facts(shell),
            )
        handler = {
            "discover": self.discover,
            "prepare": self.prepare,
            "baseline": self.baseline,
            "reboot": self.reboot,
            "diagnose": _TOOLBOX.diagnose,
            "cleanup": _TOOLBOX.cleanup,
            "run_shell": _TOOLBOX.run_shell,
        }.get(verb)
        if handler is None:
            return ActionOutcome(
                status=ResultStatus.ERROR,
                summary=f"unknown verb {verb!r}",
                error_code="UNKNOWN_ACTION",
            )
        return await handler(params, shell, host_id)

    async def discover(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str
    ) -> ActionOutcome:
        p = posix.load_params(DiscoverParams, params)
        if isinstance(p, str):
            return posix.invalid_params(p)
        unknown = sorted(set(p.sections or ()) - set(FACT_SECTIONS))
        if unknown:
            return posix.invalid_params(f"unknown sections {unknown}; known: {list(FACT_SECTIONS)}")
        declared, problems = readable_resources(p.resources or [], argument_problem)
        # The declared resources are read in the same round trip, after the facts.
        script = DISCOVER_SCRIPT if p.resources is None else DISCOVER_SCRIPT + OBSERVE_SCRIPT
        argv = observe_argv(script, declared, observe_args)
        result = await shell.run(Command(argv=argv, sudo=True))
        ref = getattr(shell, "logs_ref", None)
        if result.exit_code != 0 and "@@reaper:" not in result.stdout:
            return posix.error_outcome("discover", result, ref)
        facts = parse_discover(result.stdout)
        if p.sections:
            facts = {k: v for k, v in facts.items() if k in p.sections}
        if p.resources is not None:
            facts["resources"] = parse_observed(result.stdout, declared)
            if problems:
                facts["resource_problems"] = problems
        name = facts.get("os", {}).get("pretty_name", "")
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary=f"{facts.get('hostname', host_id)}: {name}".strip(": "),
            data=facts,
            stderr_tail=posix.tail(result.stderr),
            logs_ref=ref,
        )

    @staticmethod
    async def _facts(shell: CommandRunner) -> dict[str, Any]:
        """The host's facts (what a file template renders over)."""
        result = await shell.run(Command(argv=["sh", "-c", DISCOVER_SCRIPT], sudo=True))
        return parse_discover(result.stdout)

    async def baseline(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str
    ) -> ActionOutcome:
        p = posix.load_params(BaselineParams, params)
        if isinstance(p, str):
            return posix.invalid_params(p)
        names = list(p.items) if p.items else list(ITEMS)
        unknown = sorted(set(names) - set(ITEMS))
        if unknown:
            return posix.invalid_params(f"unknown baseline items {unknown}; known: {list(ITEMS)}")
        ctx = BaselineCtx(shell=shell, check_mode=p.check_mode)
        await probe_host(ctx)
        reports: list[ItemReport] = [await ITEMS[name](ctx) for name in names]
        return baseline_outcome(
            reports, check_mode=p.check_mode, ctx=ctx, logs_ref=getattr(shell, "logs_ref", None)
        )

    async def prepare(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str
    ) -> ActionOutcome:
        p = posix.load_params(PrepareParams, params)
        if isinstance(p, str):
            return posix.invalid_params(p)
        ref = getattr(shell, "logs_ref", None)
        found = await shell.run(Command(argv=["sh", "-c", _PM_SCRIPT]))
        pm = found.stdout.strip() or None
        wanted: tuple[str, ...] = _PACKAGES.get(pm or "", ())
        if not wanted:
            return ActionOutcome(
                status=ResultStatus.ERROR,
                error_code="UNSUPPORTED",
                summary=f"no supported package manager (found {pm})",
                logs_ref=ref,
            )
        if p.items:
            unknown = sorted(set(p.items) - set(wanted))
            if unknown:
                return posix.invalid_params(f"unknown packages {unknown}; known: {list(wanted)}")
            wanted = tuple(p.items)
        check = await shell.run(
            Command(
                argv=[
                    "sh",
                    "-c",
                    'for p in "$@"; do '
                    'if dpkg-query -W -f="\\${Status}" "$p" 2>/dev/null | grep -q "ok installed" || '
                    'rpm -q "$p" >/dev/null 2>&1; then echo "$p"; fi; done',
                    "sh",
                    *wanted,
                ]
            )
        )
        present = set(check.stdout.split())
        missing = [w for w in wanted if w not in present]
        data: dict[str, Any] = {
            "installed": missing,
            "already_present": sorted(present),
            "package_manager": pm,
        }
        if missing:
            installed = await shell.run(
                Command(
                    argv=["sh", "-c", _INSTALL[pm or ""], "sh", *missing],
                    sudo=True,
                    timeout_s=540.0,
                )
            )
            if installed.exit_code != 0:
                return posix.error_outcome(f"{pm} install", installed, ref, data)
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            logs_ref=ref,
            data=data,
            summary=f"installed {missing}" if missing else "all present",
        )

    async def reboot(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str
    ) -> ActionOutcome:
        p = posix.load_params(RebootParams, params)
        if isinstance(p, str):
            return posix.invalid_params(p)
        ref = getattr(shell, "logs_ref", None)
        result = await shell.run(
            Command(argv=["sh", "-c", _REBOOT, "sh", str(p.delay_s), p.reason], sudo=True)
        )
        if result.exit_code == 64:
            return ActionOutcome(
                status=ResultStatus.ERROR,
                error_code="UNSUPPORTED",
                summary=result.stderr.strip(),
                logs_ref=ref,
            )
        if result.exit_code != 0:
            return posix.error_outcome("reboot", result, ref)
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary=result.stdout.strip(),
            data={"rebooting": True, "delay_s": p.delay_s},
            logs_ref=ref,
        )


ACTIONS = LinuxActions()
