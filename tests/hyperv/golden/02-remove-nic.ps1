# orchestrator-step: remove-nic
# New-VM always adds one network adapter: remove every adapter, then prove none is left.
param(
    [Parameter(Mandatory = $true)][string]$VMName
)
$ErrorActionPreference = 'Stop'

foreach ($adapter in @(Get-VMNetworkAdapter -VMName $VMName)) {
    Remove-VMNetworkAdapter -VMNetworkAdapter $adapter
}
$left = @(Get-VMNetworkAdapter -VMName $VMName)
if ($left.Count -ne 0) {
    throw "orchestrator: $($left.Count) network adapter(s) still attached to $VMName"
}
Write-Output (ConvertTo-Json -Compress -InputObject @{ vm = $VMName; adapters = $left.Count })
