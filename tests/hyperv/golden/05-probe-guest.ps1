# orchestrator-step: probe-guest
# One readiness probe. The caller retries with backoff: "A remote session might
# have ended" only means the guest has not finished booting yet.
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][string]$GuestUser,
    [Parameter(Mandatory = $true)][string]$GuestPassword
)
$ErrorActionPreference = 'Stop'
# The guest credential is built from two parameters; the password never appears in script text.
$secure = [System.Security.SecureString]::new()
foreach ($ch in $GuestPassword.ToCharArray()) { $secure.AppendChar($ch) }
$secure.MakeReadOnly()
$credential = [System.Management.Automation.PSCredential]::new($GuestUser, $secure)

$vm = Get-VM -Name $VMName
$state = [string]$vm.State
if ($state -ne 'Running') {
    Write-Output (ConvertTo-Json -Compress -InputObject @{ ready = $false; state = $state; reason = 'not running' })
    return
}
try {
    $answer = Invoke-Command -VMName $VMName -Credential $credential -ErrorAction Stop -ScriptBlock {
        $PSVersionTable.PSVersion.ToString()
    }
    Write-Output (ConvertTo-Json -Compress -InputObject @{ ready = $true; state = $state; guest = [string]$answer })
} catch {
    Write-Output (ConvertTo-Json -Compress -InputObject @{ ready = $false; state = $state; reason = [string]$_.Exception.Message })
}
