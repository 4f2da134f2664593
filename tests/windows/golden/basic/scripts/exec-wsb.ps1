# Run the guest runner in a started sandbox as System, with wsb exec, without
# waiting for it: wsb exec blocks until the command ends and has no timeout, so
# the host polls the output folder instead. Writes {"pid": <wsb exec process id>}.
param(
    [Parameter(Mandatory = $true)][string]$WsbPath,
    [Parameter(Mandatory = $true)][string]$Id,
    [Parameter(Mandatory = $true)][string]$Command
)

$ErrorActionPreference = 'Stop'
$arguments = 'exec --id "' + $Id + '" --run-as System --command "' + $Command + '"'
$process = Start-Process -FilePath $WsbPath -ArgumentList $arguments -WindowStyle Hidden -PassThru
Write-Output (ConvertTo-Json -InputObject @{ pid = [int]$process.Id } -Compress)
