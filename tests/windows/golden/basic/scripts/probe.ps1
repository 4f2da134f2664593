# Probe the host before a launch: which launch path exists (wsb.exe, or the
# classic WindowsSandbox.exe) and which sandboxes or sandbox processes are
# running now (left behind by a crash). Writes one JSON string:
#   {"wsb": path|null, "classic": path|null, "ids": [...], "processes": [{"name","id"}]}
param(
    [string[]]$WsbCandidates = @(),
    [string[]]$ProcessNames = @('WindowsSandbox', 'WindowsSandboxClient', 'WindowsSandboxRemoteSession')
)

$ErrorActionPreference = 'Stop'
$candidates = @($WsbCandidates)
if ($null -ne $env:LOCALAPPDATA) {
    $candidates += , [System.IO.Path]::Combine($env:LOCALAPPDATA, 'Microsoft\WindowsApps\wsb.exe')
}
$wsb = $null
foreach ($candidate in $candidates) {
    if ($null -eq $wsb -and $candidate -and (Test-Path -LiteralPath $candidate)) {
        $wsb = $candidate
    }
}
$classic = $null
$classicPath = [System.IO.Path]::Combine($env:SystemRoot, 'System32\WindowsSandbox.exe')
if (Test-Path -LiteralPath $classicPath) {
    $classic = $classicPath
}

$ids = @()
if ($null -ne $wsb) {
    $raw = @(& $wsb list --raw 2>$null)
    if ($LASTEXITCODE -eq 0 -and $raw.Count -gt 0) {
        $listed = ConvertFrom-Json -InputObject ($raw -join "`n")
        foreach ($environment in @($listed.WindowsSandboxEnvironments)) {
            if ($null -ne $environment) {
                $ids += , [string]$environment.Id
            }
        }
    }
}

$processes = @()
foreach ($process in @(Get-Process -Name $ProcessNames -ErrorAction SilentlyContinue)) {
    $processes += , @{ name = [string]$process.ProcessName; id = [int]$process.Id }
}

Write-Output (ConvertTo-Json -InputObject @{ wsb = $wsb; classic = $classic; ids = $ids; processes = $processes } -Depth 4 -Compress)
