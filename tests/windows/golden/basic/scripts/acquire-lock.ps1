# Take the host-wide Windows Sandbox lock: a file created with CreateNew, so only
# one owner can hold it. A lock older than -StaleAfterSeconds (its owner
# crashed) is broken once. Writes one JSON string:
#   {"acquired": bool, "holder": "owner text", "broke_stale": bool}
param(
    [Parameter(Mandatory = $true)][string]$LockPath,
    [Parameter(Mandatory = $true)][string]$Owner,
    [Parameter(Mandatory = $true)][int]$StaleAfterSeconds
)

$ErrorActionPreference = 'Stop'
$utf8 = [System.Text.UTF8Encoding]::new($false)
[void][System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($LockPath))
$broke = $false
for ($attempt = 0; $attempt -lt 2; $attempt++) {
    try {
        $stream = [System.IO.File]::Open($LockPath, [System.IO.FileMode]::CreateNew, [System.IO.FileAccess]::Write, [System.IO.FileShare]::None)
        try {
            $bytes = $utf8.GetBytes($Owner)
            $stream.Write($bytes, 0, $bytes.Length)
        }
        finally {
            $stream.Dispose()
        }
        Write-Output (ConvertTo-Json -InputObject @{ acquired = $true; holder = $Owner; broke_stale = $broke } -Compress)
        return
    }
    catch [System.IO.IOException] {
        $age = ([System.DateTime]::UtcNow - [System.IO.File]::GetLastWriteTimeUtc($LockPath)).TotalSeconds
        if ($attempt -eq 0 -and $age -gt $StaleAfterSeconds) {
            [System.IO.File]::Delete($LockPath)
            $broke = $true
            continue
        }
        $holder = ''
        try {
            $holder = [System.IO.File]::ReadAllText($LockPath, $utf8)
        }
        catch {
            $holder = '?'
        }
        Write-Output (ConvertTo-Json -InputObject @{ acquired = $false; holder = $holder; broke_stale = $broke } -Compress)
        return
    }
}
