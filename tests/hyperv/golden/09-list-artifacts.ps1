# orchestrator-step: list-artifacts
# Lists workspace files that may match the artifact patterns (the caller re-checks
# every name and size: the listing comes from the guest and is not trusted).
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][string]$GuestUser,
    [Parameter(Mandatory = $true)][string]$GuestPassword,
    [Parameter(Mandatory = $true)][string]$Workspace,
    [Parameter(Mandatory = $true)][string[]]$Patterns,
    [Parameter(Mandatory = $true)][int]$MaxFiles
)
$ErrorActionPreference = 'Stop'
# The guest credential is built from two parameters; the password never appears in script text.
$secure = [System.Security.SecureString]::new()
foreach ($ch in $GuestPassword.ToCharArray()) { $secure.AppendChar($ch) }
$secure.MakeReadOnly()
$credential = [System.Management.Automation.PSCredential]::new($GuestUser, $secure)

$guestArgs = @($Workspace, $Patterns, $MaxFiles)
$found = Invoke-Command -VMName $VMName -Credential $credential -ErrorAction Stop -ArgumentList $guestArgs -ScriptBlock {
    param($Workspace, $Patterns, $MaxFiles)
    $root = [System.IO.Path]::GetFullPath($Workspace).TrimEnd('\') + '\'
    $out = @()
    # Junctions (the read-only mounts) are not followed: inputs are not artifacts.
    foreach ($item in Get-ChildItem -LiteralPath $Workspace -Recurse -File -Force -ErrorAction SilentlyContinue) {
        if ($item.Attributes -band [System.IO.FileAttributes]::ReparsePoint) { continue }
        $rel = $item.FullName.Substring($root.Length).Replace('\', '/')
        foreach ($pattern in $Patterns) {
            if ($rel -like $pattern) {
                $out += [string]$item.Length + '|' + $rel
                break
            }
        }
        if ($out.Count -ge $MaxFiles) { break }
    }
    $out
}
Write-Output (ConvertTo-Json -Compress -InputObject @{ vm = $VMName; files = @($found) })
