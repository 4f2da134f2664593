# Fixed bootstrap of orchestrator.windows.local (Windows PowerShell 5.1 and pwsh).
#
# Runs the script at -ScriptPath with the parameters read from the JSON object at
# -ParameterPath (each property is bound by name to the script's param() block)
# and writes everything the script produced, as JSON, to -ResultPath:
#   {"output": [...], "errors": [{message, category, fully_qualified_error_id,
#    target, script_stack_trace}], "warnings": [...], "verbose": [...],
#    "information": [...], "failed": bool}
# "failed" is true when the script ended with a terminating error. No value is
# ever spliced into script text: the caller only chooses the three file paths.
param(
    [Parameter(Mandatory = $true)][string]$ScriptPath,
    [Parameter(Mandatory = $true)][string]$ParameterPath,
    [Parameter(Mandatory = $true)][string]$ResultPath
)

$ErrorActionPreference = 'Stop'
$utf8 = [System.Text.UTF8Encoding]::new($false)
$doc = @{
    output      = @()
    errors      = @()
    warnings    = @()
    verbose     = @()
    information = @()
    failed      = $false
}

function ConvertTo-ErrorInfo {
    param($Record)
    return @{
        message                  = [string]$Record.Exception.Message
        category                 = [string]$Record.CategoryInfo.Category
        fully_qualified_error_id = [string]$Record.FullyQualifiedErrorId
        target                   = [string]$Record.TargetObject
        script_stack_trace       = [string]$Record.ScriptStackTrace
    }
}

$bound = @{}
$json = [System.IO.File]::ReadAllText($ParameterPath, $utf8)
if ($json.Trim().Length -gt 0) {
    $parsed = ConvertFrom-Json -InputObject $json
    foreach ($property in $parsed.PSObject.Properties) {
        $bound[$property.Name] = $property.Value
    }
}

try {
    & $ScriptPath @bound 2>&1 3>&1 4>&1 6>&1 | ForEach-Object {
        $item = $_
        if ($item -is [System.Management.Automation.ErrorRecord]) {
            $doc['errors'] += , (ConvertTo-ErrorInfo $item)
        }
        elseif ($item -is [System.Management.Automation.WarningRecord]) {
            $doc['warnings'] += , [string]$item.Message
        }
        elseif ($item -is [System.Management.Automation.VerboseRecord]) {
            $doc['verbose'] += , [string]$item.Message
        }
        elseif ($item -is [System.Management.Automation.InformationRecord]) {
            $doc['information'] += , [string]$item.MessageData
        }
        else {
            $doc['output'] += , $item
        }
    }
}
catch {
    $doc['failed'] = $true
    $doc['errors'] += , (ConvertTo-ErrorInfo $_)
}

$text = ConvertTo-Json -InputObject $doc -Depth 8 -Compress
[System.IO.File]::WriteAllText($ResultPath, $text, $utf8)
exit 0
