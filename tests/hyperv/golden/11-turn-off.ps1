# orchestrator-step: turn-off
# Pull the power: used when a job overruns its wall time or is cancelled.
param(
    [Parameter(Mandatory = $true)][string]$VMName
)
$ErrorActionPreference = 'Stop'

$vm = Get-VM -Name $VMName -ErrorAction SilentlyContinue
if ($vm -and [string]$vm.State -ne 'Off') {
    Stop-VM -Name $VMName -TurnOff -Force
}
$state = 'Missing'
$vm = Get-VM -Name $VMName -ErrorAction SilentlyContinue
if ($vm) { $state = [string]$vm.State }
Write-Output (ConvertTo-Json -Compress -InputObject @{ vm = $VMName; state = $state })
