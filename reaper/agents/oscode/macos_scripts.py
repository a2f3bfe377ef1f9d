# ruff: noqa: E501  (shell scripts are kept on one line per statement)
"""The fixed `sh` scripts that converge one resource on macOS, one per kind.

Values arrive as positional arguments, never in the script text: `sh -c SCRIPT sh ARG...`
(checked first by `macos_args`). Each script exits 0 when the resource is as asked, 69
(EX_UNAVAILABLE) when the tool it needs is missing, 66 (EX_NOINPUT) when the thing it acts on
is not there (not 5: launchctl's own exit for an I/O error). `REAPER_LAUNCHD_DIRS` (unset on
a host: sudo drops it) lets the tests point the launchd search at a sandbox.
The tools are called by name on a PATH that ends in their macOS homes, so the tests' stub
tools (first on PATH) stand in for them.
"""

from __future__ import annotations

from reaper.agents.oscode.linux_scripts import PATH_START, SSHD_DROPIN

__all__ = ["BREW", "HEAD", "SCRIPTS", "UNAVAILABLE"]

UNAVAILABLE = 69
HEAD = (
    'PATH="$PATH:/usr/bin:/bin:/usr/sbin:/sbin:/opt/homebrew/bin:/usr/local/bin:/usr/libexec/ApplicationFirewall"\n'
    "export LC_ALL=C; cd / || exit 1\n"
)

# Homebrew refuses to run as root: `run_brew` runs it as the user who owns the brew install
# (the owner of the brew executable, symlinks followed: on Intel `brew --prefix` is /usr/local,
# which root owns, while /usr/local/Homebrew/bin/brew is the installing user's).
BREW = r"""brew=$(command -v brew) || { echo "no Homebrew (brew) on this host" >&2; exit 69; }
owner=$(stat -L -f %Su "$brew") || exit 1
if [ "$owner" = root ]; then echo "$brew is owned by root: Homebrew must be installed by a user" >&2; exit 69; fi
run_brew() { if [ "$(id -un)" = "$owner" ]; then env HOMEBREW_NO_AUTO_UPDATE=1 HOMEBREW_NO_ENV_HINTS=1 HOMEBREW_NO_INSTALL_CLEANUP=1 "$brew" "$@"; else sudo -u "$owner" -H -- env HOMEBREW_NO_AUTO_UPDATE=1 HOMEBREW_NO_ENV_HINTS=1 HOMEBREW_NO_INSTALL_CLEANUP=1 "$brew" "$@"; fi; }
"""

# $1 name (a formula or cask, tap/name allowed)  $2 state (present|absent)
_PACKAGE = (
    BREW
    + r"""name=$1; state=$2
echo "@@reaper:install@@"
if [ "$state" = absent ]; then run_brew uninstall "$name" 2>&1; else run_brew install "$name" 2>&1; fi
"""
)

# $1 label  $2 running|stopped|restarted (only if it runs: a notify)  $3 enabled (1|0|""
# leave): a system-domain launchd job.
_SERVICE = r"""label=$1; state=$2; enabled=$3; target=system/$label
plist=
# shellcheck disable=SC2086  # a list of directories without spaces
for d in ${REAPER_LAUNCHD_DIRS:-/Library/LaunchDaemons /System/Library/LaunchDaemons}; do if [ -f "$d/$label.plist" ]; then plist=$d/$label.plist; break; fi; done
loaded=0; launchctl print "$target" >/dev/null 2>&1 && loaded=1
if [ "$state" = restarted ]; then
  if launchctl print "$target" 2>/dev/null | grep -q '^[[:space:]]*state = running'; then launchctl kickstart -k "$target" 2>&1 || exit $?; fi
  exit 0
fi
if [ $loaded = 0 ] && [ -z "$plist" ]; then echo "Could not find service \"$label\" in domain for system (and no $label.plist in /Library/LaunchDaemons)" >&2; exit 66; fi
case $enabled in 1) launchctl enable "$target" || exit $?;; 0) launchctl disable "$target" || exit $?;; esac
if [ "$state" = running ]; then
  if [ $loaded = 0 ]; then launchctl bootstrap system "$plist" 2>&1 || exit $?; fi
  launchctl print "$target" 2>/dev/null | grep -q '^[[:space:]]*state = running' || launchctl kickstart "$target" 2>&1 || exit $?
elif [ $loaded = 1 ]; then launchctl bootout "$target" 2>&1 || exit $?; fi
"""

# $1 domain (a name or a plist path)  $2 key  $3 type flag (-string|-int|-float|-bool)  $4 value
_SETTING = r"""domain=$1; key=$2; type=$3; value=$4
case $type in -string|-int|-float|-bool) ;; *) echo "bad defaults type $type" >&2; exit 78;; esac
defaults write "$domain" "$key" "$type" "$value" 2>&1 || exit $?
"""

# $1 name  $2 state  $3 uid  $4 groups (comma-separated)  $5 shell  $6 home  $7 enabled (1|0|"")
_USER = r"""name=$1; state=$2; uid=$3; groups=$4; shell=$5; home=$6; enabled=$7; rec=/Users/$name
if [ "$state" = absent ]; then
  if dscl . -read "$rec" UniqueID >/dev/null 2>&1; then dscl . -delete "$rec" || exit $?; fi; exit 0
fi
if ! dscl . -read "$rec" UniqueID >/dev/null 2>&1; then
  if [ -z "$uid" ]; then uid=$(dscl . -list /Users UniqueID | awk 'BEGIN {m = 500} $2 > m && $2 < 60000 {m = $2} END {print m + 1}'); fi
  dscl . -create "$rec" || exit $?
  dscl . -create "$rec" UniqueID "$uid" && dscl . -create "$rec" PrimaryGroupID 20 && dscl . -create "$rec" RealName "$name" || exit $?
  dscl . -create "$rec" UserShell "${shell:-/bin/zsh}" && dscl . -create "$rec" NFSHomeDirectory "${home:-/Users/$name}" || exit $?
else
  if [ -n "$uid" ]; then dscl . -create "$rec" UniqueID "$uid" || exit $?; fi
  if [ -n "$shell" ]; then dscl . -create "$rec" UserShell "$shell" || exit $?; fi
  if [ -n "$home" ]; then dscl . -create "$rec" NFSHomeDirectory "$home" || exit $?; fi
fi
old_ifs=$IFS; IFS=,
for g in $groups; do dseditgroup -o checkmember -m "$name" "$g" >/dev/null 2>&1 || dseditgroup -o edit -a "$name" -t user "$g" || exit $?; done
IFS=$old_ifs
disabled=0; dscl . -read "$rec" AuthenticationAuthority 2>/dev/null | grep -q ';DisabledUser;' && disabled=1
case $enabled in
  0) if [ $disabled = 0 ]; then dscl . -append "$rec" AuthenticationAuthority ';DisabledUser;' || exit $?; fi;;
  1) if [ $disabled = 1 ]; then dscl . -delete "$rec" AuthenticationAuthority ';DisabledUser;' || exit $?; fi;;
esac
"""

# $1 name  $2 state  $3 gid ("" any)
_GROUP = r"""name=$1; state=$2; gid=$3
if [ "$state" = absent ]; then
  if dscl . -read "/Groups/$name" PrimaryGroupID >/dev/null 2>&1; then dseditgroup -o delete "$name" || exit $?; fi; exit 0
fi
if dscl . -read "/Groups/$name" PrimaryGroupID >/dev/null 2>&1; then
  if [ -n "$gid" ]; then dscl . -create "/Groups/$name" PrimaryGroupID "$gid" || exit $?; fi
elif [ -n "$gid" ]; then dseditgroup -o create -i "$gid" "$name"
else dseditgroup -o create "$name"; fi
"""

# $1 network service ("default": every enabled one)  $2 search domains (space-separated, ""
# leaves them)  then the servers.
_DNS = r"""service=$1; search=$2; shift 2
command -v networksetup >/dev/null 2>&1 || { echo "no networksetup on this host" >&2; exit 69; }
if [ "$service" = default ]; then services=$(networksetup -listallnetworkservices | sed 1d | grep -v '^\*'); else services=$service; fi
old_ifs=$IFS; IFS='
'
for s in $services; do
  IFS=$old_ifs
  networksetup -setdnsservers "$s" "$@" 2>&1 || exit $?
  if [ -n "$search" ]; then
    # shellcheck disable=SC2086  # the domains are one word each (macos_args)
    networksetup -setsearchdomains "$s" $search 2>&1 || exit $?
  fi
done
"""

# $1 keyword  $2 value: the Linux drop-in (sshd_config includes sshd_config.d/* since macOS 13),
# checked with `sshd -t`. No reload: launchd starts sshd per connection, so the next connection
# reads it (as the baseline's sshd item does). REAPER_SSHD_CONFIG: the tests' sandbox.
_SSHD = "main=${REAPER_SSHD_CONFIG:-/etc/ssh/sshd_config}\n" + SSHD_DROPIN

# $1 name (the rule's label)  $2 state  then the pf rule's words (from the model). The
# Application Firewall (socketfilterfw) allows or blocks applications, not ports, so port rules
# go to pf: the anchor com.apple/reaper, which the stock /etc/pf.conf evaluates
# (`anchor "com.apple/*"`), loaded from /etc/pf.anchors/reaper after `pfctl -n` parses it.
_FIREWALL = r"""name=$1; state=$2; shift 2
command -v pfctl >/dev/null 2>&1 || { echo "firewall unavailable: no pfctl on this host" >&2; exit 69; }
file=${REAPER_PF_ANCHOR:-/etc/pf.anchors/reaper}; dir=$(dirname -- "$file"); mkdir -p -- "$dir" || exit 1
tmp=$(mktemp "$dir/.reaper.XXXXXX") || exit 1
trap 'rm -f -- "$tmp"' EXIT
{ if [ -f "$file" ]; then L="label \"reaper:$name\"" awk 'index($0, ENVIRON["L"]) == 0' "$file"; fi
  if [ "$state" = present ]; then printf '%s label "reaper:%s"\n' "$*" "$name"; fi; } >"$tmp" || exit 1
if ! out=$(pfctl -nf "$tmp" 2>&1); then printf '%s\n' "$out" >&2; exit 78; fi
chmod 0644 "$tmp" && mv -f -- "$tmp" "$file" || exit 1; trap - EXIT
pfctl -a com.apple/reaper -f "$file" 2>&1 || exit $?
pfctl -s info 2>/dev/null | grep -q '^Status: Enabled' || pfctl -e 2>&1
# pf reads only /etc/pf.conf at boot: a launchd job loads the anchor (and enables pf) again.
daemons=${REAPER_LAUNCHD_DIRS:-/Library/LaunchDaemons}; daemons=${daemons%% *}
job=$daemons/com.reaper.pf-anchor.plist; new=$(mktemp "$daemons/.reaper.XXXXXX") || exit 1
trap 'rm -f -- "$new"' EXIT
printf '%s\n' '<?xml version="1.0" encoding="UTF-8"?>' \
  '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">' \
  '<plist version="1.0"><dict>' '<key>Label</key><string>com.reaper.pf-anchor</string>' \
  '<key>ProgramArguments</key><array><string>/sbin/pfctl</string><string>-E</string><string>-a</string><string>com.apple/reaper</string><string>-f</string>' \
  "<string>$file</string></array>" '<key>RunAtLoad</key><true/>' '</dict></plist>' >"$new" || exit 1
if cmp -s "$new" "$job"; then rm -f -- "$new"; else chmod 0644 "$new" && mv -f -- "$new" "$job" || exit 1; fi
trap - EXIT
"""

# $1 path  $2 state  $3 mode  $4 owner  $5 group  $6 write content from stdin (1|0)  $7 type.
# As on Linux, written to a temporary file beside the target and renamed into place; BSD tools
# have no --reference or mv -T, so the old file's mode and owner are copied from stat.
_PATH = (
    PATH_START
    + r"""elif [ -d "$path" ]; then echo "$path is a directory" >&2; exit 1
elif [ "$write" = 1 ] || [ ! -f "$path" ]; then
  dir=$(dirname -- "$path"); mkdir -p -- "$dir" || exit 1
  tmp=$(mktemp "$dir/.reaper.XXXXXX") || exit 1
  trap 'rm -f -- "$tmp"' EXIT
  if [ "$write" = 1 ]; then cat >"$tmp" || exit 1; fi
  if [ -f "$path" ]; then chmod "$(stat -f %Lp "$path")" "$tmp" && chown "$(stat -f %Su:%Sg "$path")" "$tmp" || exit 1; else chmod 0644 "$tmp"; fi
  target=$tmp
else target=$path; fi
if [ -n "$mode" ]; then chmod "$mode" "$target" || exit 1; fi
if [ -n "$owner" ]; then chown "$owner" "$target" || exit 1; fi
if [ -n "$group" ]; then chgrp "$group" "$target" || exit 1; fi
if [ "$target" != "$path" ]; then mv -f -- "$target" "$path" || exit 1; trap - EXIT; fi
"""
)

SCRIPTS: dict[str, str] = {
    kind: HEAD + text
    for kind, text in {
        "package": _PACKAGE,
        "service": _SERVICE,
        "setting": _SETTING,
        "user": _USER,
        "group": _GROUP,
        "dns_client": _DNS,
        "sshd_option": _SSHD,
        "firewall": _FIREWALL,
        "file": _PATH,
        "directory": _PATH,
    }.items()
}
