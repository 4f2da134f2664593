# orchestrator-step: teardown
# Always the same, whatever happened before: power off (never ask the guest),
# remove the VM, delete its disks, ISO and folder (Remove-VM keeps disks), then
# verify that nothing is left. Safe to run again: missing things are skipped.
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [string[]]$Paths = @()
)
$ErrorActionPreference = 'Stop'

$problems = @()
$vm = Get-VM -Name $VMName -ErrorAction SilentlyContinue
if ($vm) {
    if ([string]$vm.State -ne 'Off') {
        try { Stop-VM -Name $VMName -TurnOff -Force } catch { $problems += 'Stop-VM: ' + $_.Exception.Message }
    }
    try { Remove-VM -Name $VMName -Force } catch { $problems += 'Remove-VM: ' + $_.Exception.Message }
}
foreach ($path in $Paths) {
    if (Test-Path -LiteralPath $path) {
        try { Remove-Item -LiteralPath $path -Recurse -Force } catch { $problems += 'Remove-Item: ' + $_.Exception.Message }
    }
}

$leftovers = @()
if (Get-VM -Name $VMName -ErrorAction SilentlyContinue) { $leftovers += 'vm:' + $VMName }
foreach ($path in $Paths) {
    if (Test-Path -LiteralPath $path) { $leftovers += $path }
}
Write-Output (ConvertTo-Json -Compress -InputObject @{ vm = $VMName; leftovers = $leftovers; problems = $problems })
