# ruff: noqa: E501  (PowerShell is kept on one line per statement)
"""What a Windows host shows of declared resources: one PowerShell reader per kind.

Each reader is a function `Get-Reaper<Kind>($R)` taking the declared resource as the JSON data
block (`$R`, never text in the script) and returning the properties
`reaper.desired.diff.reported_fields(kind)` names, or `$null` when the resource does not exist.
A change that is done but completes at a restart (a feature's InstallPending, a DC promotion, a
domain join) reads as declared plus `restart_pending: true`: the diff sees nothing to run
again, and the engine knows the host still has to restart (`reaper.engine.resources`).
The ensure scripts (`windows_ensure_scripts`) embed their kind's reader to read before and
after; `observe_script(kinds)` joins the readers a discover needs into one script that reads
every declared resource (sent on stdin) in one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["READERS", "observe_script"]

_PACKAGE = r"""function Get-ReaperState($R) {
  # Chocolatey 2: `choco list` is local; --limit-output prints name|version.
  if (-not (Get-Command -Name 'choco.exe' -ErrorAction SilentlyContinue)) { return $null }
  $line = @(& choco.exe list --exact --limit-output $R.name) | Where-Object { "$_".Contains('|') } | Select-Object -First 1
  if (-not $line) { return $null }
  [ordered]@{ state = 'present'; version = "$line".Split('|')[1] }
}
"""

_SERVICE = r"""function Get-ReaperState($R) {
  $s = Get-Service -Name $R.name -ErrorAction SilentlyContinue
  if (-not $s) { return $null }
  $state = 'stopped'
  if ("$($s.Status)" -eq 'Running') { $state = 'running' }
  [ordered]@{ state = $state; enabled = ("$($s.StartType)" -eq 'Automatic') }
}
"""

# The owner's account name without its domain ("BUILTIN\Administrators" → Administrators),
# as declarations name it; modes are POSIX and never read on Windows.
_PATH = r"""function Get-ReaperState($R) {
  $item = Get-Item -LiteralPath $R.path -Force -ErrorAction SilentlyContinue
  if (-not $item) { return $null }
  if (($R.kind -eq 'directory') -ne [bool]$item.PSIsContainer) { return $null }
  $owner = "$((Get-Acl -LiteralPath $R.path).Owner)"
  $out = [ordered]@{ state = 'present'; mode = $null; owner = $owner.Split('\')[-1]; group = $null }
  if (-not $item.PSIsContainer) { $out['sha256'] = 'sha256:' + (Get-FileHash -LiteralPath $R.path -Algorithm SHA256).Hash.ToLower() }
  $out
}
"""

_USER = r"""function Get-ReaperState($R) {
  $u = Get-LocalUser -Name $R.name -ErrorAction SilentlyContinue
  if (-not $u) { return $null }
  $groups = New-Object System.Collections.ArrayList
  foreach ($g in @(Get-LocalGroup)) {
    $m = @(Get-LocalGroupMember -Group $g -ErrorAction SilentlyContinue | Where-Object { $_.SID -eq $u.SID })
    if ($m.Count -gt 0) { [void]$groups.Add($g.Name) }
  }
  [ordered]@{ state = 'present'; uid = $null; groups = @($groups); shell = $null; home = $null; enabled = [bool]$u.Enabled }
}
"""

_GROUP = r"""function Get-ReaperState($R) {
  $g = Get-LocalGroup -Name $R.name -ErrorAction SilentlyContinue
  if (-not $g) { return $null }
  [ordered]@{ state = 'present'; gid = $null }
}
"""

# $R.key: a Registry:: provider path (from Python); $R.value_name: the value's name.
_SETTING = r"""function Get-ReaperState($R) {
  $k = Get-Item -LiteralPath $R.key -ErrorAction SilentlyContinue
  if (-not $k) { return $null }
  if (@($k.GetValueNames()) -notcontains $R.value_name) { return $null }
  $kinds = @{ String = 'string'; ExpandString = 'expand_string'; MultiString = 'multi_string'; DWord = 'dword'; QWord = 'qword' }
  $v = $k.GetValue($R.value_name)
  [ordered]@{ value = (@($v) -join "`n"); type = $kinds["$($k.GetValueKind($R.value_name))"] }
}
"""

# A rule Reaper owns is named `reaper-<name>`; Windows blocks by dropping, so a declared
# `deny` or `drop` is kept in the description to read back as declared.
_FIREWALL = r"""function Get-ReaperState($R) {
  $rule = Get-NetFirewallRule -Name $R.rule_name -ErrorAction SilentlyContinue
  if (-not $rule) { return $null }
  $ports = $rule | Get-NetFirewallPortFilter
  $addrs = $rule | Get-NetFirewallAddressFilter
  $proto = "$($ports.Protocol)".ToLower()
  if ($proto -like 'icmp*') { $proto = 'icmp' }
  $port = $null
  if ($ports.LocalPort -and "$($ports.LocalPort)" -ne 'Any') { $port = "$($ports.LocalPort)" }
  $source = $null
  if ($addrs.RemoteAddress -and "$($addrs.RemoteAddress)" -ne 'Any') { $source = "$($addrs.RemoteAddress)" }
  if ($source -match '^([0-9.]+)/([0-9]+[.][0-9.]+)$') {
    # Windows shows 192.0.2.0/24 as 192.0.2.0/255.255.255.0: read it back as declared.
    $net = $Matches[1]
    $bits = 0
    foreach ($octet in $Matches[2].Split('.')) { $bits += @([System.Convert]::ToString([int]$octet, 2).ToCharArray() | Where-Object { $_ -eq '1' }).Count }
    $source = "$net/$bits"
  }
  $action = 'allow'
  if ("$($rule.Action)" -ne 'Allow') { $action = 'drop'; if ("$($rule.Description)" -match 'action=(deny|drop)') { $action = $Matches[1] } }
  [ordered]@{ state = 'present'; port = $port; proto = $proto; source = $source; action = $action }
}
"""

# `default`: the first adapter that is up; any other name is an interface alias.
_DNS = r"""function Get-ReaperState($R) {
  $alias = $R.name
  if ($alias -eq 'default') { $alias = @(Get-NetAdapter | Where-Object { "$($_.Status)" -eq 'Up' } | Sort-Object -Property ifIndex | ForEach-Object { $_.Name })[0] }
  if (-not $alias) { return $null }
  $a = Get-DnsClientServerAddress -InterfaceAlias $alias -AddressFamily IPv4 -ErrorAction SilentlyContinue
  if (-not $a) { return $null }
  [ordered]@{ servers = @($a.ServerAddresses); search = @((Get-DnsClientGlobalSetting).SuffixSearchList); interface_index = $a.InterfaceIndex }
}
"""

# InstallPending (installed, waiting for a restart) reads as present with `restart_pending`:
# installing it again would change nothing, and the restart still has to happen.
_FEATURE = r"""function Get-ReaperState($R) {
  $f = Get-WindowsFeature -Name $R.name -ErrorAction SilentlyContinue
  if (-not $f) { return $null }
  $state = "$($f.InstallState)"
  if ($state -ne 'Installed' -and $state -ne 'InstallPending') { return $null }
  $out = [ordered]@{ state = 'present'; install_state = $state }
  if ($state -eq 'InstallPending') { $out['restart_pending'] = $true }
  $out
}
"""

# Install-ADDSForest without its restart: Win32_ComputerSystem.DomainRole stays below 4 (a
# backup or primary DC) until the restart, so the forest would read as absent and be promoted
# again. The promotion is done when the product type the next boot takes is a DC's (LanmanNT,
# written by the promotion; the running system still says ServerNT) and NTDS's parameters,
# also written by it, name this forest's root (or none). It reads as declared, with
# `restart_pending`: the directory cannot be asked before the restart.
_AD_DOMAIN = r"""function Get-ReaperState($R) {
  $cs = Get-CimInstance -ClassName Win32_ComputerSystem
  if ($cs.DomainRole -lt 4) {
    $type = "$((Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Control\ProductOptions' -ErrorAction SilentlyContinue).ProductType)"
    $root = "$((Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Services\NTDS\Parameters' -ErrorAction SilentlyContinue).'Root Domain')"
    if ($type -eq 'LanmanNT' -and (-not $root -or $root -eq ('DC=' + ($R.name -split '[.]' -join ',DC=')))) { return [ordered]@{ netbios = $R.netbios; functional_level = $R.functional_level; restart_pending = $true } }
    return $null
  }
  if (-not (Get-Command -Name 'Get-ADDomain' -ErrorAction SilentlyContinue)) { return $null }
  $d = Get-ADDomain -Current LocalComputer
  if ("$($d.DNSRoot)" -ne $R.name) { return $null }
  $modes = @{ Windows2008Forest = 'Win2008'; Windows2008R2Forest = 'Win2008R2'; Windows2012Forest = 'Win2012'; Windows2012R2Forest = 'Win2012R2'; Windows2016Forest = 'WinThreshold' }
  $mode = "$((Get-ADForest -Current LocalComputer).ForestMode)"
  $level = $modes[$mode]
  if (-not $level) { $level = $mode }
  [ordered]@{ netbios = "$($d.NetBIOSName)"; functional_level = $level }
}
"""

# The join account and OU are how a host joined, not properties it shows: read back as
# declared once the host is a member. Add-Computer without its restart leaves Netlogon's
# JoinDomain (or AvoidSpnSet) key until the restart; the domain it joined is the LSA's
# (Win32_ComputerSystem) or the primary DNS suffix the join set for the restart (Tcpip's
# `NV Domain`). That reads as a member with `restart_pending`, never as a host to join again.
_MEMBERSHIP = r"""function Get-ReaperState($R) {
  $cs = Get-CimInstance -ClassName Win32_ComputerSystem
  $n = 'HKLM:\SYSTEM\CurrentControlSet\Services\Netlogon'
  if (@(Test-Path -LiteralPath "$n\JoinDomain", "$n\AvoidSpnSet") -contains $true) {
    $suffix = "$((Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters' -ErrorAction SilentlyContinue).'NV Domain')"
    if ("$($cs.Domain)" -eq $R.domain -or $suffix -eq $R.domain) { return [ordered]@{ state = 'present'; user = $R.user; ou = $R.ou; restart_pending = $true } }
  }
  if (-not $cs.PartOfDomain -or "$($cs.Domain)" -ne $R.domain) { return $null }
  [ordered]@{ state = 'present'; user = $R.user; ou = $R.ou }
}
"""

_AD_OBJECT = r"""function Get-ReaperState($R) {
  if (-not (Get-Command -Name 'Get-ADDomain' -ErrorAction SilentlyContinue)) { return $null }
  $at = @{}
  if ($R.domain) { $at['Server'] = $R.domain }
  $domain = "$((Get-ADDomain @at).DNSRoot)"
  try {
    if ($R.kind -eq 'ad_user') { $o = Get-ADUser -Identity $R.name -Properties Enabled @at }
    else { $o = Get-ADGroup -Identity $R.name @at }
  } catch [Microsoft.ActiveDirectory.Management.ADIdentityNotFoundException] { return $null }
  $dn = "$($o.DistinguishedName)"
  $out = [ordered]@{ state = 'present'; domain = $domain; ou = $dn.Substring($dn.IndexOf(',') + 1) }
  if ($R.kind -eq 'ad_user') {
    $out['groups'] = @(Get-ADPrincipalGroupMembership -Identity $o @at | ForEach-Object { "$($_.Name)" })
    $out['enabled'] = [bool]$o.Enabled
  } else {
    $scopes = @{ Global = 'global'; DomainLocal = 'domain_local'; Universal = 'universal' }
    $out['scope'] = $scopes["$($o.GroupScope)"]
    $out['category'] = "$($o.GroupCategory)".ToLower()
  }
  $out
}
"""

READERS: dict[str, str] = {
    "package": _PACKAGE,
    "service": _SERVICE,
    "file": _PATH,
    "directory": _PATH,
    "user": _USER,
    "group": _GROUP,
    "setting": _SETTING,
    "firewall": _FIREWALL,
    "dns_client": _DNS,
    "windows_feature": _FEATURE,
    "ad_domain": _AD_DOMAIN,
    "domain_membership": _MEMBERSHIP,
    "ad_user": _AD_OBJECT,
    "ad_group": _AD_OBJECT,
}


def _reader(kind: str) -> str:
    """The kind's reader under its own name (`Get-ReaperState` → `Get-ReaperState_<kind>`)."""
    return READERS[kind].replace(
        "function Get-ReaperState(", f"function Get-ReaperState_{kind}(", 1
    )


def _unindented(script: str) -> str:
    """Without indentation and comment lines (the first, the action's marker, kept): the
    readers of every kind must fit one command line (base64 of UTF-16, almost three
    characters each), and no line of theirs is inside a here-string, whose text this would
    change."""
    first, _, rest = script.partition("\n")
    lines = (line.lstrip() for line in rest.splitlines())
    return first + "\n" + "".join(f"{line}\n" for line in lines if not line.startswith("#"))


def observe_script(kinds: Iterable[str]) -> str:
    """One script reading every resource of the list on stdin (a `resources=` line: base64
    of the JSON list, each `{kind, r}`: a lab's resources would not fit a command line),
    printing `{"resources": {"r0": props | null, ...}, "errors": {"r<i>": why}}`."""
    wanted = sorted(set(kinds))
    return _unindented(
        "# reaper-action: windows.observe\n"
        + "".join(_reader(k) for k in wanted)
        + r"""$Resources = @()
foreach ($line in "$reaperStdin".Split("`n")) {
  if ($line.StartsWith('resources=')) { $Resources = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($line.Substring(10).Trim())) | ConvertFrom-Json }
}
$found = [ordered]@{}
$errs = [ordered]@{}
$i = 0
foreach ($item in @($Resources)) {
  $key = "r$i"
  $i += 1
  try { $found[$key] = & "Get-ReaperState_$($item.kind)" $item.r }
  catch { $found[$key] = $null; $errs[$key] = "$($_.FullyQualifiedErrorId): $($_.Exception.Message)" }
}
[ordered]@{ resources = $found; errors = $errs } | ConvertTo-Json -Depth 6 -Compress
"""
    )
