# ruff: noqa: E501  (shell scripts are kept on one line per statement)
"""`linux.baseline`: the declared items, each idempotent and check-mode aware.

A host without an init system as PID 1 (a container, or a test host in a network namespace)
shares its kernel with others: items that change kernel-wide state (sysctl, the clock,
auditing) are only checked there and reported "skipped".
"""

from __future__ import annotations

from reaper.agents.base import CommandResult
from reaper.agents.oscode.baseline import (
    BaselineCtx,
    Item,
    ItemReport,
    ItemStatus,
    file_item,
    sshd_item,
)
from reaper.agents.oscode.posix import parse_key_values

__all__ = ["BANNER", "ITEMS", "PROBE", "SYSCTL_DESIRED", "probe_host"]

BANNER = (
    "Authorized use only. Activity on this system is monitored and recorded.\n"
    "Disconnect now if you are not an authorized user.\n"
)
SYSCTL_DESIRED = {
    "kernel.randomize_va_space": "2",
    "kernel.kptr_restrict": "1",
    "kernel.dmesg_restrict": "1",
}
_INITS = {"systemd", "init", "openrc-init", "runit", "s6-svscan", "busybox"}
PROBE = r"""PATH="$PATH:/usr/sbin:/sbin"
echo "init=$(cat /proc/1/comm 2>/dev/null)"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then echo systemd=1; else echo systemd=0; fi
for t in nft iptables sshd auditd chronyd ntpd sysctl; do
  if command -v "$t" >/dev/null 2>&1; then echo "has_$t=1"; else echo "has_$t=0"; fi
done
"""
_RELOAD_SSHD = r"""PATH="$PATH:/usr/sbin:/sbin"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl reload ssh 2>/dev/null || systemctl reload sshd
elif [ -s /run/sshd.pid ]; then kill -HUP "$(cat /run/sshd.pid)"
elif [ -s /var/run/sshd.pid ]; then kill -HUP "$(cat /var/run/sshd.pid)"
else echo "sshd is not running: nothing to reload"
fi
"""
_PERMS_READ = "stat -c '%a %u %g %n' /etc/ssh /etc/ssh/sshd_config /etc/ssh/ssh_host_*_key"
_PERMS_FIX = (
    "chown 0:0 /etc/ssh /etc/ssh/sshd_config /etc/ssh/ssh_host_*_key && chmod 755 /etc/ssh "
    "&& chmod 600 /etc/ssh/sshd_config /etc/ssh/ssh_host_*_key"
)
_NFT_RULESET = """table inet reaper_baseline {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iif "lo" accept
    meta l4proto { icmp, ipv6-icmp } accept
    tcp dport 22 accept
  }
}
"""
_IPT_APPLY = r"""set -e
for rule in "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT" "-i lo -j ACCEPT" \
            "-p icmp -j ACCEPT" "-p tcp --dport 22 -j ACCEPT"; do
  iptables -C INPUT $rule 2>/dev/null || iptables -A INPUT $rule
done
iptables -P INPUT DROP
"""
_SYSCTL_READ = (
    "for k in kernel/randomize_va_space kernel/kptr_restrict kernel/dmesg_restrict; "
    'do printf "%s=%s\\n" "$k" "$(cat /proc/sys/$k 2>/dev/null)"; done'
)
_SYSCTL_APPLY = r"""set -e
cat > /etc/sysctl.d/90-reaper-baseline.conf
sysctl -p /etc/sysctl.d/90-reaper-baseline.conf
"""


async def probe_host(ctx: BaselineCtx) -> None:
    result = await ctx.sh(PROBE, sudo=False)
    ctx.host = parse_key_values(result.stdout)


def _has(ctx: BaselineCtx, tool: str) -> bool:
    return ctx.host.get(f"has_{tool}") == "1"


def _shared_kernel(ctx: BaselineCtx) -> bool:
    return ctx.host.get("init", "") not in _INITS


async def _reload_sshd(ctx: BaselineCtx) -> CommandResult | None:
    return await ctx.sh(_RELOAD_SSHD)


async def ssh_permissions(ctx: BaselineCtx) -> ItemReport:
    name = "ssh_permissions"
    want = {"/etc/ssh": "755 0 0"}
    read = await ctx.sh(_PERMS_READ)
    before: dict[str, str] = {}
    for line in read.stdout.splitlines():
        mode, uid, gid, path = ([*line.split(" ", 3), "", "", ""])[:4]
        before[path] = f"{mode} {uid} {gid}"
        want.setdefault(path, "600 0 0")
    if not before:
        return ItemReport(name, "unavailable", detail="no /etc/ssh")
    if before == want:
        return ItemReport(name, "unchanged", before, before)
    if ctx.check_mode:
        return ItemReport(name, "would_change", before, want)
    fixed = await ctx.sh(_PERMS_FIX)
    if fixed.exit_code != 0:
        return ItemReport(name, "failed", before, None, fixed.stderr.strip()[-300:])
    return ItemReport(name, "changed", before, want)


async def firewall(ctx: BaselineCtx) -> ItemReport:
    name = "firewall_default"
    if _has(ctx, "nft"):
        listed = await ctx.run(["nft", "list", "table", "inet", "reaper_baseline"])
        before = "present" if listed.exit_code == 0 else "absent"
        if before == "present":
            return ItemReport(name, "unchanged", before, before, "nftables")
        if ctx.check_mode:
            return ItemReport(name, "would_change", before, "present", "nftables")
        applied = await ctx.run(["nft", "-f", "-"], stdin=_NFT_RULESET)
        status: ItemStatus = "changed" if applied.exit_code == 0 else "failed"
        return ItemReport(name, status, before, "present", "nftables " + applied.stderr.strip())
    if _has(ctx, "iptables"):
        listed = await ctx.run(["iptables", "-S", "INPUT"])
        before = "drop" if "-P INPUT DROP" in listed.stdout else "accept"
        if before == "drop" and "--dport 22 -j ACCEPT" in listed.stdout:
            return ItemReport(name, "unchanged", before, before, "iptables")
        if ctx.check_mode:
            return ItemReport(name, "would_change", before, "drop", "iptables")
        applied = await ctx.sh(_IPT_APPLY)
        status = "changed" if applied.exit_code == 0 else "failed"
        return ItemReport(name, status, before, "drop", "iptables " + applied.stderr.strip())
    return ItemReport(name, "unavailable", detail="neither nft nor iptables installed: run prepare")


def _service_item(name: str, units: tuple[str, ...], what: str) -> Item:
    async def item(ctx: BaselineCtx) -> ItemReport:
        if _shared_kernel(ctx) or ctx.host.get("systemd") != "1":
            return ItemReport(
                name,
                "skipped",
                detail=f"{what} is kernel-wide; no init system "
                "here (container or test host): checked only",
            )
        active = await ctx.run(["systemctl", "is-active", *units], sudo=False)
        states = dict(zip(units, active.stdout.split(), strict=False))
        running = [u for u, s in states.items() if s == "active"]
        if running:
            return ItemReport(name, "unchanged", running, running)
        files = await ctx.run(
            [
                "systemctl",
                "list-unit-files",
                "--no-legend",
                "--plain",
                *(f"{u}.service" for u in units),
            ],
            sudo=False,
        )
        present = [u for u in units if f"{u}.service" in files.stdout]
        if not present:
            return ItemReport(name, "unavailable", [], None, f"no {what} service: run prepare")
        if ctx.check_mode:
            return ItemReport(name, "would_change", [], [present[0]])
        enabled = await ctx.run(["systemctl", "enable", "--now", present[0]])
        status: ItemStatus = "changed" if enabled.exit_code == 0 else "failed"
        return ItemReport(name, status, [], [present[0]], enabled.stderr.strip()[-300:])

    return item


async def kernel_sysctl(ctx: BaselineCtx) -> ItemReport:
    name = "kernel_sysctl"
    read = await ctx.sh(_SYSCTL_READ, sudo=False)
    before = {k.replace("/", "."): v for k, v in parse_key_values(read.stdout).items()}
    if before == SYSCTL_DESIRED:
        return ItemReport(name, "unchanged", before, before)
    if _shared_kernel(ctx):
        return ItemReport(
            name,
            "skipped",
            before,
            dict(SYSCTL_DESIRED),
            "kernel-wide; no init system here (container or test host): checked only",
        )
    if ctx.check_mode:
        return ItemReport(name, "would_change", before, dict(SYSCTL_DESIRED))
    conf = "".join(f"{k} = {v}\n" for k, v in SYSCTL_DESIRED.items())
    applied = await ctx.sh(_SYSCTL_APPLY, stdin=conf)
    status: ItemStatus = "changed" if applied.exit_code == 0 else "failed"
    return ItemReport(name, status, before, dict(SYSCTL_DESIRED), applied.stderr.strip()[-300:])


ITEMS: dict[str, Item] = {
    "sshd_hardening": sshd_item("/etc/ssh/sshd_config", _reload_sshd),
    "ssh_permissions": ssh_permissions,
    "login_banner": file_item("login_banner", "/etc/issue.net", BANNER),
    "firewall_default": firewall,
    "time_sync": _service_item(
        "time_sync",
        ("chrony", "chronyd", "systemd-timesyncd", "ntpsec", "ntp", "ntpd"),
        "time sync",
    ),
    "auditd": _service_item("auditd", ("auditd",), "auditing"),
    "kernel_sysctl": kernel_sysctl,
}
