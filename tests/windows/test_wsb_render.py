"""Rendered output of the wsb provider: golden files, the .wsb against the XSD, hostile values."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lxml import etree

from orchestrator.errors import InvalidMountError
from orchestrator.providers.wsb import RUNNER_COMMAND, WsbProvider
from orchestrator.spec import parse_job_spec
from tests.windows.helpers import settings

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
SCHEMA = etree.XMLSchema(etree.parse(str(HERE / "wsb.xsd")))
UPDATE = os.environ.get("ORCH_UPDATE_GOLDEN") == "1"

HOSTILE = [
    "'; Remove-Item C:\\ -Recurse -Force; '",
    '"$(Stop-Computer)"',
    "`$env:PATH` `n",
    "a;b|c&d",
    "line1\nline2\r\nline3",
    "<Configuration><Networking>Enable</Networking></Configuration>",
    "]]><!-- &amp; ",
    "ünïcødé ✓ 漢字 \u202e",
    "x" * 20_000,
]

SPEC = {
    "command": ["python.exe", "-c", "print('hello')"],
    "env": {"GREETING": "hi"},
    "mounts": [
        {"source": "D:\\datasets\\mnist", "target": "C:\\input"},
        {"source": "D:\\scratch", "target": "C:\\scratch", "read_only": False},
    ],
    "files": [{"path": "src/main.py", "content": "print(1)\n"}],
    "limits": {"memory_mb": 4096, "timeout_s": 30},
    "artifacts": ["out/*.json"],
}


def _provider(tmp_path: Path) -> WsbProvider:
    return WsbProvider(settings(tmp_path))


def test_render_matches_golden_files(tmp_path: Path) -> None:
    files = _provider(tmp_path).render("job-0001", parse_job_spec(SPEC))
    names = sorted(files)
    expected_names = sorted(
        str(p.relative_to(GOLDEN / "basic")).replace(os.sep, "/") for p in (GOLDEN / "basic").rglob("*") if p.is_file()
    )
    if UPDATE:
        for name, text in files.items():
            target = GOLDEN / "basic" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8", newline="")
        pytest.skip("golden files updated")
    assert names == expected_names
    for name in names:
        assert files[name] == (GOLDEN / "basic" / name).read_text(encoding="utf-8"), name


@pytest.mark.parametrize("name", ["sandbox.wsb", "wsb-start-config.xml"])
def test_wsb_validates_against_the_documented_schema(tmp_path: Path, name: str) -> None:
    text = _provider(tmp_path).render("job-0001", parse_job_spec(SPEC))[name]
    doc = etree.fromstring(text.encode())
    assert SCHEMA.validate(doc), SCHEMA.error_log
    # Safe defaults, element by element.
    assert {el.tag: el.text for el in doc if el.tag not in ("MappedFolders", "LogonCommand")} == {
        "VGpu": "Disable",
        "Networking": "Disable",
        "AudioInput": "Disable",
        "VideoInput": "Disable",
        "ProtectedClient": "Enable",
        "PrinterRedirection": "Disable",
        "ClipboardRedirection": "Disable",
        "MemoryInMB": "4096",
    }
    folders = [
        (f.findtext("HostFolder"), f.findtext("SandboxFolder"), f.findtext("ReadOnly"))
        for f in doc.iter("MappedFolder")
    ]
    assert folders == [
        ("C:\\ProgramData\\Orchestrator\\wsb\\job-0001\\job", "C:\\orchestrator\\job", "true"),
        ("C:\\ProgramData\\Orchestrator\\wsb\\job-0001\\out", "C:\\orchestrator\\out", "false"),
        ("D:\\datasets\\mnist", "C:\\input", "true"),
        ("D:\\scratch", "C:\\scratch", "false"),
    ]
    logon = doc.findtext("LogonCommand/Command")
    assert logon == (RUNNER_COMMAND if name == "sandbox.wsb" else None)


def test_schema_rejects_wrong_spellings() -> None:
    for bad in (
        "<Configuration><Networking>Disabled</Networking></Configuration>",
        "<Configuration><VGpu>disable</VGpu></Configuration>",
        "<Configuration><MemoryInMB>4GB</MemoryInMB></Configuration>",
        "<Configuration><MappedFolders><MappedFolder><HostFolder>C:\\x</HostFolder>"
        "<ReadOnly>True</ReadOnly></MappedFolder></MappedFolders></Configuration>",
        "<Configuration><MappedFolders><MappedFolder><HostFolder>relative\\x</HostFolder>"
        "</MappedFolder></MappedFolders></Configuration>",
        "<Configuration><Cpus>4</Cpus></Configuration>",
    ):
        assert not SCHEMA.validate(etree.fromstring(bad.encode())), bad


def test_protected_client_follows_the_setting(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    provider.protected_client = False
    text = provider.render("job-0001", parse_job_spec({"command": ["cmd"]}))["sandbox.wsb"]
    assert etree.fromstring(text.encode()).findtext("ProtectedClient") == "Disable"


@pytest.mark.parametrize("value", HOSTILE[:8])
def test_hostile_mount_source_is_escaped_by_the_engine(tmp_path: Path, value: str) -> None:
    # Only sources a Windows path can hold get this far; the others are refused (next test).
    source = "D:\\data\\" + value.replace("\n", "").replace("\r", "")
    spec = parse_job_spec({"command": ["cmd"], "mounts": [{"source": source, "target": "C:\\input"}]})
    try:
        text = _provider(tmp_path).render("job-0001", spec)["sandbox.wsb"]
    except InvalidMountError:
        return
    doc = etree.fromstring(text.encode())
    assert SCHEMA.validate(doc), SCHEMA.error_log
    assert [f.findtext("HostFolder") for f in doc.iter("MappedFolder")][2] == source
    assert doc.findtext("Networking") == "Disable"


@pytest.mark.parametrize(
    "target",
    [
        "input",
        "\\input",
        "C:\\",
        "C:\\input\\..\\Windows",
        "C:\\Windows\\System32",
        "c:\\windows",
        "C:\\Users\\WDAGUtilityAccount",
        "C:\\orchestrator\\job",
        "C:\\Program Files\\x",
        "\\\\server\\share\\x",
        "C:/input",
        "C:\\in<put",
        "C:\\input\nC:\\x",
    ],
)
def test_bad_mount_targets_are_refused(tmp_path: Path, target: str) -> None:
    spec = parse_job_spec({"command": ["cmd"], "mounts": [{"source": "D:\\data", "target": target}]})
    with pytest.raises(InvalidMountError) as info:
        _provider(tmp_path).render("job-0001", spec)
    assert info.value.code == "spec.invalid_mount"


def test_hostile_job_values_never_reach_script_text(tmp_path: Path) -> None:
    provider = _provider(tmp_path)
    benign = provider.render("job-0001", parse_job_spec({"command": ["cmd"]}))
    for value in HOSTILE:
        spec = parse_job_spec(
            {
                "command": [value, value],
                "env": {"X": value},
                "stdin": value,
                "files": [{"path": "f.txt", "content": value}],
            }
        )
        hostile = provider.render("job-0001", spec)
        for name in benign:
            if name.endswith(".ps1"):
                assert hostile[name] == benign[name], name
        job = json.loads(hostile["job.json"])
        assert job["argv"] == [value, value] and job["env"] == {"X": value} and job["stdin"] == value
