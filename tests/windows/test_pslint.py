"""The PowerShell linter must catch what it claims to catch, or the script checks prove nothing."""

from __future__ import annotations

import pytest

from tests.support.pslint import assert_parses, check_cmdlets, command_uses, find_cmdlet_problems, load_tables

CORE = load_tables("core-5.1")


def test_valid_script_parses_and_checks() -> None:
    text = "param([string]$Path)\nGet-ChildItem -Path $Path -Recurse -ErrorAction Stop\n"
    assert_parses(text)
    assert check_cmdlets(text, CORE) == {"Get-ChildItem"}


def test_syntax_error_is_reported() -> None:
    with pytest.raises(AssertionError, match="does not parse"):
        assert_parses("if ($x -eq 1 { Write-Output 1 }\n")


def test_unknown_parameter_fails() -> None:
    problems, _ = find_cmdlet_problems("Stop-Process -Id 5 -Forcefully\n", CORE)
    assert problems == ["line 1: Stop-Process: no parameter -Forcefully"]


def test_alias_from_detail_table_and_colon_syntax_accepted() -> None:
    # -RSO is a documented alias of Start-Process -RedirectStandardOutput; -Id:5 binds -Id.
    text = "Start-Process -FilePath a.exe -RSO out.txt\nStop-Process -Id:5 -ea Stop\n"
    assert check_cmdlets(text, CORE) == {"Start-Process", "Stop-Process"}


def test_prefix_only_when_unambiguous() -> None:
    assert find_cmdlet_problems("Get-Content -Raw -Encod UTF8 -LiteralPa x\n", CORE)[0] == []
    problems, _ = find_cmdlet_problems("Get-ChildItem -F x\n", CORE)  # Filter, File, FollowSymlink, Force
    assert len(problems) == 1 and "ambiguous" in problems[0]


def test_unknown_verb_noun_fails_unless_defined_or_allowed() -> None:
    text = "function Invoke-Thing {\n param($x)\n $x\n}\nInvoke-Thing -x 1\nWrite-Host hi\ncmd /c exit 0\n"
    problems, _ = find_cmdlet_problems(text, CORE)
    assert problems == ["line 6: unknown cmdlet Write-Host"]
    assert check_cmdlets(text, CORE, allow=["write-host"]) == set()


def test_nested_commands_in_script_blocks_are_found() -> None:
    uses = command_uses("try {\n  & { Remove-Item -LiteralPath $p -Recurse }\n} catch { }\n")
    assert [(u.name, u.parameters) for u in uses] == [("Remove-Item", ("LiteralPath", "Recurse"))]


def test_hyperv_table_loaded() -> None:
    tables = load_tables("hyperv")
    assert check_cmdlets("Stop-VM -Name vm1 -TurnOff -Force\n", tables) == {"Stop-VM"}
    assert find_cmdlet_problems("Add-VMHardDiskDrive -VMName v -Path p -ReadOnly\n", tables)[0]
