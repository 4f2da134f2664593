# orchestrator-step: metering
# Resource usage since Enable-VMResourceMetering (at creation).
param(
    [Parameter(Mandatory = $true)][string]$VMName
)
$ErrorActionPreference = 'Stop'

$m = Measure-VM -Name $VMName
$seconds = 0.0
if ($m.MeteringDuration) { $seconds = [double]$m.MeteringDuration.TotalSeconds }
Write-Output (ConvertTo-Json -Compress -InputObject @{
    vm = $VMName
    average_processor_mhz = [double]$m.AverageProcessorUsage
    average_memory_mb = [double]$m.AverageMemoryUsage
    maximum_memory_mb = [double]$m.MaximumMemoryUsage
    minimum_memory_mb = [double]$m.MinimumMemoryUsage
    total_disk_allocation_mb = [double]$m.TotalDiskAllocation
    metering_seconds = $seconds
})
