# ruff: noqa: E501  (PowerShell is kept on one line per statement)
"""The PowerShell that converges one resource on Windows, one script per kind.

Every script is `param($R, [bool]$CheckMode)` with the declared resource as a JSON data block
(`$R`; see `reaper.agents.transports.powershell`: values are never code) and the same frame:
read the resource (`windows_observe`), change only what differs (each change goes through
`Invoke-ReaperChange`, which in check mode records that it would run and runs nothing), read
it again, and print one JSON document:

    {"before": props|null, "after": props|null, "changed": bool, "reboot_required": bool,
     "error": null | {"id": FullyQualifiedErrorId, "type": exception type, "message": ...}}

Secrets and file content never travel in `$R`: they arrive on stdin as `name=base64` lines,
kept by the wrapper in `$reaperStdin` (no parameter binding, so no module log records them)
and decoded by `Get-ReaperSecret` into a SecureString one character at a time (a .NET call:
`ConvertTo-SecureString -AsPlainText` would put the value in module logging's parameter
bindings). A pending reboot blocks the kinds that need one first with a `PendingReboot`
error (REBOOT_PENDING); a change that needs a restart is a success with reboot_required.
"""

from __future__ import annotations

from reaper.agents.oscode.windows_observe import READERS

__all__ = ["SCRIPTS", "ensure_script"]

_PRELUDE = r"""$out = [ordered]@{ before = $null; after = $null; changed = $false; reboot_required = $false; error = $null }
function Invoke-ReaperChange([scriptblock]$Change) {
  $out.changed = $true
  if (-not $CheckMode) { & $Change }
}
function Get-ReaperData([string]$Name) {
  foreach ($line in "$reaperStdin".Split("`n")) {
    $at = $line.IndexOf('=')
    # The unary comma keeps the byte[] whole: a function's output is unrolled (an empty file
    # would arrive as $null, a one-byte one as a byte).
    if ($at -gt 0 -and $line.Substring(0, $at) -eq $Name) { return ,([System.Convert]::FromBase64String($line.Substring($at + 1).Trim())) }
  }
  return $null
}
function Get-ReaperSecret([string]$Name) {
  $bytes = Get-ReaperData $Name
  if ($null -eq $bytes) { throw "SecretMissing: no $Name on stdin" }
  $s = New-Object System.Security.SecureString
  foreach ($c in [System.Text.Encoding]::UTF8.GetString($bytes).ToCharArray()) { $s.AppendChar($c) }
  $s.MakeReadOnly()
  return $s
}
function Assert-ReaperNoPendingReboot([string]$What) {
  # Servicing, Windows Update, and a domain join waiting for its restart (Netlogon).
  $keys = @('HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending', 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired', 'HKLM:\SYSTEM\CurrentControlSet\Services\Netlogon\JoinDomain')
  foreach ($k in $keys) { if (Test-Path -LiteralPath $k) { throw "PendingReboot: $What cannot run: a restart is pending from a previous installation or update" } }
}
"""

_FRAME_TAIL = r"""  if ($out.changed -and -not $CheckMode) { $out.after = Get-ReaperState $R }
} catch {
  $out.error = [ordered]@{ id = "$($_.FullyQualifiedErrorId)"; type = $_.Exception.GetType().FullName; message = "$($_.Exception.Message)" }
}
$out | ConvertTo-Json -Depth 6 -Compress
"""

# Chocolatey's 3010/1641: installed, a restart completes it.
_PACKAGE = r"""if (-not (Get-Command -Name 'choco.exe' -ErrorAction SilentlyContinue)) { throw 'CommandNotFoundException: choco.exe (Chocolatey) is not installed' }
if ($R.state -eq 'absent') {
  if ($out.before) { Assert-ReaperNoPendingReboot 'choco uninstall'; Invoke-ReaperChange { $text = @(& choco.exe uninstall $R.name -y --no-progress --limit-output) -join "`n"; if ($LASTEXITCODE -ne 0) { throw "ChocoFailed: exit $LASTEXITCODE`n$text" } } }
} elseif (-not $out.before -or ($R.version -and -not "$($out.before.version)".StartsWith("$($R.version)"))) {
  Assert-ReaperNoPendingReboot 'choco install'
  Invoke-ReaperChange {
    $argv = @('install', $R.name, '-y', '--no-progress', '--limit-output')
    if ($R.version) { $argv += @('--version', $R.version, '--allow-downgrade') }
    $text = @(& choco.exe @argv) -join "`n"
    if ($LASTEXITCODE -eq 3010 -or $LASTEXITCODE -eq 1641) { $out.reboot_required = $true }
    elseif ($LASTEXITCODE -ne 0) { throw "ChocoFailed: exit $LASTEXITCODE`n$text" }
  }
}
"""

_SERVICE = r"""if (-not $out.before) { throw "NoServiceFoundForGivenName: service $($R.name) was not found" }
if ($null -ne $R.enabled -and [bool]$R.enabled -ne [bool]$out.before.enabled) {
  $mode = 'Manual'
  if ($R.enabled) { $mode = 'Automatic' }
  Invoke-ReaperChange { Set-Service -Name $R.name -StartupType $mode }
}
if ($R.state -ne $out.before.state) {
  if ($R.state -eq 'running') { Invoke-ReaperChange { Start-Service -Name $R.name } }
  else { Invoke-ReaperChange { Stop-Service -Name $R.name -Force } }
}
"""

# Content (on stdin as `content`) is written to a temporary file beside the target and moved
# into place, only when its hash differs; the owner is set through the ACL when declared.
_PATH = r"""$path = $R.path
if ($R.state -eq 'absent') {
  if ($out.before) { Invoke-ReaperChange { Remove-Item -LiteralPath $path -Recurse -Force } }
} else {
  if (-not $out.before) {
    if ($R.kind -eq 'directory') { Invoke-ReaperChange { New-Item -ItemType Directory -Path $path -Force | Out-Null } }
    elseif ($null -eq $R.content_sha256) { Invoke-ReaperChange { New-Item -ItemType File -Path $path -Force | Out-Null } }
  }
  if ($R.content_sha256 -and ($null -eq $out.before -or $out.before.sha256 -ne $R.content_sha256)) {
    Invoke-ReaperChange {
      $dir = Split-Path -Parent $path
      if (-not (Test-Path -LiteralPath $dir)) { New-Item -ItemType Directory -Path $dir -Force | Out-Null }
      $tmp = Join-Path $dir ('.reaper.' + [guid]::NewGuid().ToString('N'))
      try {
        [System.IO.File]::WriteAllBytes($tmp, (Get-ReaperData 'content'))
        Move-Item -LiteralPath $tmp -Destination $path -Force
      } finally { if (Test-Path -LiteralPath $tmp) { Remove-Item -LiteralPath $tmp -Force } }
    }
  }
  if ($R.owner -and ($null -eq $out.before -or $out.before.owner -ne $R.owner)) {
    Invoke-ReaperChange {
      $acl = Get-Acl -LiteralPath $path
      $acl.SetOwner((New-Object System.Security.Principal.NTAccount($R.owner)))
      Set-Acl -LiteralPath $path -AclObject $acl
    }
  }
}
"""

# A password is set when the account is created, and with `update_password: always` on every
# run too: it cannot be read back to compare, so setting it is always a change.
_USER = r"""if ($R.state -eq 'absent') {
  if ($out.before) { Invoke-ReaperChange { Remove-LocalUser -Name $R.name } }
} else {
  if (-not $out.before) {
    Invoke-ReaperChange {
      if ($R.has_password) { New-LocalUser -Name $R.name -Password (Get-ReaperSecret 'password') | Out-Null }
      else { New-LocalUser -Name $R.name -NoPassword | Out-Null }
    }
  } elseif ($R.update_password -eq 'always' -and $R.has_password) {
    Invoke-ReaperChange { Set-LocalUser -Name $R.name -Password (Get-ReaperSecret 'password') }
  }
  $have = @()
  if ($out.before) { $have = @($out.before.groups) }
  foreach ($g in @($R.groups)) {
    if ($g -and $have -notcontains $g) { Invoke-ReaperChange { Add-LocalGroupMember -Group $g -Member $R.name } }
  }
  if ($null -ne $R.enabled -and ($null -eq $out.before -or [bool]$out.before.enabled -ne [bool]$R.enabled)) {
    if ($R.enabled) { Invoke-ReaperChange { Enable-LocalUser -Name $R.name } }
    else { Invoke-ReaperChange { Disable-LocalUser -Name $R.name } }
  }
}
"""

_GROUP = r"""if ($R.state -eq 'absent') {
  if ($out.before) { Invoke-ReaperChange { Remove-LocalGroup -Name $R.name } }
} elseif (-not $out.before) { Invoke-ReaperChange { New-LocalGroup -Name $R.name | Out-Null } }
"""

_SETTING = r"""$type = $R.type
if (-not $type -and $out.before) { $type = $out.before.type }
if (-not $type) { $type = 'string' }
$types = @{ string = 'String'; expand_string = 'ExpandString'; multi_string = 'MultiString'; dword = 'DWord'; qword = 'QWord' }
$differs = ($null -eq $out.before) -or ("$($out.before.value)" -ne "$($R.value)") -or ($R.type -and $out.before.type -ne $R.type)
if ($differs) {
  Invoke-ReaperChange {
    if (-not (Test-Path -LiteralPath $R.key)) { New-Item -Path $R.key -Force | Out-Null }
    $value = $R.value
    if ($type -eq 'multi_string') { $value = "$($R.value)".Split("`n") }
    Set-ItemProperty -LiteralPath $R.key -Name $R.value_name -Value $value -Type $types[$type]
  }
}
"""

# A rule that differs is replaced whole (remove, then add): its filters are one statement.
_FIREWALL = r"""$want = $R.state -ne 'absent'
$same = $out.before -and "$($out.before.port)" -eq "$($R.port)" -and $out.before.proto -eq $R.proto -and "$($out.before.source)" -eq "$($R.source)" -and $out.before.action -eq $R.action
if ($out.before -and (-not $want -or -not $same)) { Invoke-ReaperChange { Remove-NetFirewallRule -Name $R.rule_name } }
if ($want -and -not $same) {
  Invoke-ReaperChange {
    $protos = @{ tcp = 'TCP'; udp = 'UDP'; icmp = 'ICMPv4'; any = 'Any' }
    $rule = @{ Name = $R.rule_name; DisplayName = $R.rule_name; Direction = 'Inbound'; Protocol = $protos[$R.proto]; Description = "reaper action=$($R.action)" }
    $rule['Action'] = 'Block'
    if ($R.action -eq 'allow') { $rule['Action'] = 'Allow' }
    if ($null -ne $R.port) { $rule['LocalPort'] = "$($R.port)" }
    if ($R.source) { $rule['RemoteAddress'] = $R.source }
    New-NetFirewallRule @rule | Out-Null
  }
}
"""

_DNS = r"""if (-not $out.before) { throw "ObjectNotFound: no network interface $($R.name) with IPv4" }
if ((@($out.before.servers) -join ',') -ne (@($R.servers) -join ',')) {
  Invoke-ReaperChange { Set-DnsClientServerAddress -InterfaceIndex $out.before.interface_index -ServerAddresses @($R.servers) }
}
if (@($R.search).Count -gt 0 -and (@($out.before.search) -join ',') -ne (@($R.search) -join ',')) {
  Invoke-ReaperChange { Set-DnsClientGlobalSetting -SuffixSearchList @($R.search) }
}
"""

_FEATURE = r"""if ($R.state -eq 'absent') {
  if ($out.before) {
    Invoke-ReaperChange {
      $r = Uninstall-WindowsFeature -Name $R.name
      if (-not $r.Success) { throw "FeatureFailed: Uninstall-WindowsFeature $($R.name): $($r.ExitCode)" }
      if ("$($r.RestartNeeded)" -eq 'Yes') { $out.reboot_required = $true }
    }
  }
} elseif (-not $out.before) {
  if (-not (Get-WindowsFeature -Name $R.name)) { throw "NoFeatureFound: the role, role service, or feature name is not valid: $($R.name)" }
  Assert-ReaperNoPendingReboot 'Install-WindowsFeature'
  Invoke-ReaperChange {
    $r = Install-WindowsFeature -Name $R.name -IncludeManagementTools:([bool]$R.include_management_tools)
    if (-not $r.Success) { throw "FeatureFailed: Install-WindowsFeature $($R.name): $($r.ExitCode)" }
    if ("$($r.RestartNeeded)" -eq 'Yes') { $out.reboot_required = $true }
  }
}
"""

# Promotion restarts the host: -NoRebootOnCompletion leaves the restart to Reaper's reboot.
_AD_DOMAIN = r"""if (-not $out.before) {
  if (-not (Get-Command -Name 'Install-ADDSForest' -ErrorAction SilentlyContinue)) { throw 'CommandNotFoundException: Install-ADDSForest (install the AD-Domain-Services feature first)' }
  Assert-ReaperNoPendingReboot 'Install-ADDSForest'
  Invoke-ReaperChange {
    $forest = @{ DomainName = $R.name; DomainNetbiosName = $R.netbios; InstallDns = $true; NoRebootOnCompletion = $true; Force = $true }
    if ($R.functional_level) { $forest['ForestMode'] = $R.functional_level; $forest['DomainMode'] = $R.functional_level }
    Install-ADDSForest @forest -SafeModeAdministratorPassword (Get-ReaperSecret 'safe_mode_password') -WarningAction SilentlyContinue | Out-Null
    $out.reboot_required = $true
  }
}
"""

_MEMBERSHIP = r"""$user = $R.user
if (-not $user) { $user = "$($R.domain)\Administrator" }
if ($R.state -eq 'absent') {
  if ($out.before) {
    Invoke-ReaperChange {
      $leave = @{ WorkgroupName = 'WORKGROUP'; Force = $true }
      if ($R.has_password) { $leave['UnjoinDomainCredential'] = New-Object System.Management.Automation.PSCredential($user, (Get-ReaperSecret 'password')) }
      Remove-Computer @leave -WarningAction SilentlyContinue
      $out.reboot_required = $true
    }
  }
} elseif (-not $out.before) {
  Assert-ReaperNoPendingReboot 'Add-Computer'
  Invoke-ReaperChange {
    $join = @{ DomainName = $R.domain; Force = $true }
    if ($R.ou) { $join['OUPath'] = $R.ou }
    $join['Credential'] = New-Object System.Management.Automation.PSCredential($user, (Get-ReaperSecret 'password'))
    Add-Computer @join -WarningAction SilentlyContinue
    $out.reboot_required = $true
  }
}
"""

_AD_USER = r"""$at = @{}
if ($R.domain) { $at['Server'] = $R.domain }
if ($R.state -eq 'absent') {
  if ($out.before) { Invoke-ReaperChange { Remove-ADUser -Identity $R.name -Confirm:$false @at } }
} else {
  if (-not $out.before) {
    Invoke-ReaperChange {
      $new = @{ Name = $R.name; SamAccountName = $R.name; Enabled = [bool]$R.enabled }
      if ($R.ou) { $new['Path'] = $R.ou }
      if ($R.has_password) { $new['AccountPassword'] = Get-ReaperSecret 'password' }
      New-ADUser @new @at
    }
  } else {
    if ([bool]$out.before.enabled -ne [bool]$R.enabled) {
      if ($R.enabled) { Invoke-ReaperChange { Enable-ADAccount -Identity $R.name @at } }
      else { Invoke-ReaperChange { Disable-ADAccount -Identity $R.name @at } }
    }
    if ($R.ou -and $out.before.ou -ne $R.ou) { Invoke-ReaperChange { Get-ADUser -Identity $R.name @at | Move-ADObject -TargetPath $R.ou @at } }
    if ($R.update_password -eq 'always' -and $R.has_password) { Invoke-ReaperChange { Set-ADAccountPassword -Identity $R.name -Reset -NewPassword (Get-ReaperSecret 'password') @at } }
  }
  $have = @()
  if ($out.before) { $have = @($out.before.groups) }
  foreach ($g in @($R.groups)) {
    if ($g -and $have -notcontains $g) { Invoke-ReaperChange { Add-ADGroupMember -Identity $g -Members $R.name @at } }
  }
}
"""

_AD_GROUP = r"""$at = @{}
if ($R.domain) { $at['Server'] = $R.domain }
$scopes = @{ global = 'Global'; domain_local = 'DomainLocal'; universal = 'Universal' }
$categories = @{ security = 'Security'; distribution = 'Distribution' }
if ($R.state -eq 'absent') {
  if ($out.before) { Invoke-ReaperChange { Remove-ADGroup -Identity $R.name -Confirm:$false @at } }
} elseif (-not $out.before) {
  Invoke-ReaperChange {
    $new = @{ Name = $R.name; SamAccountName = $R.name; GroupScope = $scopes[$R.scope]; GroupCategory = $categories[$R.category] }
    if ($R.ou) { $new['Path'] = $R.ou }
    New-ADGroup @new @at
  }
} else {
  if ($out.before.scope -ne $R.scope) { Invoke-ReaperChange { Set-ADGroup -Identity $R.name -GroupScope $scopes[$R.scope] @at } }
  if ($out.before.category -ne $R.category) { Invoke-ReaperChange { Set-ADGroup -Identity $R.name -GroupCategory $categories[$R.category] @at } }
  if ($R.ou -and $out.before.ou -ne $R.ou) { Invoke-ReaperChange { Get-ADGroup -Identity $R.name @at | Move-ADObject -TargetPath $R.ou @at } }
}
"""

_SETTERS: dict[str, str] = {
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
    "ad_user": _AD_USER,
    "ad_group": _AD_GROUP,
}


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" if line else "\n" for line in text.splitlines())


def ensure_script(kind: str) -> str:
    """The full script of `windows.ensure_<kind>`."""
    return (
        f"# reaper-action: windows.ensure_{kind}\n"
        "param($R, [bool]$CheckMode)\n"
        + READERS[kind]
        + _PRELUDE
        + "try {\n  $out.before = Get-ReaperState $R\n  $out.after = $out.before\n"
        # Done before, completed by a restart not made yet: nothing runs again (every setter
        # acts only on what differs), and the result says the restart is still needed.
        + "  if ($out.before -and $out.before.restart_pending) { $out.reboot_required = $true }\n"
        + _indent(_SETTERS[kind])
        + _FRAME_TAIL
    )


SCRIPTS: dict[str, str] = {kind: ensure_script(kind) for kind in _SETTERS}
