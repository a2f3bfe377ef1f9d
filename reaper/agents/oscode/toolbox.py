# ruff: noqa: E501  (shell scripts are kept on one line per statement)
"""The POSIX toolbox actions: `diagnose` (read-only), `cleanup` and `run_shell`, on Linux and macOS.

Each is ONE round trip: a fixed `sh -c` script whose values arrive as positional arguments
(never spliced into the text), printing sections between `@@reaper:NAME@@` markers that Python
parses into a report per topic and a few findings a planner can act on (a full disk, a held
package-manager lock, a failed service, a name that does not resolve).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from reaper.actions import DIAGNOSE_TOPICS, CleanupParams, DiagnoseParams, RunShellParams
from reaper.agents.base import ActionOutcome, Command, CommandRunner
from reaper.agents.oscode import posix
from reaper.agents.oscode.linux_scripts import PM_PICK
from reaper.models import ResultStatus

__all__ = ["Toolbox", "cleanup_findings", "diagnose_findings"]

Flavour = Literal["linux", "macos"]

_HEAD = r"""PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin:/opt/homebrew/bin:/usr/local/bin"; export LC_ALL=C
topics=$1; svc=$2; target=$3; port=$4; n=$5
has() { case ",$topics," in *",$1,"*) return 0;; esac; return 1; }
"""
_PORT_CHECK = r"""if [ -n "$target" ] && [ -n "$port" ]; then echo "#port"
  if command -v nc >/dev/null 2>&1; then if nc -z -w 5 "$target" "$port" >/dev/null 2>&1; then echo "open $target:$port"; else echo "closed $target:$port"; fi
  elif command -v python3 >/dev/null 2>&1; then python3 -c 'import socket,sys
try: socket.create_connection((sys.argv[1], int(sys.argv[2])), 5).close(); print("open %s:%s" % tuple(sys.argv[1:3]))
except OSError as e: print("closed %s:%s (%s)" % (sys.argv[1], sys.argv[2], e))' "$target" "$port"
  else echo "unknown $target:$port (no nc or python3)"; fi
fi
"""
_DIAGNOSE: dict[Flavour, str] = {
    "linux": _HEAD
    + r"""if has disk; then echo "@@reaper:disk@@"; df -P -k 2>&1; echo "#inodes"; df -P -i 2>&1; fi
if has packages; then echo "@@reaper:packages@@"
@PM_PICK@  echo "manager: $pm"
  echo "#repositories"; cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources /etc/yum.repos.d/*.repo 2>/dev/null | grep -v '^[[:space:]]*#' | grep -v '^[[:space:]]*$' | head -n 60
  echo "#lock"; pgrep -a -x 'apt|apt-get|aptitude|dpkg|dnf|yum|zypper|unattended-upgr' 2>/dev/null | head -n 10
  for f in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock; do if [ -e "$f" ] && command -v fuser >/dev/null 2>&1 && who=$(fuser "$f" 2>/dev/null) && [ -n "$who" ]; then echo "held $f by pid$who"; fi; done
  for f in /var/lib/dnf/rpmdb_lock.pid /var/cache/dnf/metadata_lock.pid /var/cache/dnf/download_lock.pid; do if [ -s "$f" ] && who=$(cat "$f") && [ -d "/proc/$who" ]; then echo "held $f by pid $who"; fi; done
  echo "#broken"; if command -v dpkg >/dev/null 2>&1; then dpkg --audit 2>&1 | head -n 20; fi
fi
if has service && [ -n "$svc" ]; then echo "@@reaper:service@@"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    echo "#state $(systemctl is-active -- "$svc" 2>/dev/null)"; systemctl status --no-pager -l -n 0 -- "$svc" 2>&1 | head -n 20
    echo "#log"; journalctl -u "$svc" -n "$n" --no-pager 2>&1 | tail -n "$n"
  else
    if [ -x "/etc/init.d/$svc" ]; then out=$("/etc/init.d/$svc" status 2>&1); rc=$?; elif command -v service >/dev/null 2>&1; then out=$(service "$svc" status 2>&1); rc=$?; else out="no init script for $svc"; rc=4; fi
    if [ $rc -eq 0 ]; then echo "#state active"; elif [ $rc -eq 4 ]; then echo "#state unknown"; else echo "#state inactive"; fi; printf '%s\n' "$out" | head -n 20
    echo "#log"; for f in "/var/log/$svc.log" "/var/log/$svc/error.log" "/var/log/$svc/$svc.log"; do if [ -r "$f" ]; then echo "==> $f"; tail -n "$n" "$f"; fi; done
    for f in /var/log/syslog /var/log/messages /var/log/daemon.log; do if [ -r "$f" ]; then echo "==> $f"; grep -F -- "$svc" "$f" 2>/dev/null | tail -n "$n"; fi; done
  fi
fi
if has network; then echo "@@reaper:network@@"
  if command -v ip >/dev/null 2>&1; then ip -o addr show 2>&1; echo "#routes"; ip route 2>&1; else ifconfig -a 2>&1; fi
  echo "#resolvers"; grep -v '^#' /etc/resolv.conf 2>&1
  echo "#listening"; if command -v ss >/dev/null 2>&1; then ss -H -ltnu 2>&1; else cat /proc/net/tcp 2>&1 | head -n 40; fi
  if [ -n "$target" ]; then echo "#resolve"; getent hosts -- "$target" || echo "unresolved $target"; fi
"""
    + _PORT_CHECK
    + r"""fi
if has time; then echo "@@reaper:time@@"; date -u '+%Y-%m-%dT%H:%M:%SZ'
  if command -v timedatectl >/dev/null 2>&1; then timedatectl 2>&1 | head -n 12; fi
  if command -v chronyc >/dev/null 2>&1; then echo "#chrony"; chronyc tracking 2>&1 | head -n 12; fi
fi
if has processes; then echo "@@reaper:processes@@"; ps -eo pid,user,%cpu,%mem,etime,comm --sort=-%cpu 2>/dev/null | head -n 16 || ps -eo pid,user,comm | head -n 16; fi
""",
    "macos": _HEAD
    + r"""if has disk; then echo "@@reaper:disk@@"; df -P -k 2>&1; echo "#inodes"; df -i 2>&1; fi
if has packages; then echo "@@reaper:packages@@"
  if command -v brew >/dev/null 2>&1; then echo "manager: brew"; echo "#repositories"; brew tap 2>&1 | head -n 30; else echo "manager: none"; fi
  echo "#lock"; pgrep -l -x 'brew|softwareupdate|installer' 2>/dev/null | head -n 10
fi
if has service && [ -n "$svc" ]; then echo "@@reaper:service@@"
  if out=$(launchctl print "system/$svc" 2>&1); then echo "#state active"; else echo "#state inactive"; fi; printf '%s\n' "$out" | head -n 20
  echo "#log"; log show --last 1h --style compact --predicate "process == \"$svc\"" 2>&1 | tail -n "$n"
fi
if has network; then echo "@@reaper:network@@"; ifconfig -a 2>&1 | head -n 80; echo "#routes"; netstat -rn 2>&1 | head -n 30
  echo "#resolvers"; scutil --dns 2>&1 | grep nameserver | sort -u
  echo "#listening"; lsof -nP -iTCP -sTCP:LISTEN 2>&1 | head -n 40
  if [ -n "$target" ]; then echo "#resolve"; dscacheutil -q host -a name "$target" 2>&1 | grep -q address && dscacheutil -q host -a name "$target" | head -n 4 || echo "unresolved $target"; fi
"""
    + _PORT_CHECK
    + r"""fi
if has time; then echo "@@reaper:time@@"; date -u '+%Y-%m-%dT%H:%M:%SZ'; systemsetup -getusingnetworktime 2>&1 | head -n 2; fi
if has processes; then echo "@@reaper:processes@@"; ps -Ao pid,user,%cpu,%mem,etime,comm -r 2>&1 | head -n 16; fi
""",
}
_DIAGNOSE["linux"] = _DIAGNOSE["linux"].replace("@PM_PICK@", PM_PICK)

# cleanup: $1 targets, $2 days, $3 "1" for check mode. Prints `TARGET FILES BYTES` per target.
_CLEANUP: dict[Flavour, str] = {
    "linux": r"""PATH="$PATH:/usr/sbin:/sbin"; export LC_ALL=C
targets=$1; days=$2; check=$3
has() { case ",$targets," in *",$1,"*) return 0;; esac; return 1; }
sizes() { awk '{n++; s+=$1} END {printf "%d %d\n", n, s}'; }
if has package_cache; then
  for d in /var/cache/apt/archives /var/cache/dnf /var/cache/yum; do [ -d "$d" ] || continue
    printf 'package_cache %s\n' "$(find "$d" -xdev -type f \( -name '*.deb' -o -name '*.rpm' \) -printf '%s\n' 2>/dev/null | sizes)"
    if [ "$check" != 1 ]; then case $d in *apt*) apt-get clean ;; *dnf*) dnf clean packages >/dev/null ;; *yum*) yum clean packages >/dev/null ;; esac; fi
  done
fi
if has temp; then
  printf 'temp %s\n' "$(find /tmp /var/tmp -xdev -type f -mtime +"$days" -printf '%s\n' 2>/dev/null | sizes)"
  [ "$check" = 1 ] || find /tmp /var/tmp -xdev -type f -mtime +"$days" -delete 2>/dev/null
fi
if has old_logs; then
  printf 'old_logs %s\n' "$(find /var/log -xdev -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -mtime +"$days" -printf '%s\n' 2>/dev/null | sizes)"
  if [ "$check" != 1 ]; then find /var/log -xdev -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -mtime +"$days" -delete 2>/dev/null
    if [ -d /run/systemd/system ] && command -v journalctl >/dev/null 2>&1; then journalctl --vacuum-time="${days}d" >/dev/null 2>&1; fi; fi
fi
exit 0
""",
    "macos": r"""export LC_ALL=C
targets=$1; days=$2; check=$3
has() { case ",$targets," in *",$1,"*) return 0;; esac; return 1; }
sizes() { awk '{n++; s+=$1} END {printf "%d %d\n", n, s}'; }
if has package_cache && command -v brew >/dev/null 2>&1; then d=$(brew --cache 2>/dev/null)
  if [ -n "$d" ] && [ -d "$d" ]; then printf 'package_cache %s\n' "$(find "$d" -type f -exec stat -f %z {} + 2>/dev/null | sizes)"
    [ "$check" = 1 ] || brew cleanup -s >/dev/null 2>&1; fi
fi
if has temp; then printf 'temp %s\n' "$(find /private/tmp /private/var/tmp -xdev -type f -mtime +"$days" -exec stat -f %z {} + 2>/dev/null | sizes)"
  [ "$check" = 1 ] || find /private/tmp /private/var/tmp -xdev -type f -mtime +"$days" -delete 2>/dev/null; fi
if has old_logs; then printf 'old_logs %s\n' "$(find /private/var/log -xdev -type f \( -name '*.gz' -o -name '*.bz2' -o -name '*.[0-9]' \) -mtime +"$days" -exec stat -f %z {} + 2>/dev/null | sizes)"
  [ "$check" = 1 ] || find /private/var/log -xdev -type f \( -name '*.gz' -o -name '*.bz2' -o -name '*.[0-9]' \) -mtime +"$days" -delete 2>/dev/null; fi
exit 0
""",
}
_REPORT_CHARS = 4000
_FULL_PCT = 90
_DF_USE = re.compile(r"\s(\d{1,3})%\s+(\S.*)$")


def diagnose_findings(report: dict[str, str], service: str | None, target: str | None) -> list[str]:
    """A few one-line findings from a diagnose report (pure, so it is tested without a host)."""
    found: list[str] = []
    disk = report.get("disk", "")
    for line in disk.split("#inodes")[0].splitlines()[1:]:
        m = _DF_USE.search(line)
        if m and int(m.group(1)) >= _FULL_PCT:
            found.append(f"disk {m.group(2)} is {m.group(1)}% full")
    for line in disk.partition("#inodes")[2].splitlines()[1:]:
        m = _DF_USE.search(line)
        if m and int(m.group(1)) >= _FULL_PCT:
            found.append(f"inodes on {m.group(2)} {m.group(1)}% used")
    lock = _part(report.get("packages", ""), "#lock", "#broken")
    holders = [line.strip() for line in lock.splitlines() if line.strip()]
    if holders:
        found.append(f"package manager busy: {holders[0]}")
    broken = report.get("packages", "").partition("#broken")[2].strip()
    if broken:
        found.append(f"broken packages: {broken.splitlines()[0][:120]}")
    state = re.search(r"^#state (\S+)", report.get("service", ""), re.M)
    if service and state and state.group(1) not in ("active", "unknown"):
        found.append(f"service {service} is {state.group(1)}")
    network = report.get("network", "")
    if target and f"unresolved {target}" in network:
        found.append(f"{target} does not resolve")
    closed = re.search(r"^closed (\S+)", network, re.M)
    if closed:
        found.append(f"port {closed.group(1)} is closed")
    return found


def cleanup_findings(stdout: str) -> dict[str, dict[str, int]]:
    """`TARGET FILES BYTES` lines → {target: {files, bytes}} (summed over cache dirs)."""
    totals: dict[str, dict[str, int]] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            entry = totals.setdefault(parts[0], {"files": 0, "bytes": 0})
            entry["files"] += int(parts[1])
            entry["bytes"] += int(parts[2])
    return totals


def _sh(script: str, *args: str, t: float = 60.0) -> Command:
    """A fixed script with its values as positional arguments ($1…), run with sudo."""
    return Command(argv=["sh", "-c", script, "sh", *args], sudo=True, timeout_s=t)


def _part(text: str, start: str, end: str) -> str:
    return text.partition(start)[2].partition(end)[0]


class Toolbox:
    """diagnose, cleanup and run_shell for one POSIX flavour."""

    def __init__(self, flavour: Flavour) -> None:
        self.flavour = flavour

    async def diagnose(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str
    ) -> ActionOutcome:
        p = posix.load_params(DiagnoseParams, params)
        if isinstance(p, str):
            return posix.invalid_params(p)
        topics = list(p.topics or DIAGNOSE_TOPICS)
        args = [
            ",".join(topics),
            p.service or "",
            p.target or "",
            str(p.port or ""),
            str(p.log_lines),
        ]
        result = await shell.run(_sh(_DIAGNOSE[self.flavour], *args))
        ref = getattr(shell, "logs_ref", None)
        if result.exit_code != 0 and "@@reaper:" not in result.stdout:
            return posix.error_outcome("diagnose", result, ref)
        sections = posix.split_sections(result.stdout)
        report = {name: posix.tail(text.strip(), _REPORT_CHARS) for name, text in sections.items()}
        if "service" in topics and not p.service:
            report["service"] = "no service named: pass `service` to see its status and log"
        findings = diagnose_findings(report, p.service, p.target)
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary=f"diagnose {host_id}: " + ("; ".join(findings) or "nothing abnormal found"),
            data={"topics": topics, "report": report, "findings": findings},
            stderr_tail=posix.tail(result.stderr),
            logs_ref=ref,
        )

    async def cleanup(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str
    ) -> ActionOutcome:
        p = posix.load_params(CleanupParams, params)
        if isinstance(p, str):
            return posix.invalid_params(p)
        targets = list(p.targets or ("package_cache", "temp", "old_logs"))
        check = "1" if p.check_mode else "0"
        result = await shell.run(
            _sh(_CLEANUP[self.flavour], ",".join(targets), str(p.older_than_days), check, t=280.0)
        )
        ref = getattr(shell, "logs_ref", None)
        if result.exit_code != 0:
            return posix.error_outcome("cleanup", result, ref)
        totals = cleanup_findings(result.stdout)
        freed = sum(t["bytes"] for t in totals.values())
        verb = "would free" if p.check_mode else "freed"
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary=f"cleanup {host_id}: {verb} {freed / 1_048_576:.1f} MiB "
            f"in {sum(t['files'] for t in totals.values())} files",
            data={"targets": totals, "check_mode": p.check_mode, "changed": freed > 0},
            logs_ref=ref,
        )

    async def run_shell(
        self, params: dict[str, Any], shell: CommandRunner, host_id: str
    ) -> ActionOutcome:
        p = posix.load_params(RunShellParams, params)
        if isinstance(p, str):
            return posix.invalid_params(p)
        result = await shell.run(
            Command(argv=["sh", "-c", p.command], sudo=True, timeout_s=float(p.timeout_s))
        )
        ref = getattr(shell, "logs_ref", None)
        if result.exit_code != 0:
            return posix.error_outcome("run_shell", result, ref, {"exit_code": result.exit_code})
        return ActionOutcome(
            status=ResultStatus.SUCCESS,
            summary=f"run_shell on {host_id}: exit 0",
            data={"exit_code": 0},
            stdout_tail=posix.tail(result.stdout),
            stderr_tail=posix.tail(result.stderr),
            logs_ref=ref,
        )
