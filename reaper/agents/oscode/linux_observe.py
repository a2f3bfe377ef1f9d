# ruff: noqa: E501  (shell scripts are kept on one line per statement)
"""What a Linux host shows of declared resources: one fixed `sh` script reads them all.

The script never carries a value: each resource travels as two arguments (its kind, and the
name the tools know it by), and the script prints one `@@reaper:r<i>@@` section of `key=value`
lines per resource, in order. `parse_observed` turns that into `reaper.desired.diff.
reported_fields(kind)` for each resource that exists, None for one that does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reaper.agents.oscode import posix
from reaper.agents.oscode.linux_scripts import PM_PICK
from reaper.desired.base import ResourceBase
from reaper.desired.compare import normalise_mode

__all__ = ["OBSERVE_SCRIPT", "observe_args", "parse_nft_rule", "parse_observed", "parse_one"]

Props = dict[str, Any] | None

OBSERVE_SCRIPT = (
    'PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"; export LC_ALL=C\n'
    + PM_PICK
    + r"""i=0; sshd_t=; sshd_read=0
while [ $# -ge 2 ]; do
kind=$1; name=$2; shift 2
echo "@@reaper:r$i@@"; i=$((i+1))
case $kind in
package)
  case $pm in dnf|yum|zypper) db=rpm;; *) db=dpkg;; esac  # the family's own database: a host may carry both
  if [ $db = dpkg ] && command -v dpkg-query >/dev/null 2>&1; then
    s=$(dpkg-query -W -f='${db:Status-Status} ${Version}' "$name" 2>/dev/null) && case $s in "installed "*) echo "version=${s#installed }";; esac
  elif command -v rpm >/dev/null 2>&1; then
    v=$(rpm -q --qf '%{VERSION}-%{RELEASE}' "$name" 2>/dev/null) && echo "version=$v"
  fi;;
service)
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if [ "$(systemctl show -p LoadState --value "$name.service" 2>/dev/null)" = loaded ]; then
      if systemctl is-active --quiet "$name.service"; then echo running=1; else echo running=0; fi
      if systemctl is-enabled --quiet "$name.service" 2>/dev/null; then echo enabled=1; else echo enabled=0; fi
    fi
  elif [ -x "/etc/init.d/$name" ]; then
    if "/etc/init.d/$name" status >/dev/null 2>&1; then echo running=1; else echo running=0; fi
    en=0; for f in /etc/rc[2345].d/S[0-9][0-9]"$name" /etc/rc.d/rc[2345].d/S[0-9][0-9]"$name"; do [ -e "$f" ] && en=1; done; echo "enabled=$en"
  fi;;
file|directory)
  if [ -e "$name" ]; then
    stat -L --printf 'type=%F\nmode=%a\nowner=%U\ngroup=%G\n' -- "$name"
    if [ -f "$name" ]; then echo "sha256=$(sha256sum <"$name" | cut -d' ' -f1)"; fi
  fi;;
user)
  if ent=$(getent passwd "$name"); then
    echo "passwd=$ent"; echo "primary=$(id -gn "$name" 2>/dev/null)"; echo "groups=$(id -Gn "$name" 2>/dev/null)"
    sh_ent=$(getent shadow "$name"); echo "password=$(printf '%s' "$sh_ent" | cut -d: -f2 | cut -c1-2)"; echo "expire=$(printf '%s' "$sh_ent" | cut -d: -f8)"
  fi;;
group)
  if ent=$(getent group "$name"); then echo "group=$ent"; fi;;
setting)
  if v=$(sysctl -n "$name" 2>/dev/null); then echo "value=$v"; fi;;
sshd_option)
  if [ $sshd_read = 0 ]; then sshd_t=$(sshd -T 2>/dev/null); sshd_read=1; fi
  printf '%s\n' "$sshd_t" | while read -r k v; do if [ "$k" = "$name" ]; then echo "value=$v"; break; fi; done;;
firewall)
  if command -v nft >/dev/null 2>&1; then echo nft=1; nft list chain inet reaper input 2>/dev/null | grep -F "comment \"reaper:$name\"" | head -n1 | sed 's/^[[:space:]]*/rule=/'; else echo nft=0; fi;;
dns_client)
  if [ -r /etc/resolv.conf ]; then echo resolv=1; sed -n 's/^[[:space:]]*\(nameserver\|search\)[[:space:]]\{1,\}/\1=/p' /etc/resolv.conf; fi;;
package_repository)
  if [ -f "/etc/apt/sources.list.d/$name.list" ]; then
    echo format=apt; sed 's/^/line=/' "/etc/apt/sources.list.d/$name.list"
    for k in "/etc/apt/keyrings/$name.asc" "/etc/apt/keyrings/$name.gpg"; do [ -s "$k" ] && echo "keyring=$k"; done
  elif [ -f "/etc/yum.repos.d/$name.repo" ]; then
    echo format=dnf; sed 's/^/line=/' "/etc/yum.repos.d/$name.repo"
  fi;;
esac
done
"""
)


def observe_args(resource: ResourceBase) -> tuple[str, str]:
    """The (kind, name) pair the script reads a resource by."""
    name = resource.rid.name
    if resource.kind == "sshd_option":
        name = name.lower()  # sshd -T prints keywords in lower case
    return resource.kind, name


def parse_observed(text: str, resources: list[ResourceBase]) -> dict[str, Props]:
    """`KIND/NAME` → observed properties (None: absent), from the script's output."""
    sections = posix.split_sections(text)
    return {str(r.rid): parse_one(r, sections.get(f"r{i}", "")) for i, r in enumerate(resources)}


def _pairs(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        key, found, value = line.partition("=")
        if found:
            out.append((key, value))
    return out


def _package(r: ResourceBase, kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    return {"state": "present", "version": kv["version"]} if "version" in kv else None


def _service(r: ResourceBase, kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    if "running" not in kv:
        return None
    state = "running" if kv["running"] == "1" else "stopped"
    return {"state": state, "enabled": kv.get("enabled") == "1"}


def _group(r: ResourceBase, kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    fields = kv.get("group", "").split(":")
    if len(fields) < 3:
        return None
    return {"state": "present", "gid": int(fields[2]) if fields[2].isdigit() else None}


def _value(r: ResourceBase, kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    if "value" not in kv:
        return None
    return {"value": kv["value"], "type": None} if r.kind == "setting" else {"value": kv["value"]}


def _firewall(r: ResourceBase, kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    rule = kv.get("rule")
    return None if rule is None else parse_nft_rule(rule)


def _dns(r: ResourceBase, kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    return _resolv(pairs) if "resolv" in kv else None


_Parser = Callable[[ResourceBase, dict[str, str], list[tuple[str, str]]], Props]


def parse_one(resource: ResourceBase, text: str) -> Props:
    """One resource's section (its `key=value` lines) as its reported properties."""
    pairs = _pairs(text)
    parser = _PARSERS.get(resource.kind)
    return None if parser is None else parser(resource, dict(pairs), pairs)


def _path(r: ResourceBase, kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    kind = r.kind
    wanted = "directory" if kind == "directory" else "regular"
    if not kv.get("type", "").startswith(wanted):
        return None
    out: dict[str, Any] = {
        "state": "present",
        "mode": normalise_mode(kv.get("mode")),
        "owner": kv.get("owner"),
        "group": kv.get("group"),
    }
    if kind == "file":
        out["sha256"] = f"sha256:{kv.get('sha256', '')}"
    return out


def _user(r: ResourceBase, kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    fields = kv.get("passwd", "").split(":")
    if len(fields) < 7:
        return None
    primary = kv.get("primary", "")
    groups = sorted({g for g in kv.get("groups", "").split() if g != primary})
    # Disabled: expired on day 1 (how Reaper locks, `usermod -L -e 1`) or `!` before a hash
    # (locked by usermod -L or passwd -l); `!` alone only means no password is set.
    password = kv.get("password", "")
    expired = kv.get("expire") == "1"
    return {
        "state": "present",
        "uid": int(fields[2]) if fields[2].isdigit() else None,
        "groups": groups,
        "shell": fields[6],
        "home": fields[5],
        "enabled": not (expired or (password.startswith("!") and len(password) > 1)),
    }


def _resolv(pairs: list[tuple[str, str]]) -> Props:
    servers = [v.strip() for k, v in pairs if k == "nameserver"]
    search = [w for k, v in pairs if k == "search" for w in v.split()]
    return {"servers": servers, "search": search}


def parse_nft_rule(rule: str) -> dict[str, Any]:
    """A rule as `nft list chain` prints it (`ip saddr 192.0.2.0/24 tcp dport 5432 accept
    comment "reaper:db"`) as a firewall's properties."""
    words = rule.split()
    out: dict[str, Any] = {"state": "present", "port": None, "proto": "any", "source": None}
    for i, word in enumerate(words[:-1]):
        nxt = words[i + 1]
        if word in ("tcp", "udp") and nxt == "dport":
            out["proto"] = word
            port = words[i + 2] if i + 2 < len(words) else ""
            out["port"] = int(port) if port.isdigit() else port
        elif word in ("icmp", "icmpv6") and nxt == "type":
            out["proto"] = "icmp"
        elif word == "meta" and nxt == "l4proto" and i + 2 < len(words):
            out["proto"] = words[i + 2]
        elif word == "saddr":
            out["source"] = nxt
    verdict = next((w for w in words if w in ("accept", "drop", "reject")), "accept")
    out["action"] = {"accept": "allow", "reject": "deny"}.get(verdict, verdict)
    return out


def _repository(resource: ResourceBase, kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    lines = [v for k, v in pairs if k == "line"]
    if kv.get("format") == "apt":
        return _apt_source(lines, "keyring" in kv)
    if kv.get("format") == "dnf":
        return _dnf_repo(lines, resource)
    return None


def _apt_source(lines: list[str], has_key: bool) -> Props:
    key_url = None
    for line in lines:
        if line.startswith("# reaper:") and " key_url=" in line:
            key_url = line.partition(" key_url=")[2].strip() or None
    for line in lines:
        text = line.strip()
        enabled = not text.startswith("#")
        body = text.lstrip("# ").strip()
        if not body.startswith("deb "):
            continue
        words = body.split()[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) < 2:
            continue
        return {
            "state": "present",
            "format": "apt",
            "url": words[0],
            "suite": words[1],
            "components": words[2:],
            "key_url": key_url if has_key else None,
            "gpgcheck": True,
            "enabled": enabled,
        }
    return None


def _dnf_repo(lines: list[str], resource: ResourceBase) -> Props:
    kv = posix.parse_key_values("\n".join(lines))
    if "baseurl" not in kv:
        return None
    return {
        "state": "present",
        "format": "dnf",
        "url": kv["baseurl"],
        "suite": None,
        "components": list(getattr(resource, "components", ())),  # apt only: as declared
        "key_url": kv.get("gpgkey") or None,
        "gpgcheck": kv.get("gpgcheck", "1") == "1",
        "enabled": kv.get("enabled", "1") == "1",
    }


_PARSERS: dict[str, _Parser] = {
    "package": _package,
    "service": _service,
    "file": _path,
    "directory": _path,
    "user": _user,
    "group": _group,
    "setting": _value,
    "sshd_option": _value,
    "firewall": _firewall,
    "dns_client": _dns,
    "package_repository": _repository,
}
