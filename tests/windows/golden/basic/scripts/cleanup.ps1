# Remove a per-job folder tree (job files, staged inputs, output) from the host.
# Refuses a -Root outside -StagingRoot. Writes {"removed": bool}.
param(
    [Parameter(Mandatory = $true)][string]$StagingRoot,
    [Parameter(Mandatory = $true)][string]$Root
)

$ErrorActionPreference = 'Stop'
$base = [System.IO.Path]::GetFullPath($StagingRoot).TrimEnd('\') + '\'
$full = [System.IO.Path]::GetFullPath($Root)
if (-not $full.StartsWith($base, [System.StringComparison]::OrdinalIgnoreCase)) {
    throw "refusing to remove $full outside $base"
}
$removed = $false
if (Test-Path -LiteralPath $full) {
    Remove-Item -LiteralPath $full -Recurse -Force
    $removed = $true
}
Write-Output (ConvertTo-Json -InputObject @{ removed = $removed } -Compress)
