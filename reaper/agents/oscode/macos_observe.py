# ruff: noqa: E501  (shell scripts are kept on one line per statement)
"""What a macOS host shows of declared resources: one fixed `sh` script reads them all.

As on Linux (`linux_observe`), each resource travels as two arguments (its kind, and the name
the tools know it by) and the script prints one `@@reaper:r<i>@@` section of `key=value` lines
per resource; `parse_observed` turns them into `reported_fields(kind)`, None when absent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reaper.agents.oscode import linux_observe, posix
from reaper.agents.oscode.macos_scripts import BREW, HEAD
from reaper.desired.base import ResourceBase

__all__ = ["OBSERVE_SCRIPT", "observe_args", "parse_observed", "parse_one", "parse_pf_rule"]

Props = dict[str, Any] | None

# brew is looked up (and its owner found) only when a package is declared: a host without
# Homebrew still reports its other resources.
OBSERVE_SCRIPT = (
    HEAD
    + r"""i=0; brew_ready=0; sshd_t=; sshd_read=0
while [ $# -ge 2 ]; do
kind=$1; name=$2; shift 2
echo "@@reaper:r$i@@"; i=$((i+1))
case $kind in
package)
  if [ $brew_ready = 0 ]; then brew_ready=2; if command -v brew >/dev/null 2>&1; then brew_ready=1; fi; fi
  if [ $brew_ready = 1 ]; then
    if v=$( (
"""
    + BREW
    + r"""run_brew list --versions "$name") 2>/dev/null); then echo "versions=$v"; fi
  else echo brew=0; fi;;
service)
  plist=
  # shellcheck disable=SC2086  # a list of directories without spaces
  for d in ${REAPER_LAUNCHD_DIRS:-/Library/LaunchDaemons /System/Library/LaunchDaemons}; do if [ -f "$d/$name.plist" ]; then plist=$d/$name.plist; break; fi; done
  if out=$(launchctl print "system/$name" 2>/dev/null); then
    echo loaded=1; printf '%s\n' "$out" | sed -n 's/^[[:space:]]*state = \(.*\)$/state=\1/p' | head -n1
  elif [ -n "$plist" ]; then echo loaded=0; fi
  if [ -n "$out" ] || [ -n "$plist" ]; then
    launchctl print-disabled system 2>/dev/null | N=$name awk -F'"' '$2 == ENVIRON["N"] {print "disabled=" $3}' | head -n1
  fi;;
setting)
  domain=${name%/*}; key=${name##*/}
  if v=$(defaults read "$domain" "$key" 2>/dev/null); then
    printf 'value=%s\n' "$(printf '%s' "$v" | tr '\n' ' ')"; t=$(defaults read-type "$domain" "$key" 2>/dev/null); echo "type=${t#Type is }"
  fi;;
user)
  if dscl . -read "/Users/$name" UniqueID >/dev/null 2>&1; then
    # one attribute a call: a user made by dscl has no AuthenticationAuthority, and asking
    # for a missing key fails the whole read
    for a in UniqueID UserShell NFSHomeDirectory AuthenticationAuthority; do dscl . -read "/Users/$name" "$a" 2>/dev/null; done |
      awk '/^[A-Za-z]+:/ {k = $1; sub(/:$/, "", k); v = $0; sub(/^[^:]*:[ ]?/, "", v); if (v != "") print "dscl." k "=" v; next} {sub(/^[ ]+/, ""); print "dscl." k "=" $0}'
    echo "primary=$(id -gn "$name" 2>/dev/null)"; echo "groups=$(id -Gn "$name" 2>/dev/null)"
  fi;;
group)
  if out=$(dscl . -read "/Groups/$name" PrimaryGroupID 2>/dev/null); then echo "gid=$(printf '%s\n' "$out" | awk '{print $NF}' | head -n1)"; fi;;
sshd_option)
  if [ $sshd_read = 0 ]; then sshd_t=$(sshd -T -f "${REAPER_SSHD_CONFIG:-/etc/ssh/sshd_config}" 2>/dev/null); sshd_read=1; fi
  printf '%s\n' "$sshd_t" | while read -r k v; do if [ "$k" = "$name" ]; then echo "value=$v"; break; fi; done;;
file|directory)
  if [ -e "$name" ]; then
    stat -L -f 'type=%HT%nmode=%Lp%nowner=%Su%ngroup=%Sg' "$name" | awk 'NR == 1 {print tolower($0); next} {print}'
    if [ -f "$name" ]; then echo "sha256=$(shasum -a 256 <"$name" | cut -d' ' -f1)"; fi
  fi;;
firewall)
  if command -v pfctl >/dev/null 2>&1; then echo pf=1; pfctl -a com.apple/reaper -s rules 2>/dev/null | grep -F "label \"reaper:$name\"" | head -n1 | sed 's/^/rule=/'; else echo pf=0; fi;;
dns_client)
  if command -v networksetup >/dev/null 2>&1; then
    if [ "$name" = default ]; then s=$(networksetup -listallnetworkservices | sed 1d | grep -v '^\*' | head -n1); else s=$name; fi
    if [ -n "$s" ] && out=$(networksetup -getdnsservers "$s" 2>/dev/null); then
      echo "service=$s"; printf '%s\n' "$out" | sed 's/^/server=/'
      networksetup -getsearchdomains "$s" 2>/dev/null | sed 's/^/search=/'
    fi
  fi;;
esac
done
"""
)


def observe_args(resource: ResourceBase) -> tuple[str, str]:
    """The (kind, name) pair the script reads a resource by."""
    if resource.kind == "sshd_option":
        return resource.kind, resource.rid.name.lower()  # sshd -T prints keywords in lower case
    return resource.kind, resource.rid.name


def parse_observed(text: str, resources: list[ResourceBase]) -> dict[str, Props]:
    """`KIND/NAME` → observed properties (None: absent), from the script's output."""
    sections = posix.split_sections(text)
    return {str(r.rid): parse_one(r, sections.get(f"r{i}", "")) for i, r in enumerate(resources)}


def _pairs(text: str) -> list[tuple[str, str]]:
    return [(k, v) for k, found, v in (ln.partition("=") for ln in text.splitlines()) if found]


def _package(kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    words = kv.get("versions", "").split()  # `tree 2.1.0 2.1.1`: the newest is last
    return {"state": "present", "version": words[-1]} if len(words) > 1 else None


def _service(kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    if "loaded" not in kv:
        return None
    running = kv.get("state") == "running"
    # print-disabled says `=> disabled` (macOS 11+) or `=> true` (older) for a disabled job.
    disabled = kv.get("disabled", "").replace("=>", "").strip() in ("disabled", "true")
    return {"state": "running" if running else "stopped", "enabled": not disabled}


_TYPES = {"boolean": "bool", "integer": "int", "float": "float", "string": "string"}


def _setting(kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    if "value" not in kv:
        return None
    kind = kv.get("type", "")
    return {"value": kv["value"].strip(), "type": _TYPES.get(kind, kind or None)}


def _user(kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    uid = kv.get("dscl.UniqueID")
    if uid is None:
        return None
    primary = kv.get("primary", "")
    authority = " ".join(v for k, v in pairs if k == "dscl.AuthenticationAuthority")
    return {
        "state": "present",
        "uid": int(uid) if uid.isdigit() else None,
        "groups": sorted({g for g in kv.get("groups", "").split() if g != primary}),
        "shell": kv.get("dscl.UserShell"),
        "home": kv.get("dscl.NFSHomeDirectory"),
        "enabled": ";DisabledUser;" not in authority,
    }


def _group(kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    gid = kv.get("gid")
    if gid is None:
        return None
    return {"state": "present", "gid": int(gid) if gid.isdigit() else None}


def _sshd(kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    return {"value": kv["value"]} if "value" in kv else None


def parse_pf_rule(rule: str) -> dict[str, Any]:
    """A rule as `pfctl -s rules` prints it (`pass in quick proto tcp from 10.0.0.0/24 to any
    port = 5432 flags S/SA keep state label "reaper:db"`) as a firewall's properties."""
    words = rule.split()
    out: dict[str, Any] = {"state": "present", "port": None, "proto": "any", "source": None}
    for i, word in enumerate(words[:-1]):
        nxt = words[i + 1]
        if word == "proto":
            out["proto"] = nxt
        elif word == "from" and nxt != "any":
            out["source"] = nxt
        elif word == "port":
            port = words[i + 2] if nxt == "=" and i + 2 < len(words) else nxt
            out["port"] = int(port) if port.isdigit() else port.replace(":", "-")
    if words and words[0] == "pass":
        out["action"] = "allow"
    else:
        out["action"] = "deny" if len(words) > 1 and words[1] == "return" else "drop"
    return out


def _firewall(kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    rule = kv.get("rule")
    return None if rule is None else parse_pf_rule(rule)


def _dns(kv: dict[str, str], pairs: list[tuple[str, str]]) -> Props:
    if "service" not in kv:
        return None
    # networksetup prints a sentence, not an address, when none is set.
    servers = [v for k, v in pairs if k == "server" and " " not in v.strip()]
    search = [v for k, v in pairs if k == "search" and " " not in v.strip()]
    return {"servers": servers, "search": search}


_Parser = Callable[[dict[str, str], list[tuple[str, str]]], Props]
_PARSERS: dict[str, _Parser] = {
    "package": _package,
    "service": _service,
    "setting": _setting,
    "user": _user,
    "group": _group,
    "dns_client": _dns,
    "sshd_option": _sshd,
    "firewall": _firewall,
}


def parse_one(resource: ResourceBase, text: str) -> Props:
    """One resource's section (its `key=value` lines) as its reported properties."""
    pairs = _pairs(text)
    if resource.kind in ("file", "directory"):
        return linux_observe.parse_one(resource, text)  # the type is lower-cased to match
    parser = _PARSERS.get(resource.kind)
    return None if parser is None else parser(dict(pairs), pairs)
