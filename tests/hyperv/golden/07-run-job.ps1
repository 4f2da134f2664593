# orchestrator-step: run-job
# Runs the guest runner (preinstalled in the image) over PowerShell Direct. The
# wall timeout is enforced by the control plane, which turns the VM off on overrun.
# The job's argv, environment and stdin travel inside $JobJson, never as script text.
# What comes back is hostile: it is returned as capped strings and parsed by the caller.
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][string]$GuestUser,
    [Parameter(Mandatory = $true)][string]$GuestPassword,
    [Parameter(Mandatory = $true)][string]$RunnerPath,
    [Parameter(Mandatory = $true)][string]$JobDir,
    [Parameter(Mandatory = $true)][string]$JobJson,
    [Parameter(Mandatory = $true)][int]$MaxResultChars
)
$ErrorActionPreference = 'Stop'
# The guest credential is built from two parameters; the password never appears in script text.
$secure = [System.Security.SecureString]::new()
foreach ($ch in $GuestPassword.ToCharArray()) { $secure.AppendChar($ch) }
$secure.MakeReadOnly()
$credential = [System.Management.Automation.PSCredential]::new($GuestUser, $secure)

$guestArgs = @($RunnerPath, $JobDir, $JobJson)
$reply = Invoke-Command -VMName $VMName -Credential $credential -ErrorAction Stop -ArgumentList $guestArgs -ScriptBlock {
    param($RunnerPath, $JobDir, $JobJson)
    $ErrorActionPreference = 'Stop'
    $outDir = [System.IO.Path]::Combine($JobDir, 'out')
    $null = New-Item -ItemType Directory -Path $outDir -Force
    $jobFile = [System.IO.Path]::Combine($JobDir, 'job.json')
    [System.IO.File]::WriteAllText($jobFile, $JobJson, [System.Text.UTF8Encoding]::new($false))
    $null = & powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File $RunnerPath -JobPath $jobFile -OutDir $outDir
    $reply = @{ result = ''; stdout = ''; stderr = '' }
    $resultFile = [System.IO.Path]::Combine($outDir, 'result.json')
    if ([System.IO.File]::Exists($resultFile)) { $reply.result = [System.IO.File]::ReadAllText($resultFile) }
    foreach ($stream in @('stdout', 'stderr')) {
        $path = [System.IO.Path]::Combine($outDir, $stream + '.txt')
        if ([System.IO.File]::Exists($path)) {
            $reply[$stream] = [System.Convert]::ToBase64String([System.IO.File]::ReadAllBytes($path))
        }
    }
    $reply
}
# Everything in $reply came from the guest: cap it, return it as strings, parse nothing here.
$out = @{ vm = $VMName; truncated = $false }
foreach ($key in @('result', 'stdout', 'stderr')) {
    $text = [string]$reply[$key]
    if ($text.Length -gt $MaxResultChars) {
        $text = $text.Substring(0, $MaxResultChars)
        $out.truncated = $true
    }
    $out[$key] = $text
}
Write-Output (ConvertTo-Json -Compress -InputObject $out)
