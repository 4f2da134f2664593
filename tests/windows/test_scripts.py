"""Every PowerShell script the project can emit parses and calls only documented cmdlets/parameters."""

from __future__ import annotations

import itertools
import re

import jinja2
import jinja2.meta
import pytest

from orchestrator.templates import environment, templates_dir
from orchestrator.windows.scripts import PSScript, list_scripts, render_script, script_name
from tests.support.pslint import assert_parses, check_cmdlets, load_tables, parse_powershell

#: Cmdlets used on purpose that the shared tables do not cover; their parameters are NOT verified.
# Real core cmdlets that the reference tables (26 cmdlets) do not cover: their names are allowed,
# their parameters cannot be checked here.
ALLOWED_UNTABLED = ("ConvertFrom-Json", "ForEach-Object", "Set-Location", "Get-Location", "Out-String")
CORE_51 = load_tables("core-5.1")
CORE_74 = load_tables("core-7.4")
OURS = [n for n in list_scripts() if n.split("/")[0] in ("windows-sandbox", "guest", "transport", "interactive")]


def _flag_names(name: str) -> list[str]:
    if not name.endswith(".j2"):
        return []
    source = (templates_dir() / name).read_text(encoding="utf-8")
    ast = environment().parse(source)
    return sorted(jinja2.meta.find_undeclared_variables(ast))


def _variants(name: str) -> list[PSScript]:
    """Every structural variant: all combinations of the template's boolean flags."""
    if not name.endswith(".j2"):
        return [render_script(name)]
    flags = _flag_names(name)
    return [
        render_script(name, **dict(zip(flags, values, strict=True)))
        for values in itertools.product([False, True], repeat=len(flags))
    ]


def test_all_our_scripts_are_found() -> None:
    assert "guest/runner.ps1" in OURS and "transport/bootstrap.ps1" in OURS
    assert len([n for n in OURS if n.startswith("windows-sandbox/")]) >= 10


@pytest.mark.parametrize("name", OURS)
def test_script_parses_without_error_nodes(name: str) -> None:
    for text in _variants(name):
        assert_parses(text)


@pytest.mark.parametrize("name", OURS)
@pytest.mark.parametrize("tables", [CORE_51, CORE_74], ids=["ps5.1", "ps7.4"])
def test_script_calls_only_documented_cmdlets_and_parameters(name: str, tables: dict[str, object]) -> None:
    for text in _variants(name):
        check_cmdlets(text, tables, allow=ALLOWED_UNTABLED)  # type: ignore[arg-type]


def test_runner_start_process_splat_uses_documented_parameters() -> None:
    # Splatted parameters are invisible to the syntax walk; check the hashtable keys by hand.
    text = render_script("guest/runner.ps1")
    block = re.search(r"\$startArgs = @\{(.*?)\n    \}", text, re.S)
    assert block is not None
    keys = set(re.findall(r"^\s+(\w+)\s+=", block.group(1), re.M)) | {"ArgumentList"}
    info = CORE_51["start-process"]
    assert keys <= info.parameters, keys - info.parameters


def test_scripts_take_values_only_through_param_blocks() -> None:
    # Structure flags are booleans; anything else is refused before Jinja sees it.
    with pytest.raises(TypeError):
        render_script("windows-sandbox/stop.ps1.j2", kill_processes="$(evil)")  # type: ignore[arg-type]
    with pytest.raises(jinja2.UndefinedError):
        render_script("windows-sandbox/stop.ps1.j2")


def test_rendered_script_keeps_its_template_name() -> None:
    script = render_script("windows-sandbox/poll.ps1.j2")
    assert script_name(script) == "windows-sandbox/poll.ps1"
    assert script_name("Write-Output 1") == "<inline>"


def test_stop_variants_differ_only_in_process_killing() -> None:
    plain = render_script("windows-sandbox/stop.ps1.j2", kill_processes=False)
    killing = render_script("windows-sandbox/stop.ps1.j2", kill_processes=True)
    assert "Stop-Process" not in plain and "Stop-Process" in killing
    assert str(parse_powershell(plain).root_node) != str(parse_powershell(killing).root_node)
