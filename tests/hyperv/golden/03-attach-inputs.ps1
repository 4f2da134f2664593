# orchestrator-step: attach-inputs
# Read-only inputs: the job ISO goes into the DVD drive; each large data disk is a
# throw-away differencing child of the operator's data VHDX (the parent is never written).
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [string]$IsoPath = '',
    [string[]]$DataParents = @(),
    [string[]]$DataChildren = @(),
    [int]$ProcessorMaximum = 0
)
$ErrorActionPreference = 'Stop'

if ($DataParents.Count -ne $DataChildren.Count) {
    throw 'orchestrator: DataParents and DataChildren differ in length'
}
if ($ProcessorMaximum -gt 0) {
    # A pooled VM was booted before its job was known: apply the job's CPU cap now.
    Set-VMProcessor -VMName $VMName -Maximum $ProcessorMaximum
}
if ($IsoPath) {
    if (-not (Test-Path -LiteralPath $IsoPath -PathType Leaf)) {
        throw "orchestrator: input ISO not found: $IsoPath"
    }
    Get-VMDvdDrive -VMName $VMName | Set-VMDvdDrive -Path $IsoPath
}
for ($i = 0; $i -lt $DataParents.Count; $i++) {
    if (-not (Test-Path -LiteralPath $DataParents[$i] -PathType Leaf)) {
        throw "orchestrator: data disk not found: $($DataParents[$i])"
    }
    $null = New-VHD -Path $DataChildren[$i] -ParentPath $DataParents[$i] -Differencing
    Add-VMHardDiskDrive -VMName $VMName -ControllerType SCSI -Path $DataChildren[$i]
}
Write-Output (ConvertTo-Json -Compress -InputObject @{ vm = $VMName; iso = [bool]$IsoPath; disks = $DataChildren.Count })
