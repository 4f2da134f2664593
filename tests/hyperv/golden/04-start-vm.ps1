# orchestrator-step: start-vm
param(
    [Parameter(Mandatory = $true)][string]$VMName
)
$ErrorActionPreference = 'Stop'

Start-VM -Name $VMName
$vm = Get-VM -Name $VMName
Write-Output (ConvertTo-Json -Compress -InputObject @{ vm = $VMName; state = [string]$vm.State })
