# orchestrator-step: interactive/wsb-connect
# Open the Remote Desktop window of a running sandbox (`wsb connect --id`).
# The window is the session: the caller polls until the sandbox is gone.
param(
    [Parameter(Mandatory = $true)][string]$WsbPath,
    [Parameter(Mandatory = $true)][string]$Id
)
$ErrorActionPreference = 'Stop'
$process = Start-Process -FilePath $WsbPath -ArgumentList @('connect', '--id', $Id) -PassThru
Write-Output (ConvertTo-Json -InputObject @{ pid = [int]$process.Id } -Compress)
