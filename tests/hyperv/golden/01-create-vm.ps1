# orchestrator-step: create-vm
# Per-job VM: a differencing child of the sealed base disk, Generation 2, static
# memory, capped CPU and disk I/O, no automatic checkpoints, secure boot, an empty
# DVD drive for the input ISO, resource metering on, and Notes carrying our marker.
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][string]$VMDir,
    [Parameter(Mandatory = $true)][string]$BaseVhd,
    [Parameter(Mandatory = $true)][string]$ChildVhd,
    [Parameter(Mandatory = $true)][long]$MemoryBytes,
    [Parameter(Mandatory = $true)][int]$ProcessorCount,
    [Parameter(Mandatory = $true)][int]$ProcessorMaximum,
    [long]$MaximumIOPS = 0,
    [Parameter(Mandatory = $true)][string]$SecureBootTemplate,
    [Parameter(Mandatory = $true)][string]$Notes
)
$ErrorActionPreference = 'Stop'

if (-not (Test-Path -LiteralPath $BaseVhd -PathType Leaf)) {
    throw "orchestrator: base image not found: $BaseVhd"
}
if (Get-VM -Name $VMName -ErrorAction SilentlyContinue) {
    throw "orchestrator: a VM named $VMName already exists"
}
$null = New-Item -ItemType Directory -Path $VMDir -Force
$null = New-VHD -Path $ChildVhd -ParentPath $BaseVhd -Differencing
$null = New-VM -Name $VMName -Generation 2 -MemoryStartupBytes $MemoryBytes -VHDPath $ChildVhd -Path $VMDir
Set-VM -Name $VMName -StaticMemory -ProcessorCount $ProcessorCount -Notes $Notes `
    -AutomaticCheckpointsEnabled $false -CheckpointType Disabled `
    -AutomaticStartAction Nothing -AutomaticStopAction TurnOff
Set-VMProcessor -VMName $VMName -Maximum $ProcessorMaximum
if ($MaximumIOPS -gt 0) {
    Get-VMHardDiskDrive -VMName $VMName | Set-VMHardDiskDrive -MaximumIOPS $MaximumIOPS
}
Set-VMFirmware -VMName $VMName -EnableSecureBoot On -SecureBootTemplate $SecureBootTemplate
Set-VMFirmware -VMName $VMName -FirstBootDevice (Get-VMHardDiskDrive -VMName $VMName)
Add-VMDvdDrive -VMName $VMName
Disable-VMIntegrationService -VMName $VMName -Name 'Guest Service Interface'
Enable-VMResourceMetering -VMName $VMName

Write-Output (ConvertTo-Json -Compress -InputObject @{ vm = $VMName; created = $true })
