# orchestrator-step: gc-list
# Lists what carries our marker: VMs whose name has our prefix and whose Notes
# start with the marker, and VM folders with our prefix. The caller decides what
# is orphaned (no live job owns it) and tears it down.
param(
    [Parameter(Mandatory = $true)][string]$Prefix,
    [Parameter(Mandatory = $true)][string]$Marker,
    [Parameter(Mandatory = $true)][string]$VMRoot
)
$ErrorActionPreference = 'Stop'

$vms = @()
$unmarked = @()
foreach ($vm in @(Get-VM)) {
    $notes = [string]$vm.Notes
    if (-not $vm.Name.StartsWith($Prefix)) { continue }
    if ($notes.StartsWith($Marker)) {
        $vms += @{ name = [string]$vm.Name; notes = $notes; state = [string]$vm.State }
    } else {
        # Our prefix but not our marker: never touched, and neither is a folder of that name.
        $unmarked += [string]$vm.Name
    }
}
$dirs = @()
if (Test-Path -LiteralPath $VMRoot) {
    foreach ($dir in Get-ChildItem -LiteralPath $VMRoot -Directory -Force) {
        if ($dir.Name.StartsWith($Prefix)) { $dirs += [string]$dir.Name }
    }
}
Write-Output (ConvertTo-Json -Compress -Depth 4 -InputObject @{ vms = $vms; unmarked = $unmarked; dirs = $dirs })
