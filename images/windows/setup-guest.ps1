# Runs once inside the image being built (first logon of the local Administrator, no network):
# installs the job runtimes and the guest runner, prepares the job folders, records what is
# installed, then generalizes the image with sysprep and shuts down.
$ErrorActionPreference = 'Stop'
$setup = 'C:\Orchestrator\setup'
$components = [ordered]@{}

# Python for all users, on PATH.
$installer = [System.IO.Path]::Combine($setup, 'python-installer.exe')
$proc = Start-Process -FilePath $installer -ArgumentList '/quiet InstallAllUsers=1 PrependPath=1 Include_test=0' -Wait -PassThru
if ($proc.ExitCode -ne 0) { throw "the Python installer failed with $($proc.ExitCode)" }
$python = @(Get-ChildItem -Path 'C:\Program Files' -Directory -Filter 'Python3*')[0].FullName
$components['python'] = [string](& ([System.IO.Path]::Combine($python, 'python.exe')) -c 'import sys; print(sys.version.split()[0])')
$components['powershell'] = $PSVersionTable.PSVersion.ToString()
$components['windows'] = [string](Get-CimInstance -ClassName Win32_OperatingSystem).Version

# The guest runner: readable by everyone, writable by administrators only.
Copy-Item -LiteralPath ([System.IO.Path]::Combine($setup, 'runner.ps1')) -Destination 'C:\Orchestrator\runner.ps1' -Force
$components['runner_sha256'] = (Get-FileHash -LiteralPath 'C:\Orchestrator\runner.ps1' -Algorithm SHA256).Hash.ToLowerInvariant()

# C:\Jobs: the job account may write here (workspace and per-run folders), nowhere else of ours.
$jobs = New-Item -ItemType Directory -Path 'C:\Jobs' -Force
$acl = Get-Acl -Path $jobs.FullName
$rule = [System.Security.AccessControl.FileSystemAccessRule]::new(
    'Remote Management Users', 'Modify', 'ContainerInherit,ObjectInherit', 'None', 'Allow')
$acl.AddAccessRule($rule)
Set-Acl -Path $jobs.FullName -AclObject $acl
$null = New-Item -ItemType Directory -Path 'C:\Jobs\workspace' -Force

Set-Content -Path 'C:\Orchestrator\components.json' -Value (ConvertTo-Json -InputObject $components) -Encoding UTF8

# Generalize; per-job VMs then boot through the sealed answer file with no prompts.
& "$env:WINDIR\System32\Sysprep\sysprep.exe" /generalize /oobe /shutdown /quiet "/unattend:$([System.IO.Path]::Combine($setup, 'unattend-seal.xml'))"
