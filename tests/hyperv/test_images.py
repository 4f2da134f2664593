"""Golden image recipe: the unattend template renders to valid XML, scripts parse, manifests validate."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from lxml import etree

from orchestrator.providers.hyperv.image import ImageManifest, ImageSecrets, encode_password, main, render_unattend
from tests.support.pslint import assert_parses, check_cmdlets, load_tables

IMAGES = Path(__file__).resolve().parents[2] / "images" / "windows"
NS = {"u": "urn:schemas-microsoft-com:unattend"}
SECRETS = ImageSecrets.model_validate(
    {"admin_password": "Adm1n<&>\"'pw", "job_username": "orchjob", "job_password": "J0b]]>pw"}
)

# Cmdlets of modules outside the reference tables, used only by the image build on the host
# (Storage, Dism, Microsoft.PowerShell.Utility/Management). Everything else is checked.
IMAGE_BUILD_EXTRA = {
    "Mount-DiskImage",
    "Dismount-DiskImage",
    "Get-Volume",
    "Get-Disk",
    "Initialize-Disk",
    "New-Partition",
    "Format-Volume",
    "Add-PartitionAccessPath",
    "Remove-PartitionAccessPath",
    "Get-Partition",
    "Expand-WindowsImage",
    "Sort-Object",
    "Select-Object",
    "Start-Sleep",
    "Out-Null",
    "Move-Item",
    "ConvertFrom-Json",
}


def _decode(value: str, kind: str) -> str:
    text = base64.b64decode(value).decode("utf-16-le")
    assert text.endswith(kind)
    return text[: -len(kind)]


def test_build_unattend_is_valid_xml_with_encoded_secrets() -> None:
    text = render_unattend(SECRETS, phase="build")
    root = etree.fromstring(text.encode("utf-8"))
    admin = root.find(".//u:AdministratorPassword/u:Value", NS)
    assert admin is not None and _decode(admin.text or "", "AdministratorPassword") == "Adm1n<&>\"'pw"
    account = root.find(".//u:LocalAccount", NS)
    assert account is not None
    assert account.findtext("u:Name", namespaces=NS) == "orchjob"
    assert account.findtext("u:Group", namespaces=NS) == "Users;Remote Management Users"  # not Administrators
    assert _decode(account.findtext("u:Password/u:Value", namespaces=NS) or "", "Password") == "J0b]]>pw"
    assert "Adm1n" not in text and "J0b" not in text  # never in clear text
    assert root.findtext(".//u:SanPolicy", namespaces=NS) == "1"
    assert "setup-guest.ps1" in (root.findtext(".//u:CommandLine", namespaces=NS) or "")


def test_seal_unattend_has_no_accounts_or_passwords() -> None:
    text = render_unattend(SECRETS, phase="seal")
    root = etree.fromstring(text.encode("utf-8"))
    assert root.find(".//u:UserAccounts", NS) is None and root.find(".//u:AutoLogon", NS) is None
    assert encode_password("Adm1n<&>\"'pw", "AdministratorPassword") not in text
    assert root.findtext(".//u:SkipMachineOOBE", namespaces=NS) == "true"


def test_hostile_values_are_escaped_by_the_template() -> None:
    text = render_unattend(SECRETS, phase="build", locale="en-US</InputLocale><x>", timezone="UTC&amp;")
    root = etree.fromstring(text.encode("utf-8"))
    assert root.findtext(".//u:InputLocale", namespaces=NS) == "en-US</InputLocale><x>"


def test_secrets_validation() -> None:
    with pytest.raises(ValueError):
        ImageSecrets.model_validate({"admin_password": "a", "job_password": "b", "job_username": "bad name"})
    with pytest.raises(ValueError):
        ImageSecrets.model_validate({"admin_password": "a"})


def test_cli_renders_both_phases(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"admin_password": "a", "job_password": "b"}))
    assert main(["--secrets", str(secrets), "--output-dir", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["unattend-build.xml", "unattend-seal.xml"]


@pytest.mark.parametrize("script", ["build-image.ps1", "setup-guest.ps1"])
def test_image_scripts_parse_and_use_known_cmdlets(script: str) -> None:
    text = (IMAGES / script).read_text(encoding="utf-8")
    assert_parses(text)
    verified = check_cmdlets(text, load_tables("core-5.1", "hyperv"), allow=IMAGE_BUILD_EXTRA)
    assert "Get-FileHash" in verified


def test_build_script_invariants() -> None:
    text = (IMAGES / "build-image.ps1").read_text(encoding="utf-8")
    assert "Remove-VMNetworkAdapter" in text  # the build VM has no network either
    assert "versions are immutable" in text and "manifest.json" in text and "ReadOnly" in text
    setup = (IMAGES / "setup-guest.ps1").read_text(encoding="utf-8")
    assert "/generalize" in setup and "runner.ps1" in setup and "components.json" in setup


def test_manifest_model() -> None:
    manifest = ImageManifest.model_validate(
        {
            "version": "win2022-v1",
            "sha256": "ab" * 32,
            "size_bytes": 1,
            "created": "2025-01-01T00:00:00Z",
            "source": "iso:x.iso:2",
            "components": {"python": "3.12.8"},
        }
    )
    assert manifest.components["python"] == "3.12.8"
    with pytest.raises(ValueError):
        ImageManifest.model_validate({**manifest.model_dump(), "sha256": "nothex"})
