# orchestrator-step: interactive/hyperv-line
# One line of an interactive `orchestrator up --provider hyperv` session, run in
# the VM over PowerShell Direct. The line is the user's own input, executed in
# the guest by design; it reaches this script as a parameter, never as script
# text. The working directory carries over between lines ($Cwd); variables do
# not (each line gets a fresh guest runspace). What comes back is capped text.
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][string]$GuestUser,
    [Parameter(Mandatory = $true)][string]$GuestPassword,
    [Parameter(Mandatory = $true)][AllowEmptyString()][string]$Command,
    [Parameter(Mandatory = $true)][string]$Cwd,
    [int]$Width = 120,
    [int]$MaxOutputChars = 1048576
)
$ErrorActionPreference = 'Stop'
$secure = [System.Security.SecureString]::new()
foreach ($ch in $GuestPassword.ToCharArray()) { $secure.AppendChar($ch) }
$secure.MakeReadOnly()
$credential = [System.Management.Automation.PSCredential]::new($GuestUser, $secure)

$guestArgs = @($Command, $Cwd, $Width)
$reply = Invoke-Command -VMName $VMName -Credential $credential -ErrorAction Stop -ArgumentList $guestArgs -ScriptBlock {
    param($Command, $Cwd, $Width)
    $ErrorActionPreference = 'Continue'
    if (Test-Path -LiteralPath $Cwd) { Set-Location -LiteralPath $Cwd }
    $text = try {
        . ([scriptblock]::Create($Command)) 2>&1 | Out-String -Width $Width
    } catch {
        $_ | Out-String -Width $Width
    }
    @{ output = [string]$text; cwd = [string](Get-Location).Path }
}
$out = @{ output = [string]$reply.output; cwd = [string]$reply.cwd; truncated = $false }
if ($out.output.Length -gt $MaxOutputChars) {
    $out.output = $out.output.Substring(0, $MaxOutputChars)
    $out.truncated = $true
}
Write-Output (ConvertTo-Json -Compress -InputObject $out)
