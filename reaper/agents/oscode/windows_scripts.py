# ruff: noqa: E501  (PowerShell is kept on one line per statement)
"""The PowerShell behind the Windows actions: fixed texts with a `param(...)` block.

Values arrive only as parameters (see `reaper.agents.transports.powershell`); nothing here is
ever formatted with host facts or task params. Each script prints one JSON document.
Locale-independent lookups where Windows allows it: well-known SIDs (S-1-5-32-544
Administrators, RID 501 Guest) and the audit subcategory GUID rather than display names.
The first line of each names the action, which is handy in logs and lets tests route calls.
"""

from __future__ import annotations

__all__ = [
    "BASELINE",
    "BASELINE_ITEMS",
    "CLEANUP",
    "DIAGNOSE",
    "DISCOVER",
    "DISCOVER_SECTIONS",
    "PREPARE",
    "PREPARE_ITEMS",
    "REBOOT",
    "RUN_POWERSHELL",
]

DISCOVER_SECTIONS = (
    "computer", "addresses", "cpu", "memory_mb", "firewall", "rdp", "defender", "updates",
    "local_admins", "smb",
)  # fmt: skip

BASELINE_ITEMS = (
    "firewall_domain", "firewall_private", "firewall_public", "rdp_nla", "defender_realtime",
    "updates_auto", "smb1_disabled", "guest_disabled", "audit_logon",
)  # fmt: skip

PREPARE_ITEMS = ("defender", "firewall_service")

DISCOVER = r"""# reaper-action: windows.discover
param([string[]]$Sections)
$facts = [ordered]@{}
$errs = [ordered]@{}
function Add-Section([string]$Name, [scriptblock]$Block) {
  if ($Sections -and $Sections -notcontains $Name) { return }
  try { $facts[$Name] = & $Block }
  catch { $facts[$Name] = $null; $errs[$Name] = $_.Exception.Message }
}
function OnOff($v) { if ([string]$v -eq 'True') { 'on' } else { 'off' } }
$cs = $null
try { $cs = Get-CimInstance -ClassName Win32_ComputerSystem } catch { }
Add-Section 'computer' {
  if (-not $cs) { throw 'Win32_ComputerSystem unavailable' }
  $os = Get-CimInstance -ClassName Win32_OperatingSystem
  [ordered]@{ name = $cs.Name; domain = $cs.Domain; os_name = $os.Caption
    os_version = $os.Version; build = [string]$os.BuildNumber; description = $os.Description }
}
Add-Section 'addresses' {
  ,@(Get-NetIPAddress | Where-Object { $_.IPAddress -notlike '127.*' -and $_.IPAddress -ne '::1' } |
    ForEach-Object { [ordered]@{ iface = $_.InterfaceAlias; addr = $_.IPAddress } })
}
Add-Section 'cpu' {
  $p = @(Get-CimInstance -ClassName Win32_Processor)
  $n = ($p | Measure-Object -Property NumberOfLogicalProcessors -Sum).Sum
  [ordered]@{ model = ([string]$p[0].Name).Trim(); cores = [int]$n }
}
Add-Section 'memory_mb' {
  if (-not $cs) { throw 'Win32_ComputerSystem unavailable' }
  [int64]($cs.TotalPhysicalMemory / 1MB)
}
Add-Section 'firewall' {
  $f = @{}
  foreach ($p in Get-NetFirewallProfile) { $f[$p.Name.ToLower()] = OnOff $p.Enabled }
  [ordered]@{ domain = $f['domain']; private = $f['private']; public = $f['public'] }
}
Add-Section 'rdp' {
  $ts = 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server'
  [ordered]@{ enabled = ((Get-ItemProperty -Path $ts).fDenyTSConnections -eq 0)
    nla = ((Get-ItemProperty -Path "$ts\WinStations\RDP-Tcp").UserAuthentication -eq 1) }
}
Add-Section 'defender' {
  $mp = Get-MpComputerStatus
  [ordered]@{ realtime = [bool]$mp.RealTimeProtectionEnabled
    signatures_age_days = [int64]$mp.AntivirusSignatureAge }
}
Add-Section 'updates' {
  $key = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU'
  $au = Get-ItemProperty -Path $key -ErrorAction SilentlyContinue
  $last = Get-HotFix | Where-Object { $_.InstalledOn } |
    Sort-Object -Property InstalledOn -Descending | Select-Object -First 1
  [ordered]@{ auto = -not ($au -and $au.NoAutoUpdate -eq 1)
    last_installed = $(if ($last) { $last.InstalledOn.ToString('yyyy-MM-dd') } else { $null }) }
}
Add-Section 'local_admins' {
  $sid = New-Object System.Security.Principal.SecurityIdentifier('S-1-5-32-544')
  try { ,@(Get-LocalGroupMember -SID $sid | ForEach-Object { [string]$_.Name }) }
  catch {
    # Get-LocalGroupMember fails on orphaned SIDs; ADSI lists members all the same.
    $g = $sid.Translate([System.Security.Principal.NTAccount]).Value.Split('\')[-1]
    ,@(([ADSI]"WinNT://./$g,group").psbase.Invoke('Members') |
      ForEach-Object { [string]$_.GetType().InvokeMember('Name', 'GetProperty', $null, $_, $null) })
  }
}
Add-Section 'smb' {
  [ordered]@{ v1_enabled = [bool](Get-SmbServerConfiguration).EnableSMB1Protocol } }
$facts['discover_errors'] = $errs
$facts | ConvertTo-Json -Depth 6 -Compress
"""

# Shared by baseline and prepare: run one item (get → compare → set unless check mode → get
# again to prove it took), recording before/after or the error, and whether a cmdlet the
# item needs is missing (that is a prerequisite, fixed by `windows.prepare`).
_ITEM_RUNNER = r"""$results = New-Object System.Collections.ArrayList
function Invoke-ReaperItem([string]$Name, $Want, [scriptblock]$Get, [scriptblock]$Set) {
  if ($Items -and $Items -notcontains $Name) { return }
  $r = [ordered]@{ name = $Name; changed = $false; before = $null; after = $null
    error = $null; missing = $false }
  try {
    $r.before = & $Get
    $r.after = $r.before
    if ($r.before -ne $Want) {
      $r.changed = $true
      $r.after = $Want
      if (-not $CheckMode) {
        & $Set | Out-Null
        $r.after = & $Get
        if ($r.after -ne $Want) { throw "still '$($r.after)' after the change" }
      }
    }
  } catch {
    $r.error = $_.Exception.Message
    $r.missing = $_.Exception -is [System.Management.Automation.CommandNotFoundException]
  }
  [void]$results.Add($r)
}
"""

BASELINE = (
    r"""# reaper-action: windows.baseline
param([bool]$CheckMode = $false, [string[]]$Items)
"""
    + _ITEM_RUNNER
    + r"""foreach ($p in 'Domain', 'Private', 'Public') {
  Invoke-ReaperItem "firewall_$($p.ToLower())" 'on' {
    if ([string](Get-NetFirewallProfile -Name $p).Enabled -eq 'True') { 'on' } else { 'off' }
  } { Set-NetFirewallProfile -Name $p -Enabled True }
}
$rdp = 'HKLM:\SYSTEM\CurrentControlSet\Control\Terminal Server\WinStations\RDP-Tcp'
Invoke-ReaperItem 'rdp_nla' $true { (Get-ItemProperty -Path $rdp).UserAuthentication -eq 1 } {
  Set-ItemProperty -Path $rdp -Name UserAuthentication -Value 1 -Type DWord }
Invoke-ReaperItem 'defender_realtime' $true { -not (Get-MpPreference).DisableRealtimeMonitoring } {
  Set-MpPreference -DisableRealtimeMonitoring $false }
$au = 'HKLM:\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU'
Invoke-ReaperItem 'updates_auto' $true {
  $v = Get-ItemProperty -Path $au -ErrorAction SilentlyContinue
  -not ($v -and $v.NoAutoUpdate -eq 1)
} {
  if (-not (Test-Path $au)) { New-Item -Path $au -Force | Out-Null }
  Set-ItemProperty -Path $au -Name NoAutoUpdate -Value 0 -Type DWord }
Invoke-ReaperItem 'smb1_disabled' $false { [bool](Get-SmbServerConfiguration).EnableSMB1Protocol } {
  Set-SmbServerConfiguration -EnableSMB1Protocol $false -Force -Confirm:$false }
Invoke-ReaperItem 'guest_disabled' $false {
  [bool](Get-LocalUser | Where-Object { $_.SID.Value -like 'S-1-5-21-*-501' }).Enabled
} { Get-LocalUser | Where-Object { $_.SID.Value -like 'S-1-5-21-*-501' } | Disable-LocalUser }
$logon = '{0CCE9215-69AE-11D9-BED3-505054503030}'
Invoke-ReaperItem 'audit_logon' 3 {
  # "Setting Value" is numeric (1 success, 2 failure, 3 both) and not localised.
  $row = auditpol.exe /get /subcategory:$logon /r | Where-Object { $_ } | ConvertFrom-Csv
  if ($LASTEXITCODE) { throw "auditpol exited $LASTEXITCODE" }
  if ($row.'Setting Value') { [int]$row.'Setting Value' } else {
    switch ($row.'Inclusion Setting') {
      'Success and Failure' { 3 } 'Failure' { 2 } 'Success' { 1 } default { 0 } } }
} {
  auditpol.exe /set /subcategory:$logon /success:enable /failure:enable | Out-Null
  if ($LASTEXITCODE) { throw "auditpol exited $LASTEXITCODE" } }
[ordered]@{ check_mode = $CheckMode; items = $results.ToArray() } |
  ConvertTo-Json -Depth 5 -Compress
"""
)

PREPARE = (
    r"""# reaper-action: windows.prepare
param([string[]]$Items)
$CheckMode = $false
"""
    + _ITEM_RUNNER
    + r"""Invoke-ReaperItem 'defender' $true {
  if (Get-Command -Name Get-WindowsFeature -ErrorAction SilentlyContinue) {
    [bool](Get-WindowsFeature -Name Windows-Defender).Installed
  } else { [bool](Get-Command -Name Get-MpPreference -ErrorAction SilentlyContinue) }
} { Install-WindowsFeature -Name Windows-Defender }
Invoke-ReaperItem 'firewall_service' 'Automatic/Running' {
  $s = Get-Service -Name MpsSvc; "$($s.StartType)/$($s.Status)"
} { Set-Service -Name MpsSvc -StartupType Automatic; Start-Service -Name MpsSvc }
[ordered]@{ items = $results.ToArray() } | ConvertTo-Json -Depth 5 -Compress
"""
)

# Restart-Computer has no delay; for a delayed restart shutdown.exe takes the comment as one
# argument (native argument passing mangles embedded double quotes, so they are replaced).
REBOOT = r"""# reaper-action: windows.reboot
param([int]$DelayS = 0, [string]$Reason = '')
if ($DelayS -gt 0) {
  $comment = ($Reason -replace '["\\]', "'")
  if (-not $comment) { $comment = 'reaper reboot' }
  shutdown.exe /r /t $DelayS /d p:0:0 /c $comment | Out-Null
  if ($LASTEXITCODE) { throw "shutdown.exe exited $LASTEXITCODE" }
} else { Restart-Computer -Force }
[ordered]@{ scheduled = $true; delay_s = $DelayS } | ConvertTo-Json -Compress
"""

# Read-only: each topic is a string report (Format-Table/Out-String), plus findings computed here
# from structured values, so the agent parses one JSON document and no display text.
DIAGNOSE = r"""# reaper-action: windows.diagnose
param([string[]]$Topics, [string]$Service = '', [string]$Target = '', [int]$Port = 0, [int]$LogLines = 40)
$report = [ordered]@{}
$findings = New-Object System.Collections.Generic.List[string]
function Text($v) { ($v | Out-String -Width 160).Trim() }
function Add-Topic([string]$Name, [scriptblock]$Block) {
  if ($Topics -notcontains $Name) { return }
  try { $report[$Name] = & $Block } catch { $report[$Name] = "error: $($_.Exception.Message)" }
}
Add-Topic 'disk' {
  $vols = @(Get-CimInstance -ClassName Win32_LogicalDisk -Filter 'DriveType=3')
  foreach ($v in $vols) { if ($v.Size -gt 0) { $pct = [int](100 - 100 * $v.FreeSpace / $v.Size)
    if ($pct -ge 90) { $findings.Add("disk $($v.DeviceID) is $pct% full") } } }
  Text ($vols | Select-Object DeviceID, @{n='SizeGB';e={[math]::Round($_.Size/1GB,1)}}, @{n='FreeGB';e={[math]::Round($_.FreeSpace/1GB,1)}})
}
Add-Topic 'packages' {
  $pending = Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending'
  if ($pending) { $findings.Add('a reboot is pending (component servicing)') }
  $busy = @(Get-Process -Name TiWorker, msiexec, TrustedInstaller -ErrorAction SilentlyContinue)
  if ($busy.Count) { $findings.Add("installer busy: $($busy[0].Name) pid $($busy[0].Id)") }
  $wu = Get-Service -Name wuauserv -ErrorAction SilentlyContinue
  Text ([ordered]@{ reboot_pending = $pending; windows_update = [string]$wu.Status; installers = ($busy | ForEach-Object { "$($_.Name) $($_.Id)" }) -join ', ' })
}
Add-Topic 'service' {
  if (-not $Service) { return 'no service named: pass `service` to see its status and log' }
  $s = Get-Service -Name $Service -ErrorAction Stop
  if ([string]$s.Status -ne 'Running') { $findings.Add("service $Service is $([string]$s.Status)") }
  $events = @(Get-WinEvent -FilterHashtable @{ LogName = 'System'; ProviderName = 'Service Control Manager' } -MaxEvents 200 -ErrorAction SilentlyContinue |
    Where-Object { $_.Message -like "*$($s.DisplayName)*" } | Select-Object -First $LogLines)
  (Text ($s | Select-Object Name, DisplayName, Status, StartType)) + "`n#log`n" + (Text ($events | Select-Object TimeCreated, Id, LevelDisplayName, Message))
}
Add-Topic 'network' {
  $out = Text (Get-NetIPConfiguration | Select-Object InterfaceAlias, IPv4Address, IPv4DefaultGateway)
  $out += "`n#resolvers`n" + (Text (Get-DnsClientServerAddress -AddressFamily IPv4 | Select-Object InterfaceAlias, ServerAddresses))
  $out += "`n#listening`n" + (Text (Get-NetTCPConnection -State Listen | Select-Object LocalAddress, LocalPort, OwningProcess | Sort-Object LocalPort))
  if ($Target) {
    try { $null = Resolve-DnsName -Name $Target -ErrorAction Stop; $out += "`n#resolve`nresolved $Target" }
    catch { $findings.Add("$Target does not resolve"); $out += "`n#resolve`nunresolved $Target" }
    if ($Port -gt 0) { $t = Test-NetConnection -ComputerName $Target -Port $Port -WarningAction SilentlyContinue
      if (-not $t.TcpTestSucceeded) { $findings.Add("port ${Target}:$Port is closed") } }
  }
  $out
}
Add-Topic 'time' {
  $status = (w32tm /query /status 2>&1 | Out-String).Trim()
  ((Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')) + "`n" + $status
}
Add-Topic 'processes' {
  Text (Get-Process | Sort-Object CPU -Descending | Select-Object -First 15 Id, ProcessName, CPU, @{n='WorkingSetMB';e={[int]($_.WorkingSet64/1MB)}})
}
[ordered]@{ report = $report; findings = @($findings) } | ConvertTo-Json -Compress -Depth 4
"""

CLEANUP = r"""# reaper-action: windows.cleanup
param([string[]]$Targets, [int]$OlderThanDays = 7, [bool]$CheckMode = $false)
$cut = (Get-Date).AddDays(-$OlderThanDays)
$totals = [ordered]@{}
function Sweep([string]$Name, [string[]]$Paths, [string[]]$Include) {
  if ($Targets -notcontains $Name) { return }
  $files = @(foreach ($p in $Paths) { if (Test-Path -LiteralPath $p) {
    Get-ChildItem -LiteralPath $p -Recurse -File -Force -Include $Include -ErrorAction SilentlyContinue |
      Where-Object { $_.LastWriteTime -lt $cut } } })
  $bytes = [int64]($files | Measure-Object -Property Length -Sum).Sum
  if (-not $CheckMode) { $files | Remove-Item -Force -ErrorAction SilentlyContinue }
  $totals[$Name] = [ordered]@{ files = $files.Count; bytes = $bytes }
}
Sweep 'package_cache' @("$env:WINDIR\SoftwareDistribution\Download") @('*')
Sweep 'temp' @($env:TEMP, "$env:WINDIR\Temp") @('*')
Sweep 'old_logs' @("$env:WINDIR\Logs\CBS", "$env:WINDIR\Logs\DISM") @('*.log', '*.cab')
[ordered]@{ targets = $totals; check_mode = $CheckMode } | ConvertTo-Json -Compress -Depth 4
"""

# The operator approved this script; it runs in its own script block so that its output, not
# ours, is what comes back, and its failure is an exit code like any command's.
RUN_POWERSHELL = r"""# reaper-action: windows.run_powershell
param([string]$Script)
$ErrorActionPreference = 'Stop'
& ([scriptblock]::Create($Script))
"""
