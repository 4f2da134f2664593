"""Every emitted script: parses, calls only documented cmdlets/parameters, takes job values as parameters."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator.providers.hyperv import HyperVProvider, HyperVSettings
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec
from orchestrator.windows.scripts import list_scripts, render_script
from tests.support.pslint import assert_parses, check_cmdlets, load_tables, parse_powershell

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("ORCH_UPDATE_GOLDEN") == "1"  # read at import: an autouse fixture clears ORCH_*
TEMPLATES = [name for name in list_scripts() if name.startswith("hyperv/") and not name.split("/")[-1].startswith("_")]

HOSTILE = [
    "'; Remove-Item -Recurse -Force C:\\ ; '",
    '"; Stop-Computer; "',
    "$(Invoke-Expression 'calc')",
    "`n Remove-VM * -Force",
    "@{ a = 1 }; exit 1 #",
]


def _provider() -> HyperVProvider:
    return HyperVProvider(Settings(), hyperv=HyperVSettings.model_validate({"guest_password": "not-used"}))


def _spec(**kw: Any) -> JobSpec:
    return JobSpec.model_validate({"command": ["python", "main.py"], **kw})


def _param_block(text: str) -> tuple[set[str], set[str]]:
    """(declared parameters, mandatory parameters) of a script's top-level param() block."""
    tree = parse_powershell(text)
    block = next(n for n in tree.root_node.children if n.type == "param_block")
    body = block.text.decode() if block.text else ""
    declared = set(re.findall(r"\]\s*\$(\w+)", body))
    mandatory = set(re.findall(r"Mandatory = \$true\)\]\[[\w\[\]]+\]\$(\w+)", body))
    return declared, mandatory


def test_there_is_a_template_for_every_lifecycle_step() -> None:
    names = {t.removeprefix("hyperv/").removesuffix(".ps1.j2") for t in TEMPLATES}
    assert {
        "create-vm",
        "remove-nic",
        "attach-inputs",
        "start-vm",
        "probe-guest",
        "prepare-guest",
        "run-job",
        "list-artifacts",
        "fetch-artifacts",
        "turn-off",
        "teardown",
        "gc-list",
        "metering",
        "import-vm",
        "export-saved",
        "probe-host",
    } <= names


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_parses_and_calls_documented_cmdlets(name: str) -> None:
    text = render_script(name)
    assert_parses(text)
    # Host side and guest side (script blocks sent with Invoke-Command) are both checked against
    # Windows PowerShell 5.1 (what powershell.exe and every guest runs) plus the Hyper-V module.
    verified = check_cmdlets(text, load_tables("core-5.1", "hyperv"))
    assert "ConvertTo-Json" in verified  # every step ends with one JSON reply
    assert text.startswith(f"# orchestrator-step: {name.split('/')[-1].removesuffix('.ps1.j2')}")


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_has_no_template_values(name: str) -> None:
    source = (Path(__file__).resolve().parents[2] / "templates" / name).read_text(encoding="utf-8")
    assert "{{" not in source, "job values must be parameters, never template values"
    assert "Invoke-Expression" not in source and "iex " not in source


def test_lifecycle_invariants_in_scripts() -> None:
    create = render_script("hyperv/create-vm.ps1.j2")
    assert "-Generation 2" in create and "-Differencing" in create and "-StaticMemory" in create
    assert "-AutomaticCheckpointsEnabled $false" in create and "-EnableSecureBoot On" in create
    assert "Enable-VMResourceMetering" in create and "-SwitchName" not in create
    nic = render_script("hyperv/remove-nic.ps1.j2")
    assert "Remove-VMNetworkAdapter" in nic and "$left.Count -ne 0" in nic
    teardown = render_script("hyperv/teardown.ps1.j2")
    order = [
        teardown.index(s)
        for s in (
            "Stop-VM -Name $VMName -TurnOff",
            "Remove-VM -Name $VMName -Force",
            "Remove-Item -LiteralPath $path -Recurse -Force",
            "$leftovers",
        )
    ]
    assert order == sorted(order)
    assert "Wait-VM" not in "".join(render_script(t) for t in TEMPLATES)  # undocumented: not relied on
    fetch = render_script("hyperv/fetch-artifacts.ps1.j2")
    assert "Copy-Item -FromSession $session" in fetch and "$MaxBytes[$i]" in fetch


def test_rendered_parameters_match_each_scripts_param_block(tmp_path: Path) -> None:
    spec = _spec(
        files=[{"path": "main.py", "content": "print(1)"}],
        mounts=[{"source": str(tmp_path), "target": "in"}, {"source": r"D:\d\big.vhdx", "target": "big"}],
        artifacts=["out/*.txt"],
    )
    files = _provider().render("job-1", spec)
    scripts = sorted(k for k in files if k.endswith(".ps1"))
    assert len(scripts) >= 12
    for script in scripts:
        params = json.loads(files[script.replace(".ps1", ".params.json")])
        declared, mandatory = _param_block(files[script])
        assert set(params) <= declared, f"{script}: {set(params) - declared} not declared"
        assert mandatory <= set(params), f"{script}: mandatory {mandatory - set(params)} missing"


def test_hostile_values_reach_powershell_only_as_parameters(tmp_path: Path) -> None:
    spec = _spec(
        command=["python", *HOSTILE],
        env={f"V{i}": v for i, v in enumerate(HOSTILE)},
        files=[{"path": "a'b$(x).txt", "content": HOSTILE[0]}],
        stdin=HOSTILE[1],
        artifacts=["out/*'$(x)"],
        labels={"x": HOSTILE[2]},
    )
    files = _provider().render("job'; Remove-VM *", spec)
    scripts = {k: v for k, v in files.items() if k.endswith(".ps1")}
    for text in scripts.values():
        for value in HOSTILE:
            assert value not in text
        assert "Remove-VM *" not in text
    params = "".join(v for k, v in files.items() if k.endswith(".params.json"))
    run_params = json.loads(next(v for k, v in files.items() if k.endswith("run-job.params.json")))
    job = json.loads(run_params["JobJson"])
    assert job["argv"] == ["python", *HOSTILE] and job["stdin"] == HOSTILE[1]
    assert job["env"]["V0"] == HOSTILE[0]
    assert "out/*'$(x)" in params


def test_render_redacts_the_guest_password() -> None:
    provider = HyperVProvider(Settings(), hyperv=HyperVSettings.model_validate({"guest_password": "TopSecret!"}))
    files = provider.render("job-1", _spec())
    assert not any("TopSecret!" in text for text in files.values())
    assert '"GuestPassword": "<redacted>"' in files["05-probe-guest.params.json"]


def test_render_matches_golden_files(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "command": ["python", "main.py", "--n", "3"],
            "env": {"MODE": "test"},
            "files": [{"path": "main.py", "content": "print('hi')"}],
            "mounts": [{"source": "/srv/inputs", "target": "/workspace/inputs"}],
            "limits": {"memory_mb": 4096, "cpus": 1.5, "timeout_s": 120},
            "artifacts": ["out/*.json"],
            "image": "win2022-v1",
        }
    )
    files = _provider().render("golden-job", spec)
    if UPDATE_GOLDEN or not GOLDEN.exists():
        GOLDEN.mkdir(exist_ok=True)
        for old in GOLDEN.iterdir():
            old.unlink()
        for name, text in files.items():
            (GOLDEN / name).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in GOLDEN.iterdir()}
    assert files == expected, "rendered scripts changed; rerun with ORCH_UPDATE_GOLDEN=1 and review the diff"
