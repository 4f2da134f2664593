# Stop sandboxes: wsb stop for each of -Ids (when wsb.exe exists), then
# kill the Windows Sandbox processes by name (the classic path has no stop command).
# Writes {"remaining_ids": [...], "remaining_processes": [...]} so the caller can verify.
param(
    [string]$WsbPath = '',
    [string[]]$Ids = @(),
    [string[]]$ProcessNames = @('WindowsSandbox', 'WindowsSandboxClient', 'WindowsSandboxRemoteSession')
)

$ErrorActionPreference = 'Stop'
$remainingIds = @()
if ($WsbPath) {
    foreach ($id in $Ids) {
        if ($id) {
            $null = & $WsbPath stop --id $id 2>&1
        }
    }
    $raw = @(& $WsbPath list --raw 2>$null)
    if ($LASTEXITCODE -eq 0 -and $raw.Count -gt 0) {
        $listed = ConvertFrom-Json -InputObject ($raw -join "`n")
        foreach ($environment in @($listed.WindowsSandboxEnvironments)) {
            if ($null -ne $environment -and $Ids -contains [string]$environment.Id) {
                $remainingIds += , [string]$environment.Id
            }
        }
    }
}
foreach ($process in @(Get-Process -Name $ProcessNames -ErrorAction SilentlyContinue)) {
    Stop-Process -Id $process.Id -Force -ErrorAction SilentlyContinue
}
$deadline = [System.DateTime]::UtcNow.AddSeconds(10)
while ([System.DateTime]::UtcNow -lt $deadline -and @(Get-Process -Name $ProcessNames -ErrorAction SilentlyContinue).Count -gt 0) {
    [System.Threading.Thread]::Sleep(250)
}
$remainingProcesses = @()
foreach ($process in @(Get-Process -Name $ProcessNames -ErrorAction SilentlyContinue)) {
    $remainingProcesses += , @{ name = [string]$process.ProcessName; id = [int]$process.Id }
}
Write-Output (ConvertTo-Json -InputObject @{ remaining_ids = $remainingIds; remaining_processes = $remainingProcesses } -Depth 4 -Compress)
