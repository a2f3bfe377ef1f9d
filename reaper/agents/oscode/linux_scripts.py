# ruff: noqa: E501  (shell scripts are kept on one line per statement)
"""The fixed `sh` scripts that converge one resource on Linux, one per kind.

Values arrive as positional arguments (and file content on stdin), never in the script text:
`sh -c SCRIPT sh ARG...`. Each script exits 0 when the resource is as asked; a script that
finds the tool it needs missing exits 69 (EX_UNAVAILABLE) with the reason on stderr. Files are
written to a temporary file in the target's own directory and renamed into place.
"""

from __future__ import annotations

__all__ = ["PATH_START", "PM_PICK", "SCRIPTS", "SSHD_DROPIN", "UNAVAILABLE"]

UNAVAILABLE = 69
_HEAD = (
    'PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"; export LC_ALL=C DEBIAN_FRONTEND=noninteractive\n'
)

# Sets $pm: the package manager of the family /etc/os-release names (ID, then ID_LIKE), else
# the first one found. Not the first found alone: a host can carry another family's tool
# (Debian ships dnf and rpm; a RHEL host can have apt from EPEL), and it must not be driven by it.
PM_PICK = r"""osr=/etc/os-release; [ -r "$osr" ] || osr=/usr/lib/os-release
ids=$(sed -n -e 's/^ID=//p' -e 's/^ID_LIKE=//p' "$osr" 2>/dev/null | tr -d "\"'" | tr '\n' ' ')
order=; for id in $ids; do case $id in rhel|fedora|centos|rocky|almalinux) order="$order dnf yum";; debian|ubuntu) order="$order apt-get";; suse|opensuse) order="$order zypper";; alpine) order="$order apk";; arch) order="$order pacman";; esac; done
pm=; for c in $order apt-get dnf yum zypper apk pacman; do if command -v "$c" >/dev/null 2>&1; then pm=$c; break; fi; done
"""

# $1 name  $2 state (present|absent)  $3 version ("" any; apt and dnf take it exactly)
# dnf waits for ever on a lock another dnf holds ("Waiting for process with pid N to finish"):
# exit_on_lock makes it fail at once ("... already locked by N", exit 200), as apt does.
_PACKAGE = (
    PM_PICK
    + r"""name=$1; state=$2; version=$3
case $pm in
apt-get)
  if [ "$state" = absent ]; then echo "@@reaper:install@@"; apt-get remove -y -q "$name" 2>&1; exit $?; fi
  spec=$name; [ -n "$version" ] && spec="$name=$version"
  echo "@@reaper:update@@"; apt-get update -q 2>&1
  echo "@@reaper:install@@"; apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$spec" 2>&1;;
dnf|yum)
  spec=$name; [ -n "$version" ] && spec="$name-$version"
  echo "@@reaper:install@@"
  if [ "$state" = absent ]; then $pm remove -y --setopt=exit_on_lock=True "$name" 2>&1; else $pm install -y --setopt=exit_on_lock=True "$spec" 2>&1; fi;;
*) echo "no apt-get, dnf or yum on this host" >&2; exit 69;;
esac
"""
)

_SYSTEMD = "[ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1"

# $1 name  $2 running|stopped|restarted (only if it runs: a notify)  $3 enabled (1|0|"" leave)
_SERVICE = (
    "name=$1; state=$2; enabled=$3\n"
    f"if {_SYSTEMD}; then\n"
    r"""  unit="$name.service"
  if [ "$(systemctl show -p LoadState --value "$unit" 2>/dev/null)" != loaded ]; then echo "Failed to start $unit: Unit $unit not found." >&2; exit 5; fi
  case $state in running) systemctl start "$unit";; stopped) systemctl stop "$unit";; restarted) systemctl try-restart "$unit";; esac || exit $?
  case $enabled in 1) systemctl enable "$unit";; 0) systemctl disable "$unit";; esac
else
  init="/etc/init.d/$name"
  if [ ! -x "$init" ]; then echo "$name: unrecognized service (no systemd unit and no $init)" >&2; exit 5; fi
  case $state in
    running) "$init" status >/dev/null 2>&1 || "$init" start </dev/null;;
    stopped) if "$init" status >/dev/null 2>&1; then "$init" stop </dev/null; fi;;
    restarted) if "$init" status >/dev/null 2>&1; then "$init" restart </dev/null; fi;;
  esac || exit $?
  if command -v update-rc.d >/dev/null 2>&1; then
    case $enabled in 1) update-rc.d "$name" defaults >/dev/null && update-rc.d "$name" enable;; 0) update-rc.d "$name" disable;; esac
  else  # RHEL family without systemd: chkconfig, from the script's own "# chkconfig:" line
    case $enabled in 1) chkconfig --add "$name" && chkconfig "$name" on;; 0) chkconfig "$name" off;; esac
  fi
fi
"""
)

# $1 path  $2 state  $3 mode  $4 owner  $5 group  $6 write content from stdin (1|0)  $7 type
# (PATH_START, removal and directories, is shared with macOS: `macos_scripts`.)
PATH_START = r"""path=$1; state=$2; mode=$3; owner=$4; group=$5; write=$6; type=$7
if [ "$state" = absent ]; then
  if [ "$type" = directory ]; then rm -rf -- "$path"; else rm -f -- "$path"; fi; exit $?
fi
if [ "$type" = directory ]; then
  if [ -e "$path" ] && [ ! -d "$path" ]; then rm -f -- "$path" || exit 1; fi
  mkdir -p -- "$path" || exit 1; target=$path
"""
_PATH = (
    PATH_START
    + r"""elif [ "$write" = 1 ] || [ ! -f "$path" ]; then
  dir=$(dirname -- "$path"); mkdir -p -- "$dir" || exit 1
  tmp=$(mktemp -- "$dir/.reaper.XXXXXX") || exit 1
  trap 'rm -f -- "$tmp"' EXIT
  if [ "$write" = 1 ]; then cat >"$tmp" || exit 1; fi
  if [ -f "$path" ]; then chmod --reference="$path" -- "$tmp" && chown --reference="$path" -- "$tmp" || exit 1; else chmod 0644 -- "$tmp"; fi
  target=$tmp
else target=$path; fi
if [ -n "$mode" ]; then chmod -- "$mode" "$target" || exit 1; fi
if [ -n "$owner" ]; then chown -- "$owner" "$target" || exit 1; fi
if [ -n "$group" ]; then chgrp -- "$group" "$target" || exit 1; fi
if [ "$target" != "$path" ]; then mv -fT -- "$target" "$path" || exit 1; trap - EXIT; fi
"""
)

# $1 name  $2 state  $3 uid  $4 groups (comma-separated)  $5 shell  $6 home  $7 enabled (1|0|"")
# $8 the password on stdin: set when the user is created (create), on every run (always), or
# none (""). chpasswd reads `name:password` on its stdin, never an argument; it is run before
# the lock, which a new password hash would otherwise lift.
_USER = r"""name=$1; state=$2; uid=$3; groups=$4; shell=$5; home=$6; enabled=$7; password=$8
if [ "$state" = absent ]; then
  if getent passwd "$name" >/dev/null; then userdel -- "$name"; fi; exit $?
fi
exists=0; getent passwd "$name" >/dev/null && exists=1
set --
[ -n "$uid" ] && set -- "$@" -u "$uid"
[ -n "$shell" ] && set -- "$@" -s "$shell"
[ -n "$home" ] && set -- "$@" -d "$home"
if [ $exists = 0 ]; then
  [ -n "$groups" ] && set -- "$@" -G "$groups"
  useradd -m "$@" -- "$name" || exit $?
else
  [ -n "$groups" ] && set -- "$@" -a -G "$groups"
  if [ $# -gt 0 ]; then usermod "$@" -- "$name" || exit $?; fi
fi
if [ "$password" = always ] || { [ "$password" = create ] && [ $exists = 0 ]; }; then
  { printf '%s:' "$name"; cat; echo; } | chpasswd || exit $?
fi
case $enabled in 0) usermod -L -e 1 -- "$name";; 1) usermod -e '' -- "$name" || exit $?; p=$(getent shadow "$name" | cut -d: -f2); case $p in '!'?*) usermod -U -- "$name";; esac;; esac
"""

# $1 name  $2 state  $3 gid
_GROUP = r"""name=$1; state=$2; gid=$3
if [ "$state" = absent ]; then
  if getent group "$name" >/dev/null; then groupdel -- "$name"; fi; exit $?
fi
if getent group "$name" >/dev/null; then
  if [ -n "$gid" ]; then groupmod -g "$gid" -- "$name"; fi
elif [ -n "$gid" ]; then groupadd -g "$gid" -- "$name"
else groupadd -- "$name"; fi
"""

# $1 key  $2 value: live first (it validates the key and value), then persisted.
_SETTING = r"""key=$1; value=$2; conf=/etc/sysctl.d/99-reaper.conf
sysctl -w "$key=$value" || exit $?
mkdir -p /etc/sysctl.d; tmp=$(mktemp /etc/sysctl.d/.reaper.XXXXXX) || exit 1
trap 'rm -f -- "$tmp"' EXIT
{ [ -f "$conf" ] && K=$key awk -F= '{k=$1; gsub(/[[:space:]]/, "", k); if (k != ENVIRON["K"]) print}' "$conf"; printf '%s = %s\n' "$key" "$value"; } >"$tmp" || exit 1
chmod 0644 "$tmp" && mv -f -- "$tmp" "$conf" && trap - EXIT
"""

_SSHD_RELOAD = (
    f"if {_SYSTEMD}; then systemctl reload ssh.service 2>/dev/null || systemctl reload sshd.service\n"
    r"""elif [ -x /etc/init.d/ssh ] && [ -f /run/sshd.pid ]; then /etc/init.d/ssh reload
elif [ -f /run/sshd.pid ]; then kill -HUP "$(cat /run/sshd.pid)"
else pid=$(pgrep -o -x sshd) && kill -HUP "$pid"; fi
"""
)

# $1 keyword  $2 value: a drop-in read before sshd_config's own lines (first value wins),
# checked with `sshd -t` (the old drop-in is put back when it fails), then sshd reloads.
# (`main`, the sshd_config path, is set before it: macOS shares this text, `macos_scripts`.)
SSHD_DROPIN = r"""key=$1; value=$2; dir=$main.d; conf=$dir/00-reaper.conf
if ! grep -qiE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/' "$main" 2>/dev/null; then echo "$main does not include $dir/*.conf" >&2; exit 69; fi
mkdir -p "$dir"; tmp=$(mktemp "$dir/.reaper.XXXXXX") || exit 1
trap 'rm -f -- "$tmp"' EXIT
{ [ -f "$conf" ] && K=$key awk 'tolower($1) != tolower(ENVIRON["K"])' "$conf"; printf '%s %s\n' "$key" "$value"; } >"$tmp" || exit 1
chmod 0644 "$tmp"; old=; [ -f "$conf" ] && old=$(mktemp "$dir/.reaper-old.XXXXXX") && cp -p -- "$conf" "$old"
mv -f -- "$tmp" "$conf"; trap - EXIT
if ! out=$(sshd -t -f "$main" 2>&1); then
  if [ -n "$old" ]; then mv -f -- "$old" "$conf"; else rm -f -- "$conf"; fi
  printf '%s\n' "$out" >&2; exit 78
fi
if [ -n "$old" ]; then rm -f -- "$old"; fi
"""
_SSHD = "main=/etc/ssh/sshd_config\n" + SSHD_DROPIN + _SSHD_RELOAD

# $1 name (the rule's comment)  $2 state  then the nft rule's words (from the model, each
# one argument: nft joins them into its own statement).
_FIREWALL = r"""name=$1; state=$2; shift 2
command -v nft >/dev/null 2>&1 || { echo "firewall unavailable: no nft (nftables) on this host" >&2; exit 69; }
nft list table inet reaper >/dev/null 2>&1 || nft add table inet reaper || exit 1
nft list chain inet reaper input >/dev/null 2>&1 || nft 'add chain inet reaper input { type filter hook input priority 0; policy accept; }' || exit 1
for h in $(nft -a list chain inet reaper input | grep -F "comment \"reaper:$name\"" | sed -n 's/.*# handle \([0-9]*\)$/\1/p'); do nft delete rule inet reaper input handle "$h" || exit 1; done
if [ "$state" = present ]; then nft add rule inet reaper input "$@" comment "\"reaper:$name\"" || exit 1; fi
if [ -d /etc/nftables.d ] || [ -f /etc/nftables.conf ]; then mkdir -p /etc/nftables.d; nft list table inet reaper >/etc/nftables.d/reaper.nft; fi
"""

# $1 search domains (space-separated; "" keeps the current search line)  then the servers.
_DNS = r"""search=$1; shift
conf=/etc/resolv.conf
case $(readlink -f "$conf" 2>/dev/null) in */systemd/resolve/*) echo "resolv.conf is managed by systemd-resolved (use resolvectl): unsupported" >&2; exit 69;; esac
tmp=$(mktemp /etc/.resolv.conf.reaper.XXXXXX) || exit 1
trap 'rm -f -- "$tmp"' EXIT
{ if [ -f "$conf" ]; then if [ -n "$search" ]; then grep -vE '^[[:space:]]*(nameserver|search)([[:space:]]|$)' "$conf"; else grep -vE '^[[:space:]]*nameserver([[:space:]]|$)' "$conf"; fi; fi
  [ -n "$search" ] && printf 'search %s\n' "$search"
  for s in "$@"; do printf 'nameserver %s\n' "$s"; done; } >"$tmp"
chmod 0644 "$tmp"; mv -f -- "$tmp" "$conf" && trap - EXIT
"""

# $1 name  $2 format (apt|dnf)  $3 state  $4 key_url ("" none); the source file on stdin.
_REPO = r"""name=$1; format=$2; state=$3; key_url=$4
if [ "$format" = apt ]; then file=/etc/apt/sources.list.d/$name.list; else file=/etc/yum.repos.d/$name.repo; fi
if [ "$state" = absent ]; then rm -f -- "$file" "/etc/apt/keyrings/$name.asc" "/etc/apt/keyrings/$name.gpg"; exit 0; fi
dir=$(dirname -- "$file"); mkdir -p -- "$dir"
tmp=$(mktemp "$dir/.reaper.XXXXXX") || exit 1
key=; trap 'rm -f -- "$tmp" "$key"' EXIT
cat >"$tmp" || exit 1; chmod 0644 "$tmp"
if [ "$format" = apt ]; then
  if [ -n "$key_url" ]; then
    mkdir -p /etc/apt/keyrings; key=$(mktemp /etc/apt/keyrings/.reaper.XXXXXX) || exit 1
    echo "@@reaper:key@@"
    /usr/lib/apt/apt-helper download-file "$key_url" "$key" 2>&1 || exit 75
    chmod 0644 "$key"
    if grep -q 'BEGIN PGP PUBLIC KEY' "$key"; then ext=asc; other=gpg; else ext=gpg; other=asc; fi
    mv -f -- "$key" "/etc/apt/keyrings/$name.$ext"; rm -f "/etc/apt/keyrings/$name.$other"; key=
    sed -i "s|@KEYRING@|/etc/apt/keyrings/$name.$ext|" "$tmp" || exit 1
  fi
  old=; [ -f "$file" ] && old=$(mktemp "$dir/.reaper-old.XXXXXX") && cp -p -- "$file" "$old"
  mv -f -- "$tmp" "$file"
  echo "@@reaper:update@@"
  out=$(apt-get update -q -o "Dir::Etc::sourcelist=$file" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 2>&1); printf '%s\n' "$out"
  if ! printf '%s\n' "$out" | grep -qE '^(E: |W: Failed to fetch|W: Some index files failed)'; then [ -n "$old" ] && rm -f -- "$old"; exit 0; fi
  if [ -n "$old" ]; then mv -f -- "$old" "$file"; else rm -f -- "$file"; fi
  exit 75
else
  old=; [ -f "$file" ] && old=$(mktemp "$dir/.reaper-old.XXXXXX") && cp -p -- "$file" "$old"
  mv -f -- "$tmp" "$file"; trap - EXIT
  # As apt's update above: the new repository's metadata is fetched now, so a mirror that
  # cannot be reached fails here and the old file is put back (a disabled one is not read).
  if grep -q '^enabled=1' "$file"; then
    echo "@@reaper:update@@"
    pm=dnf; command -v dnf >/dev/null 2>&1 || pm=yum
    if ! out=$($pm makecache --disablerepo='*' --enablerepo="$name" --setopt="$name.skip_if_unavailable=False" --setopt=exit_on_lock=True 2>&1); then
      printf '%s\n' "$out"
      if [ -n "$old" ]; then mv -f -- "$old" "$file"; else rm -f -- "$file"; fi
      case $out in *"already locked by"*) exit 1;; esac  # classified from the text: PM_LOCKED
      exit 75
    fi
    printf '%s\n' "$out"
  fi
  [ -n "$old" ] && rm -f -- "$old"; exit 0
fi
"""

SCRIPTS: dict[str, str] = {
    kind: _HEAD + text
    for kind, text in {
        "package": _PACKAGE,
        "service": _SERVICE,
        "file": _PATH,
        "directory": _PATH,
        "user": _USER,
        "group": _GROUP,
        "setting": _SETTING,
        "sshd_option": _SSHD,
        "firewall": _FIREWALL,
        "dns_client": _DNS,
        "package_repository": _REPO,
    }.items()
}
