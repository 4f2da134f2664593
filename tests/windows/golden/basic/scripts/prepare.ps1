# Create a fresh per-job folder tree under the staging root: -Root is removed
# if it exists, then it and each of -Directories (paths under it) are created
# empty. Refuses a -Root outside -StagingRoot. Writes {"root": path}.
param(
    [Parameter(Mandatory = $true)][string]$StagingRoot,
    [Parameter(Mandatory = $true)][string]$Root,
    [string[]]$Directories = @()
)

$ErrorActionPreference = 'Stop'
$base = [System.IO.Path]::GetFullPath($StagingRoot).TrimEnd('\') + '\'
$full = [System.IO.Path]::GetFullPath($Root)
if (-not $full.StartsWith($base, [System.StringComparison]::OrdinalIgnoreCase)) {
    throw "refusing to prepare $full outside $base"
}
if (Test-Path -LiteralPath $full) {
    Remove-Item -LiteralPath $full -Recurse -Force
}
[void][System.IO.Directory]::CreateDirectory($full)
foreach ($directory in $Directories) {
    $child = [System.IO.Path]::GetFullPath($directory)
    if (-not $child.StartsWith($full.TrimEnd('\') + '\', [System.StringComparison]::OrdinalIgnoreCase)) {
        throw "refusing to create $child outside $full"
    }
    [void][System.IO.Directory]::CreateDirectory($child)
}
Write-Output (ConvertTo-Json -InputObject @{ root = $full } -Compress)
