# Builds a sealed, read-only golden image for the hyperv provider.
#
#   .\build-image.ps1 -Version win2022-v1 -SourceIso D:\iso\server2022.iso -ImageIndex 2 `
#       -UnattendDir C:\build\unattend -PythonInstaller C:\build\python-3.12.8-amd64.exe `
#       -RunnerPath C:\src\sandbox-orchestrator\templates\guest\runner.ps1
#   (or -SourceVhdx D:\vhd\prepared.vhdx instead of -SourceIso/-ImageIndex)
#
# Run elevated on the Hyper-V host. The unattend files come from
#   python -m orchestrator.providers.hyperv.image --secrets secrets.json --output-dir C:\build\unattend
# and are deleted from the build folder at the end. Output:
#   <ImagesDir>\<Version>\base.vhdx      read-only, the parent of every job's differencing disk
#   <ImagesDir>\<Version>\manifest.json  version, sha256, size, source, installed components
param(
    [Parameter(Mandatory = $true)][string]$Version,
    [string]$SourceIso = '',
    [int]$ImageIndex = 1,
    [string]$SourceVhdx = '',
    [Parameter(Mandatory = $true)][string]$UnattendDir,
    [Parameter(Mandatory = $true)][string]$PythonInstaller,
    [Parameter(Mandatory = $true)][string]$RunnerPath,
    [string]$ImagesDir = 'C:\ProgramData\Orchestrator\images',
    [long]$SizeBytes = 68719476736,  # 64 GB
    [int]$BuildTimeoutMinutes = 90
)
$ErrorActionPreference = 'Stop'

if ($Version -notmatch '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$') { throw "invalid version $Version" }
if ([bool]$SourceIso -eq [bool]$SourceVhdx) { throw 'give exactly one of -SourceIso or -SourceVhdx' }
$target = [System.IO.Path]::Combine($ImagesDir, $Version)
if (Test-Path -LiteralPath $target) { throw "image $Version already exists: versions are immutable" }
$work = [System.IO.Path]::Combine($ImagesDir, ".build-$Version")
$null = New-Item -ItemType Directory -Path $work -Force
$vhdx = [System.IO.Path]::Combine($work, 'base.vhdx')
$vmName = "orch-imagebuild-$Version"

# 1. A disk holding Windows, from the ISO (apply install.wim) or a copy of an existing VHDX.
if ($SourceIso) {
    $iso = Mount-DiskImage -ImagePath $SourceIso -PassThru
    try {
        $isoLetter = ($iso | Get-Volume).DriveLetter
        $wim = "${isoLetter}:\sources\install.wim"
        $null = New-VHD -Path $vhdx -SizeBytes $SizeBytes -Dynamic
        $disk = Mount-VHD -Path $vhdx -Passthru | Get-Disk
        Initialize-Disk -Number $disk.Number -PartitionStyle GPT
        $efi = New-Partition -DiskNumber $disk.Number -Size 272629760 -GptType '{c12a7328-f81f-11d2-ba4b-00a0c93ec93b}'
        $null = Format-Volume -Partition $efi -FileSystem FAT32 -NewFileSystemLabel 'System'
        $null = New-Partition -DiskNumber $disk.Number -Size 16777216 -GptType '{e3c9e316-0b5c-4db8-817d-f92df00215ae}'
        $os = New-Partition -DiskNumber $disk.Number -UseMaximumSize -AssignDriveLetter
        $null = Format-Volume -Partition $os -FileSystem NTFS -NewFileSystemLabel 'Windows'
        $efiPath = [System.IO.Path]::Combine($work, 'efi')
        $null = New-Item -ItemType Directory -Path $efiPath -Force
        Add-PartitionAccessPath -DiskNumber $disk.Number -PartitionNumber $efi.PartitionNumber -AccessPath $efiPath
        $windows = "$($os.DriveLetter):\"
        $null = Expand-WindowsImage -ImagePath $wim -Index $ImageIndex -ApplyPath $windows
        & bcdboot.exe "${windows}Windows" /s $efiPath /f UEFI
        if ($LASTEXITCODE -ne 0) { throw "bcdboot failed with $LASTEXITCODE" }
        Remove-PartitionAccessPath -DiskNumber $disk.Number -PartitionNumber $efi.PartitionNumber -AccessPath $efiPath
    } finally {
        Dismount-DiskImage -ImagePath $SourceIso | Out-Null
    }
} else {
    Copy-Item -LiteralPath $SourceVhdx -Destination $vhdx
    $disk = Mount-VHD -Path $vhdx -Passthru | Get-Disk
    $os = Get-Partition -DiskNumber $disk.Number | Sort-Object -Property Size -Descending | Select-Object -First 1
    $windows = "$($os.DriveLetter):\"
}

# 2. Answer file for the first boot, setup script, runtimes and the guest runner.
try {
    $panther = [System.IO.Path]::Combine($windows, 'Windows', 'Panther')
    $setup = [System.IO.Path]::Combine($windows, 'Orchestrator', 'setup')
    $null = New-Item -ItemType Directory -Path $panther -Force
    $null = New-Item -ItemType Directory -Path $setup -Force
    Copy-Item -LiteralPath ([System.IO.Path]::Combine($UnattendDir, 'unattend-build.xml')) -Destination ([System.IO.Path]::Combine($panther, 'unattend.xml'))
    Copy-Item -LiteralPath ([System.IO.Path]::Combine($UnattendDir, 'unattend-seal.xml')) -Destination ([System.IO.Path]::Combine($setup, 'unattend-seal.xml'))
    Copy-Item -LiteralPath ([System.IO.Path]::Combine($PSScriptRoot, 'setup-guest.ps1')) -Destination $setup
    Copy-Item -LiteralPath $RunnerPath -Destination ([System.IO.Path]::Combine($setup, 'runner.ps1'))
    Copy-Item -LiteralPath $PythonInstaller -Destination ([System.IO.Path]::Combine($setup, 'python-installer.exe'))
} finally {
    Dismount-VHD -Path $vhdx
}

# 3. Boot it once with no network: setup-guest.ps1 installs everything, then sysprep shuts it down.
$null = New-VM -Name $vmName -Generation 2 -MemoryStartupBytes 4294967296 -VHDPath $vhdx -Path $work
try {
    foreach ($adapter in @(Get-VMNetworkAdapter -VMName $vmName)) { Remove-VMNetworkAdapter -VMNetworkAdapter $adapter }
    Set-VM -Name $vmName -ProcessorCount 2 -AutomaticCheckpointsEnabled $false -CheckpointType Disabled
    Set-VMFirmware -VMName $vmName -EnableSecureBoot On -SecureBootTemplate MicrosoftWindows
    Start-VM -Name $vmName
    $deadline = (Get-Date).AddMinutes($BuildTimeoutMinutes)
    while ((Get-VM -Name $vmName).State -ne 'Off') {
        if ((Get-Date) -gt $deadline) { throw "image build did not finish within $BuildTimeoutMinutes minutes" }
        Start-Sleep -Seconds 15
    }
} finally {
    Stop-VM -Name $vmName -TurnOff -Force -ErrorAction SilentlyContinue
    Remove-VM -Name $vmName -Force
}

# 4. Read the components the guest recorded, remove the setup files' secrets, seal, hash, manifest.
$disk = Mount-VHD -Path $vhdx -Passthru | Get-Disk
try {
    $os = Get-Partition -DiskNumber $disk.Number | Sort-Object -Property Size -Descending | Select-Object -First 1
    $root = "$($os.DriveLetter):\"
    $componentsFile = [System.IO.Path]::Combine($root, 'Orchestrator', 'components.json')
    if (-not (Test-Path -LiteralPath $componentsFile)) { throw 'setup-guest.ps1 did not record its components' }
    $components = Get-Content -LiteralPath $componentsFile -Raw | ConvertFrom-Json
    # Windows\Panther\unattend.xml is now sysprep's copy of the seal answer file (no passwords); keep it.
    foreach ($leftover in @('Orchestrator\setup')) {
        $path = [System.IO.Path]::Combine($root, $leftover)
        if (Test-Path -LiteralPath $path) { Remove-Item -LiteralPath $path -Recurse -Force }
    }
} finally {
    Dismount-VHD -Path $vhdx
}
$null = New-Item -ItemType Directory -Path $target -Force
$base = [System.IO.Path]::Combine($target, 'base.vhdx')
Move-Item -LiteralPath $vhdx -Destination $base
$hash = (Get-FileHash -LiteralPath $base -Algorithm SHA256).Hash.ToLowerInvariant()
$manifest = [ordered]@{
    version    = $Version
    sha256     = $hash
    size_bytes = [System.IO.FileInfo]::new($base).Length
    created    = (Get-Date).ToUniversalTime().ToString('o')
    source     = if ($SourceIso) { "iso:$([System.IO.Path]::GetFileName($SourceIso)):$ImageIndex" } else { "vhdx:$([System.IO.Path]::GetFileName($SourceVhdx))" }
    components = $components
}
Set-Content -LiteralPath ([System.IO.Path]::Combine($target, 'manifest.json')) -Value (ConvertTo-Json -InputObject $manifest -Depth 4) -Encoding UTF8
# Sealed: read-only attribute plus an ACL that lets nobody write it (Hyper-V only reads a parent disk).
[System.IO.File]::SetAttributes($base, [System.IO.FileAttributes]::ReadOnly)
& icacls.exe $base /inheritance:r /grant:r 'BUILTIN\Administrators:(R)' 'NT AUTHORITY\SYSTEM:(R)' 'NT VIRTUAL MACHINE\Virtual Machines:(R)'
if ($LASTEXITCODE -ne 0) { throw "icacls failed with $LASTEXITCODE" }
Remove-Item -LiteralPath $work -Recurse -Force
Write-Output (ConvertTo-Json -Compress -InputObject $manifest)
