# List the files the runner copied to <OutDir>\artifacts (relative path and
# size, at most -MaxEntries). Writes {"files": [{"path", "size"}], "more": bool}.
param(
    [Parameter(Mandatory = $true)][string]$OutDir,
    [int]$MaxEntries = 1000
)

$ErrorActionPreference = 'Stop'
$root = [System.IO.Path]::GetFullPath([System.IO.Path]::Combine($OutDir, 'artifacts')).TrimEnd('\') + '\'
$files = @()
$more = $false
if (Test-Path -LiteralPath $root) {
    foreach ($item in @(Get-ChildItem -LiteralPath $root -Recurse -File -Force)) {
        if ($files.Count -ge $MaxEntries) {
            $more = $true
            break
        }
        $files += , @{ path = $item.FullName.Substring($root.Length).Replace('\', '/'); size = [long]$item.Length }
    }
}
Write-Output (ConvertTo-Json -InputObject @{ files = $files; more = $more } -Depth 4 -Compress)
