# Report the progress of a job from its output folder: the runner writes
# "started" when it starts and "done" after result.json. -ExecPid (0 for none)
# is the detached wsb exec process. Writes {"started", "done", "exec_running"}.
param(
    [Parameter(Mandatory = $true)][string]$OutDir,
    [int]$ExecPid = 0
)

$ErrorActionPreference = 'Stop'
$running = $false
if ($ExecPid -gt 0) {
    $running = $null -ne (Get-Process -Id $ExecPid -ErrorAction SilentlyContinue)
}
$started = Test-Path -LiteralPath ([System.IO.Path]::Combine($OutDir, 'started'))
$done = Test-Path -LiteralPath ([System.IO.Path]::Combine($OutDir, 'done'))
Write-Output (ConvertTo-Json -InputObject @{ started = $started; done = $done; exec_running = $running } -Compress)
