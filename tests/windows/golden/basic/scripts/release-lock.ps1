# Release the host-wide lock if -Owner still holds it. Writes {"released": bool}.
param(
    [Parameter(Mandatory = $true)][string]$LockPath,
    [Parameter(Mandatory = $true)][string]$Owner
)

$ErrorActionPreference = 'Stop'
$utf8 = [System.Text.UTF8Encoding]::new($false)
$released = $false
if ([System.IO.File]::Exists($LockPath)) {
    if ([System.IO.File]::ReadAllText($LockPath, $utf8) -ceq $Owner) {
        [System.IO.File]::Delete($LockPath)
        $released = $true
    }
}
Write-Output (ConvertTo-Json -InputObject @{ released = $released } -Compress)
