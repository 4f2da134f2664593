# orchestrator-step: prepare-guest
# Runs once per job, before any job code: finds the job ISO by its marker file,
# copies the inline files into the workspace and links each read-only mount into it.
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][string]$GuestUser,
    [Parameter(Mandatory = $true)][string]$GuestPassword,
    [Parameter(Mandatory = $true)][string]$Workspace,
    [string]$IsoLabel = '',
    [string[]]$MountDirs = @(),
    [string[]]$MountTargets = @(),
    [string[]]$DiskLabels = @(),
    [string[]]$DiskTargets = @(),
    [int]$MediaWaitSeconds = 60
)
$ErrorActionPreference = 'Stop'
# The guest credential is built from two parameters; the password never appears in script text.
$secure = [System.Security.SecureString]::new()
foreach ($ch in $GuestPassword.ToCharArray()) { $secure.AppendChar($ch) }
$secure.MakeReadOnly()
$credential = [System.Management.Automation.PSCredential]::new($GuestUser, $secure)

$guestArgs = @($Workspace, $IsoLabel, $MountDirs, $MountTargets, $DiskLabels, $DiskTargets, $MediaWaitSeconds)
$report = Invoke-Command -VMName $VMName -Credential $credential -ErrorAction Stop -ArgumentList $guestArgs -ScriptBlock {
    param($Workspace, $IsoLabel, $MountDirs, $MountTargets, $DiskLabels, $DiskTargets, $MediaWaitSeconds)
    $ErrorActionPreference = 'Stop'

    function Find-Volume([string]$Kind, [string]$Label) {
        $deadline = [DateTime]::UtcNow.AddSeconds($MediaWaitSeconds)
        while ($true) {
            foreach ($drive in [System.IO.DriveInfo]::GetDrives()) {
                if ([string]$drive.DriveType -ne $Kind -or -not $drive.IsReady) { continue }
                $root = $drive.RootDirectory.FullName
                if ($Kind -eq 'CDRom') {
                    $marker = [System.IO.Path]::Combine($root, 'orchestrator-inputs.txt')
                    if ([System.IO.File]::Exists($marker) -and [System.IO.File]::ReadAllText($marker).Trim() -eq $Label) {
                        return $root
                    }
                } elseif ($drive.VolumeLabel -eq $Label) {
                    return $root
                }
            }
            if ([DateTime]::UtcNow -gt $deadline) { throw "orchestrator: input volume $Label did not appear" }
            [System.Threading.Thread]::Sleep(500)
        }
    }

    function New-Link([string]$Relative, [string]$Destination) {
        $link = [System.IO.Path]::Combine($Workspace, $Relative)
        $parent = [System.IO.Path]::GetDirectoryName($link)
        $null = New-Item -ItemType Directory -Path $parent -Force
        $null = New-Item -ItemType Junction -Path $link -Value $Destination
    }

    $null = New-Item -ItemType Directory -Path $Workspace -Force
    $copied = 0
    if ($IsoLabel) {
        $dvd = Find-Volume 'CDRom' $IsoLabel
        $files = [System.IO.Path]::Combine($dvd, 'files')
        if ([System.IO.Directory]::Exists($files)) {
            Copy-Item -Path ([System.IO.Path]::Combine($files, '*')) -Destination $Workspace -Recurse -Force
            # Files copied from optical media keep the read-only attribute; the workspace is writable.
            foreach ($item in Get-ChildItem -LiteralPath $Workspace -Recurse -File -Force) {
                $item.IsReadOnly = $false
                $copied++
            }
        }
        for ($i = 0; $i -lt $MountDirs.Count; $i++) {
            New-Link $MountTargets[$i] ([System.IO.Path]::Combine($dvd, $MountDirs[$i]))
        }
    }
    for ($i = 0; $i -lt $DiskLabels.Count; $i++) {
        New-Link $DiskTargets[$i] (Find-Volume 'Fixed' $DiskLabels[$i])
    }
    @{ copied = $copied; mounts = $MountDirs.Count + $DiskLabels.Count }
}
Write-Output (ConvertTo-Json -Compress -InputObject @{ vm = $VMName; copied = [int]$report.copied; mounts = [int]$report.mounts })
