# Guest job runner (Windows PowerShell 5.1 compatible; also runs on pwsh 7).
#
# Contract (shared by the wsb and hyperv providers):
#   powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File runner.ps1
#       -JobPath <job.json> -OutDir <empty, writable directory>
#
#   job.json (UTF-8): {"version": 1, "argv": ["prog", "arg", ...], "env": {"K": "V"},
#       "cwd": "C:\\workspace", "timeout_s": 60, "output_bytes": 1048576,
#       "stdin": null | "text", "files": [{"path": "rel\\name", "base64": "..."}],
#       "artifacts": ["pattern", ...], "max_artifact_bytes": 67108864}
#
#   Writes into OutDir:
#     started      marker, as soon as the runner starts (the host's boot timeout ends here)
#     stdout.txt   the first output_bytes bytes of the program's stdout
#     stderr.txt   the same for stderr
#     artifacts\   copies of workspace files matching "artifacts" (relative paths kept)
#     result.json  {"version": 1, "exit_code": int|null, "timed_out": bool,
#                   "error": null|{"code","message"}, "duration_ms": n,
#                   "stdout_bytes": n, "stderr_bytes": n, "artifacts": [{"path","size"}]}
#                  written to result.json.tmp first, then renamed (atomic on NTFS)
#     done         completion marker, written (temp + rename) after result.json
#
# On timeout the whole process tree of the program is killed. The host still
# enforces its own timeouts and destroys the sandbox or VM after every job.
param(
    [Parameter(Mandatory = $true)][string]$JobPath,
    [Parameter(Mandatory = $true)][string]$OutDir
)

$ErrorActionPreference = 'Stop'
$utf8 = [System.Text.UTF8Encoding]::new($false)
$started = [System.Diagnostics.Stopwatch]::StartNew()

function Write-FileAtomic {
    param([string]$Path, [string]$Text)
    $tmp = $Path + '.tmp'
    [System.IO.File]::WriteAllText($tmp, $Text, $utf8)
    if ([System.IO.File]::Exists($Path)) {
        [System.IO.File]::Delete($Path)
    }
    [System.IO.File]::Move($tmp, $Path)
}

function ConvertTo-ArgumentString {
    # Quote one argument for CommandLineToArgvW / the MSVC runtime.
    param([string]$Value)
    if ($Value.Length -gt 0 -and $Value -notmatch '[\s"]') {
        return $Value
    }
    $builder = [System.Text.StringBuilder]::new()
    [void]$builder.Append('"')
    $slashes = 0
    foreach ($ch in $Value.ToCharArray()) {
        if ($ch -eq '\') {
            $slashes++
            continue
        }
        if ($ch -eq '"') {
            [void]$builder.Append('\', 2 * $slashes + 1)
        }
        elseif ($slashes -gt 0) {
            [void]$builder.Append('\', $slashes)
        }
        $slashes = 0
        [void]$builder.Append($ch)
    }
    [void]$builder.Append('\', 2 * $slashes)
    [void]$builder.Append('"')
    return $builder.ToString()
}

function Get-ProcessTree {
    # The ids of a process and all its descendants, children first.
    param([int]$RootId)
    $properties = @('ProcessId', 'ParentProcessId')
    $all = @(Get-CimInstance -ClassName Win32_Process -Property $properties)
    $ids = [System.Collections.ArrayList]::new()
    $queue = [System.Collections.Queue]::new()
    $queue.Enqueue($RootId)
    while ($queue.Count -gt 0) {
        $current = [int]$queue.Dequeue()
        [void]$ids.Insert(0, $current)
        foreach ($proc in $all) {
            if ([int]$proc.ParentProcessId -eq $current -and [int]$proc.ProcessId -ne $current) {
                if (-not $ids.Contains([int]$proc.ProcessId)) {
                    $queue.Enqueue([int]$proc.ProcessId)
                }
            }
        }
    }
    return $ids
}

function Stop-ProcessTree {
    param([int]$RootId)
    $ids = @()
    try {
        $ids = @(Get-ProcessTree -RootId $RootId)
    }
    catch {
        $ids = @($RootId)
    }
    foreach ($id in $ids) {
        Stop-Process -Id $id -Force -ErrorAction SilentlyContinue
    }
    # taskkill /T catches anything started between the snapshot and the kills.
    $null = & taskkill.exe /T /F /PID $RootId 2>&1
}

function Copy-Capped {
    # Copy at most $Limit bytes of $Source to $Destination; return the source size.
    param([string]$Source, [string]$Destination, [long]$Limit)
    if (-not [System.IO.File]::Exists($Source)) {
        [System.IO.File]::WriteAllBytes($Destination, [byte[]]@())
        return 0
    }
    $in = [System.IO.File]::OpenRead($Source)
    try {
        $size = $in.Length
        $out = [System.IO.File]::Create($Destination)
        try {
            $buffer = [byte[]]::new(65536)
            $left = [Math]::Min($Limit, $size)
            while ($left -gt 0) {
                $read = $in.Read($buffer, 0, [int][Math]::Min($buffer.Length, $left))
                if ($read -le 0) {
                    break
                }
                $out.Write($buffer, 0, $read)
                $left -= $read
            }
        }
        finally {
            $out.Dispose()
        }
        return $size
    }
    finally {
        $in.Dispose()
    }
}

function Resolve-InsideDirectory {
    # Full path of $Relative under $Root; throws if it escapes $Root.
    param([string]$Root, [string]$Relative)
    $rootFull = [System.IO.Path]::GetFullPath($Root).TrimEnd('\') + '\'
    $full = [System.IO.Path]::GetFullPath([System.IO.Path]::Combine($rootFull, $Relative))
    if (-not $full.StartsWith($rootFull, [System.StringComparison]::OrdinalIgnoreCase)) {
        throw "path escapes the workspace: $Relative"
    }
    return $full
}

Write-FileAtomic -Path ([System.IO.Path]::Combine($OutDir, 'started')) -Text ([string][System.DateTime]::UtcNow.ToString('o'))

$result = @{
    version      = 1
    exit_code    = $null
    timed_out    = $false
    error        = $null
    duration_ms  = 0
    stdout_bytes = 0
    stderr_bytes = 0
    artifacts    = @()
}
$scratch = [System.IO.Path]::Combine([System.IO.Path]::GetTempPath(), 'orchestrator-runner')
[void][System.IO.Directory]::CreateDirectory($scratch)
$stdoutPath = [System.IO.Path]::Combine($scratch, 'stdout')
$stderrPath = [System.IO.Path]::Combine($scratch, 'stderr')
$stdinPath = [System.IO.Path]::Combine($scratch, 'stdin')
$job = $null

try {
    $job = ConvertFrom-Json -InputObject ([System.IO.File]::ReadAllText($JobPath, $utf8))
    if ($job.version -ne 1) {
        throw "unsupported job version $($job.version)"
    }
    $cwd = [string]$job.cwd
    [void][System.IO.Directory]::CreateDirectory($cwd)
    foreach ($file in @($job.files)) {
        if ($null -eq $file) {
            continue
        }
        $target = Resolve-InsideDirectory -Root $cwd -Relative ([string]$file.path)
        [void][System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($target))
        [System.IO.File]::WriteAllBytes($target, [System.Convert]::FromBase64String([string]$file.base64))
    }
    foreach ($property in $job.env.PSObject.Properties) {
        [System.Environment]::SetEnvironmentVariable($property.Name, [string]$property.Value, 'Process')
    }
    $argv = @($job.argv)
    $quoted = @()
    for ($i = 1; $i -lt $argv.Count; $i++) {
        $quoted += , (ConvertTo-ArgumentString -Value ([string]$argv[$i]))
    }
    $arguments = $quoted -join ' '
    $stdinText = ''
    if ($null -ne $job.stdin) {
        $stdinText = [string]$job.stdin
    }
    [System.IO.File]::WriteAllText($stdinPath, $stdinText, $utf8)
    $startArgs = @{
        FilePath               = [string]$argv[0]
        WorkingDirectory       = $cwd
        RedirectStandardOutput = $stdoutPath
        RedirectStandardError  = $stderrPath
        RedirectStandardInput  = $stdinPath
        NoNewWindow            = $true
        PassThru               = $true
    }
    if ($arguments.Length -gt 0) {
        $startArgs['ArgumentList'] = $arguments
    }
    try {
        $proc = Start-Process @startArgs
    }
    catch {
        $result.error = @{ code = 'job.command_not_found'; message = [string]$_.Exception.Message }
        $proc = $null
    }
    if ($null -ne $proc) {
        $null = $proc.Handle  # keeps the handle so ExitCode is available after exit
        $timeoutMs = [int][Math]::Min([double][int]::MaxValue, [double]$job.timeout_s * 1000)
        if ($proc.WaitForExit($timeoutMs)) {
            $proc.WaitForExit()
            $result.exit_code = [int]$proc.ExitCode
        }
        else {
            $result.timed_out = $true
            Stop-ProcessTree -RootId $proc.Id
        }
    }
}
catch {
    $result.error = @{ code = 'runner.error'; message = [string]$_.Exception.Message }
}

$limit = [long]1048576
if ($null -ne $job -and $null -ne $job.output_bytes) {
    $limit = [long]$job.output_bytes
}
$result.stdout_bytes = Copy-Capped -Source $stdoutPath -Destination ([System.IO.Path]::Combine($OutDir, 'stdout.txt')) -Limit $limit
$result.stderr_bytes = Copy-Capped -Source $stderrPath -Destination ([System.IO.Path]::Combine($OutDir, 'stderr.txt')) -Limit $limit

try {
    if ($null -ne $job -and $null -ne $job.artifacts) {
        $budget = [long]$job.max_artifact_bytes
        $cwdFull = [System.IO.Path]::GetFullPath([string]$job.cwd).TrimEnd('\') + '\'
        $artifactRoot = [System.IO.Path]::Combine($OutDir, 'artifacts')
        foreach ($pattern in @($job.artifacts)) {
            $found = @(Get-ChildItem -Path ([System.IO.Path]::Combine($cwdFull, [string]$pattern)) -File -Force -ErrorAction SilentlyContinue)
            foreach ($item in $found) {
                if (-not $item.FullName.StartsWith($cwdFull, [System.StringComparison]::OrdinalIgnoreCase)) {
                    continue
                }
                if ($item.Length -gt $budget) {
                    continue
                }
                $relative = $item.FullName.Substring($cwdFull.Length)
                $destination = Resolve-InsideDirectory -Root $artifactRoot -Relative $relative
                [void][System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($destination))
                Copy-Item -LiteralPath $item.FullName -Destination $destination -Force
                $budget -= $item.Length
                $result.artifacts += , @{ path = $relative.Replace('\', '/'); size = [long]$item.Length }
            }
        }
    }
}
catch {
    if ($null -eq $result.error) {
        $result.error = @{ code = 'runner.artifacts'; message = [string]$_.Exception.Message }
    }
}

$result.duration_ms = [long]$started.ElapsedMilliseconds
Write-FileAtomic -Path ([System.IO.Path]::Combine($OutDir, 'result.json')) -Text (ConvertTo-Json -InputObject $result -Depth 5 -Compress)
Write-FileAtomic -Path ([System.IO.Path]::Combine($OutDir, 'done')) -Text 'done'
exit 0
