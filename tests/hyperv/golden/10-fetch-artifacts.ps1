# orchestrator-step: fetch-artifacts
# Copies chosen guest files to a host staging folder with Copy-Item -FromSession.
# Host names are indexes, never guest-chosen names; a copy above its cap is deleted.
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][string]$GuestUser,
    [Parameter(Mandatory = $true)][string]$GuestPassword,
    [Parameter(Mandatory = $true)][string]$Workspace,
    [Parameter(Mandatory = $true)][string[]]$GuestPaths,
    [Parameter(Mandatory = $true)][long[]]$MaxBytes,
    [Parameter(Mandatory = $true)][string]$HostDir
)
$ErrorActionPreference = 'Stop'
# The guest credential is built from two parameters; the password never appears in script text.
$secure = [System.Security.SecureString]::new()
foreach ($ch in $GuestPassword.ToCharArray()) { $secure.AppendChar($ch) }
$secure.MakeReadOnly()
$credential = [System.Management.Automation.PSCredential]::new($GuestUser, $secure)

if ($GuestPaths.Count -ne $MaxBytes.Count) { throw 'orchestrator: GuestPaths and MaxBytes differ in length' }
$null = New-Item -ItemType Directory -Path $HostDir -Force
$session = New-PSSession -VMName $VMName -Credential $credential
$copied = @()
try {
    for ($i = 0; $i -lt $GuestPaths.Count; $i++) {
        $source = [System.IO.Path]::Combine($Workspace, $GuestPaths[$i].Replace('/', '\'))
        $target = [System.IO.Path]::Combine($HostDir, [string]$i + '.bin')
        Copy-Item -FromSession $session -LiteralPath $source -Destination $target -Force
        $size = [System.IO.FileInfo]::new($target).Length
        if ($size -gt $MaxBytes[$i]) {
            Remove-Item -LiteralPath $target -Force
            $copied += @{ index = $i; size = $size; kept = $false }
        } else {
            $copied += @{ index = $i; size = $size; kept = $true; path = $target }
        }
    }
} finally {
    Remove-PSSession -Session $session
}
Write-Output (ConvertTo-Json -Compress -Depth 4 -InputObject @{ vm = $VMName; files = $copied })
