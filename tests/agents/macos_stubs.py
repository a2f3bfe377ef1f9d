# ruff: noqa: E501  (stub tools are shell text)
"""A sandbox of fake macOS tools for running `macos_scripts` under /bin/sh on Linux.

Each stub keeps its state in files under $STUB_STATE and prints what the real tool prints
(formats from the man pages and real sessions: `brew list --versions`, `launchctl print`,
`defaults read-type`, `dscl . -read`, `dseditgroup -o checkmember`, `networksetup`). Only the
subcommands the scripts use exist; any other call fails loudly so a script change shows.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["Sandbox"]

_SUDO = r"""#!/bin/sh
# sudo -u USER -H -- cmd...: run cmd as USER (the stub id reads STUB_AS)
[ "$1" = -u ] || { echo "stub sudo: unexpected $*" >&2; exit 2; }
user=$2; shift 2
while [ $# -gt 0 ]; do case $1 in -H) shift;; --) shift; break;; *) break;; esac; done
STUB_AS=$user exec "$@"
"""

_ID = r"""#!/bin/sh
ds=$STUB_STATE/ds
case $1 in
-un) echo "${STUB_AS:-root}";;
-gn) [ -d "$ds/Users/$2" ] || { echo "id: $2: no such user" >&2; exit 1; }
  pg=$(cat "$ds/Users/$2/PrimaryGroupID")
  for g in "$ds"/Groups/*; do [ "$(cat "$g/PrimaryGroupID" 2>/dev/null)" = "$pg" ] && { basename "$g"; exit 0; }; done; echo "$pg";;
-Gn) [ -d "$ds/Users/$2" ] || { echo "id: $2: no such user" >&2; exit 1; }
  out=$("$0" -gn "$2")
  for g in "$ds"/Groups/*; do [ -f "$g/GroupMembership" ] && grep -qx -- "$2" "$g/GroupMembership" && out="$out $(basename "$g")"; done; echo "$out";;
*) echo "stub id: unexpected $*" >&2; exit 2;;
esac
"""

_STAT = r"""#!/bin/sh
# BSD stat's -f formats the scripts use, answered with GNU stat (brew's owner from the state)
g=/usr/bin/stat
case "$1 $2 $3" in
"-L -f %Su") cat "$STUB_STATE/brew_owner";;
"-L -f type=%HT%nmode=%Lp%nowner=%Su%ngroup=%Sg") p=$4
  case $($g -L -c %F "$p") in "regular file"|"regular empty file") t="Regular File";; directory) t=Directory;; *) t=Other;; esac
  printf 'type=%s\nmode=%s\nowner=%s\ngroup=%s\n' "$t" "$($g -L -c %a "$p")" "$($g -L -c %U "$p")" "$($g -L -c %G "$p")";;
"-f %Lp "*) $g -c %a "$3";;
"-f %Su:%Sg "*) $g -c %U:%G "$3";;
*) echo "stub stat: unexpected $*" >&2; exit 2;;
esac
"""

_BREW = r"""#!/bin/sh
st=$STUB_STATE/brew; mkdir -p "$st/installed"
echo "${STUB_AS:-root} $*" >>"$STUB_STATE/brew.log"
if [ "$(id -un)" = root ]; then echo "Error: Running Homebrew as root is extremely dangerous and no longer supported." >&2; echo "As Homebrew does not drop privileges on installation you would be giving all" >&2; exit 1; fi
if [ -f "$STUB_STATE/disk_full" ]; then echo "Error: No space left on device @ rb_sysopen - /opt/homebrew/Cellar/.keep" >&2; exit 1; fi
if [ -f "$STUB_STATE/brew_locked" ]; then echo "Error: Another active Homebrew process is already using /opt/homebrew/Cellar." >&2; exit 1; fi
cmd=$1; shift
case $cmd in
list) [ "$1" = --versions ] || exit 2; f="$st/installed/$(echo "$2" | tr / %)"; [ -f "$f" ] || exit 1; echo "${2##*/} $(cat "$f")";;
install) f="$st/installed/$(echo "$1" | tr / %)"
  v=$(awk -v n="$1" '$1 == n {print $2}' "$STUB_STATE/brew_available")
  if [ -z "$v" ]; then echo "Warning: No available formula with the name \"$1\"." >&2; echo "==> Searching for similarly named formulae and casks..." >&2; echo "Error: No formulae or casks found for $1." >&2; exit 1; fi
  if [ -f "$f" ]; then echo "Warning: $1 $v is already installed and up-to-date."; exit 0; fi
  echo "==> Pouring $1--$v.arm64_sonoma.bottle.tar.gz"; echo "🍺  /opt/homebrew/Cellar/$1/$v: 8 files, 172.1KB"; echo "$v" >"$f";;
uninstall) f="$st/installed/$(echo "$1" | tr / %)"
  [ -f "$f" ] || { echo "Error: No such keg: /opt/homebrew/Cellar/$1" >&2; exit 1; }
  echo "Uninstalling /opt/homebrew/Cellar/$1/$(cat "$f")... (8 files, 172.1KB)"; rm -f "$f";;
*) echo "stub brew: unexpected $cmd" >&2; exit 2;;
esac
"""

_LAUNCHCTL = r"""#!/bin/sh
st=$STUB_STATE/launchd; mkdir -p "$st/loaded" "$st/disabled"
echo "$*" >>"$STUB_STATE/launchctl.log"
label() { echo "${1#system/}"; }
case $1 in
print) l=$(label "$2"); [ -f "$st/loaded/$l" ] || { echo "Could not find service \"$l\" in domain for system" >&2; exit 113; }
  printf '%s = {\n\tactive count = 1\n\tpath = /Library/LaunchDaemons/%s.plist\n\ttype = LaunchDaemon\n\tstate = %s\n\n\tprogram = /usr/local/bin/%s\n' "$2" "$l" "$(cat "$st/loaded/$l")" "$l"
  [ "$(cat "$st/loaded/$l")" = running ] && printf '\tpid = 4242\n'; echo "}";;
print-disabled) echo "disabled services = {"; for f in "$st"/disabled/*; do [ -f "$f" ] && printf '\t"%s" => %s\n' "$(basename "$f")" "$(cat "$f")"; done; echo "}";;
enable) echo enabled >"$st/disabled/$(label "$2")";;
disable) echo disabled >"$st/disabled/$(label "$2")";;
bootstrap) l=$(basename "$3" .plist)
  [ -f "$3" ] || { echo "Bootstrap failed: 2: No such file or directory" >&2; exit 2; }
  [ "$(cat "$st/disabled/$l" 2>/dev/null)" = disabled ] && { echo "Bootstrap failed: 119: Service is disabled" >&2; exit 119; }
  [ -f "$st/loaded/$l" ] && { echo "Bootstrap failed: 5: Input/output error" >&2; exit 5; }
  if grep -q broken "$3"; then echo "Bootstrap failed: 5: Input/output error" >&2; exit 5; fi
  echo running >"$st/loaded/$l";;
bootout) l=$(label "$2"); [ -f "$st/loaded/$l" ] || { echo "Boot-out failed: 3: No such process" >&2; exit 3; }; rm -f "$st/loaded/$l";;
kickstart) [ "$2" = -k ] && shift; l=$(label "$2"); [ -f "$st/loaded/$l" ] || { echo "Could not find service \"$l\" in domain for system" >&2; exit 113; }; echo running >"$st/loaded/$l";;
*) echo "stub launchctl: unexpected $*" >&2; exit 2;;
esac
"""

_DEFAULTS = r"""#!/bin/sh
st=$STUB_STATE/defaults; mkdir -p "$st"
f="$st/$(printf '%s' "$2" | tr / %)--$(printf '%s' "$3" | tr / %)"
missing() { printf '\nThe domain/default pair of (%s, %s) does not exist\n' "$1" "$2" >&2; exit 1; }
case $1 in
read) [ -f "$f" ] || missing "$2" "$3"; sed 1d "$f";;
read-type) [ -f "$f" ] || missing "$2" "$3"; echo "Type is $(head -n1 "$f")";;
write) [ $# -eq 5 ] || { echo "stub defaults: unexpected $*" >&2; exit 2; }
  v=$5
  case $4 in
  -string) t=string;;
  -int) t=integer; case $v in ''|*[!0-9-]*) echo "Could not write domain $2; exiting" >&2; exit 1;; esac;;
  -float) t=float;;
  -bool) t=boolean; case $(printf '%s' "$v" | tr A-Z a-z) in true|yes|1) v=1;; false|no|0) v=0;; *) echo "Could not write domain $2; exiting" >&2; exit 1;; esac;;
  *) echo "stub defaults: unexpected type $4" >&2; exit 2;;
  esac
  printf '%s\n%s\n' "$t" "$v" >"$f";;
*) echo "stub defaults: unexpected $*" >&2; exit 2;;
esac
"""

_DSCL = r"""#!/bin/sh
# dscl . -read|-create|-delete|-append|-list RECORD [ATTR [VALUE...]]
[ "$1" = . ] || { echo "stub dscl: unexpected $*" >&2; exit 2; }
ds=$STUB_STATE/ds; op=$2; rec=$3; shift 3
case $rec in /Users/*|/Groups/*) ;; *) echo "stub dscl: bad record $rec" >&2; exit 2;; esac
case ${rec#/*/} in */*|..|.|'') echo "stub dscl: bad record $rec" >&2; exit 2;; esac
d=$ds$rec
notfound() { echo "<dscl_cmd> DS Error: -14136 (eDSRecordNotFound)" >&2; exit 56; }
case $op in
-read) [ -d "$d" ] || notfound
  for a in "$@"; do [ -f "$d/$a" ] || { echo "No such key: $a" >&2; exit 181; }
    if grep -q ' ' "$d/$a"; then echo "$a:"; sed 's/^/ /' "$d/$a"; else printf '%s: %s\n' "$a" "$(tr '\n' ' ' <"$d/$a" | sed 's/ $//')"; fi; done;;
-create) mkdir -p "$d"; if [ $# -ge 2 ]; then a=$1; shift; printf '%s\n' "$@" >"$d/$a"; fi;;
-append) [ -d "$d" ] || notfound; a=$1; shift; printf '%s\n' "$@" >>"$d/$a";;
-delete) [ -d "$d" ] || notfound
  if [ $# = 0 ]; then rm -rf "$d"; elif [ $# = 1 ]; then rm -f "$d/$1"; else grep -vxF -- "$2" "$d/$1" >"$d/$1.new"; mv "$d/$1.new" "$d/$1"; fi;;
-list) for r in "$d"/*; do [ -d "$r" ] && printf '%s %s\n' "$(basename "$r")" "$(cat "$r/$1" 2>/dev/null)"; done;;
*) echo "stub dscl: unexpected $op" >&2; exit 2;;
esac
"""

_DSEDITGROUP = r"""#!/bin/sh
ds=$STUB_STATE/ds/Groups
[ "$1" = -o ] || { echo "stub dseditgroup: unexpected $*" >&2; exit 2; }
op=$2; shift 2
case $op in
create) gid=; if [ "$1" = -i ]; then gid=$2; shift 2; fi
  [ -d "$ds/$1" ] && { echo "Group already exists." >&2; exit 64; }
  [ -n "$gid" ] || gid=$(( $(cat "$ds"/*/PrimaryGroupID 2>/dev/null | sort -n | tail -n1) + 1 ))
  mkdir -p "$ds/$1"; echo "$gid" >"$ds/$1/PrimaryGroupID";;
delete) [ -d "$ds/$1" ] || { echo "Group not found." >&2; exit 64; }; rm -rf "${ds:?}/$1";;
edit) [ "$1 $3 $4" = "-a -t user" ] || { echo "stub dseditgroup: unexpected edit $*" >&2; exit 2; }
  [ -d "$ds/$5" ] || { echo "Group not found." >&2; exit 64; }; echo "$2" >>"$ds/$5/GroupMembership";;
checkmember) [ "$1" = -m ] || exit 2
  if [ -f "$ds/$3/GroupMembership" ] && grep -qxF -- "$2" "$ds/$3/GroupMembership"; then echo "yes $2 is a member of $3"; else echo "no $2 is NOT a member of $3"; exit 1; fi;;
*) echo "stub dseditgroup: unexpected $op" >&2; exit 2;;
esac
"""

_NETWORKSETUP = r"""#!/bin/sh
st=$STUB_STATE/net; mkdir -p "$st"
echo "$*" >>"$STUB_STATE/networksetup.log"
known() { grep -qxF -- "$1" "$STUB_STATE/net_services" || { echo "** Error: The parameters were not valid." >&2; exit 4; }; }
f() { printf '%s/%s.%s' "$st" "$(printf '%s' "$1" | tr / %)" "$2"; }
case $1 in
-listallnetworkservices) echo "An asterisk (*) denotes that a network service is disabled."; cat "$STUB_STATE/net_services"; echo "*Bluetooth PAN";;
-getdnsservers) known "$2"; if [ -s "$(f "$2" dns)" ]; then cat "$(f "$2" dns)"; else echo "There aren't any DNS Servers set on $2."; fi;;
-getsearchdomains) known "$2"; if [ -s "$(f "$2" search)" ]; then cat "$(f "$2" search)"; else echo "There aren't any Search Domains set on $2."; fi;;
-setdnsservers) known "$2"; s=$2; shift 2; if [ "$1" = Empty ]; then : >"$(f "$s" dns)"; else printf '%s\n' "$@" >"$(f "$s" dns)"; fi;;
-setsearchdomains) known "$2"; s=$2; shift 2; if [ "$1" = Empty ]; then : >"$(f "$s" search)"; else printf '%s\n' "$@" >"$(f "$s" search)"; fi;;
*) echo "stub networksetup: unexpected $*" >&2; exit 2;;
esac
"""

_SSHD = r"""#!/bin/sh
# sshd -t|-T -f MAIN: the drop-ins of MAIN.d (included at its top) and then MAIN; first value wins
mode=$1; [ "$2" = -f ] || { echo "stub sshd: unexpected $*" >&2; exit 2; }; main=$3
files=$(ls "$main.d"/*.conf 2>/dev/null); set -- $files "$main"
awk -v mode="$mode" '
  BEGIN { split("include port permitrootlogin passwordauthentication x11forwarding maxauthtries pubkeyauthentication usepam", k, " "); for (i in k) known[k[i]] = 1 }
  FNR == 1 { line = 0 } { line++ }
  /^[ \t]*(#|$)/ { next }
  { key = tolower($1); if (!(key in known)) { printf "%s: line %d: Bad configuration option: %s\n", FILENAME, line, $1 > "/dev/stderr"; bad++; badfile = FILENAME; next }
    if (key != "include" && !(key in seen)) { seen[key] = $2; order[++n] = key } }
  END { if (bad) { printf "%s: terminating, %d bad configuration options\n", badfile, bad > "/dev/stderr"; exit 255 }
        if (mode == "-T") for (i = 1; i <= n; i++) print order[i], seen[order[i]] }' "$@"
"""

_PFCTL = r"""#!/bin/sh
# pfctl -nf FILE | -a ANCHOR -f FILE | -a ANCHOR -s rules | -s info | -e
st=$STUB_STATE/pf; mkdir -p "$st"
echo "$*" >>"$STUB_STATE/pfctl.log"
check() { awk '$1 != "pass" && $1 != "block" {printf "%s:%d: syntax error\n", FILENAME, FNR > "/dev/stderr"; bad = 1} END {exit bad}' "$1"; }
case "$1 $2" in
"-nf "*) check "$2";;
"-a com.apple/reaper") case $3 in
  -f) check "$4" || exit 1; sed -e 's/ port \([0-9][0-9]*\) / port = \1 /' -e 's/^\(pass .*proto tcp.*\) label/\1 flags S\/SA keep state label/' "$4" >"$st/rules";;
  -s) [ -f "$st/rules" ] && cat "$st/rules";;
  *) echo "stub pfctl: unexpected $*" >&2; exit 2;; esac;;
"-s info") if [ -f "$st/enabled" ]; then echo "Status: Enabled for 0 days 00:01:02"; else echo "Status: Disabled"; fi;;
"-e ") [ -f "$st/enabled" ] && { echo "pfctl: pf already enabled" >&2; exit 1; }; : >"$st/enabled"; echo "pf enabled" >&2;;
*) echo "stub pfctl: unexpected $*" >&2; exit 2;;
esac
"""

_STUBS = {
    "sudo": _SUDO,
    "id": _ID,
    "stat": _STAT,
    "brew": _BREW,
    "launchctl": _LAUNCHCTL,
    "defaults": _DEFAULTS,
    "dscl": _DSCL,
    "dseditgroup": _DSEDITGROUP,
    "networksetup": _NETWORKSETUP,
    "sshd": _SSHD,
    "pfctl": _PFCTL,
}


class Sandbox:
    """A stub bin directory, its state directory and a launchd plist directory under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.state = root / "state"
        self.daemons = root / "LaunchDaemons"
        for d in (self.bin, self.state, self.daemons):
            d.mkdir(parents=True)
        for name, text in _STUBS.items():
            path = self.bin / name
            path.write_text(text)
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        (self.state / "brew_owner").write_text("admin\n")
        (self.state / "brew_available").write_text("tree 2.1.1\nwget 1.24.5\n")
        (self.state / "net_services").write_text("Wi-Fi\nUSB 10/100/1000 LAN\n")
        self.sshd_config = root / "sshd_config"
        self.sshd_config.write_text("Include /etc/ssh/sshd_config.d/*\nPermitRootLogin yes\n")
        staff = self.state / "ds" / "Groups" / "staff"
        staff.mkdir(parents=True)
        (staff / "PrimaryGroupID").write_text("20\n")

    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "STUB_STATE": str(self.state),
            "REAPER_LAUNCHD_DIRS": str(self.daemons),
            "REAPER_SSHD_CONFIG": str(self.sshd_config),
            "REAPER_PF_ANCHOR": str(self.root / "pf.anchors" / "reaper"),
            "LC_ALL": "C",
        }

    def read(self, *parts: str) -> str:
        path = self.state.joinpath(*parts)
        return path.read_text() if path.exists() else ""
