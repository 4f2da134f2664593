# Start a sandbox with wsb.exe and an inline configuration (wsb start --config
# takes the XML itself, not a path). Writes {"id": "<sandbox id>"}.
param(
    [Parameter(Mandatory = $true)][string]$WsbPath,
    [Parameter(Mandatory = $true)][string]$Config
)

$ErrorActionPreference = 'Stop'
$raw = @(& $WsbPath start --config $Config --raw 2>&1)
if ($LASTEXITCODE -ne 0) {
    throw "wsb start failed with exit code ${LASTEXITCODE}: $($raw -join ' ')"
}
$started = ConvertFrom-Json -InputObject ($raw -join "`n")
Write-Output (ConvertTo-Json -InputObject @{ id = [string]$started.Id } -Compress)
