# Size in bytes of the file at -Path, or -1 when there is no such file.
# Used by orchestrator.windows.winrm before a fetch, to enforce a size cap.
param(
    [Parameter(Mandatory = $true)][string]$Path
)

$ErrorActionPreference = 'Stop'
if ([System.IO.File]::Exists($Path)) {
    Write-Output ([System.IO.FileInfo]::new($Path)).Length
}
else {
    Write-Output (-1)
}
