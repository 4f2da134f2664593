# Start a sandbox the classic way: WindowsSandbox.exe opening a .wsb file whose
# LogonCommand starts the guest runner. Writes {"pid": <WindowsSandbox.exe id>}.
param(
    [Parameter(Mandatory = $true)][string]$ExePath,
    [Parameter(Mandatory = $true)][string]$ConfigPath
)

$ErrorActionPreference = 'Stop'
if (-not (Test-Path -LiteralPath $ConfigPath)) {
    throw "configuration file not found: $ConfigPath"
}
$process = Start-Process -FilePath $ExePath -ArgumentList ('"' + $ConfigPath + '"') -PassThru
Write-Output (ConvertTo-Json -InputObject @{ pid = [int]$process.Id } -Compress)
