"""Opt-in: runs for real on a Windows host. Skipped everywhere else, including CI.

* ``ORCH_TEST_WSB=1`` on a Windows 11 Pro/Enterprise host with Windows Sandbox enabled:
  the local transport (bootstrap.ps1), the guest runner on the host itself, and a
  whole wsb job.
* ``ORCH_TEST_WINRM_HOST``, ``ORCH_TEST_WINRM_USER``, ``ORCH_TEST_WINRM_PASSWORD``
  (optional ``ORCH_TEST_WINRM_AUTH``, ``ORCH_TEST_WINRM_CERT_VALIDATION=0`` for a
  self-signed test host): the WinRM transport against that host.

None of these has run in CI; see docs/windows.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cancel import CancelToken
from orchestrator.output import OutputCapture
from orchestrator.providers.wsb import WsbProvider
from orchestrator.settings import Settings, WindowsHostSettings
from orchestrator.spec import parse_job_spec
from orchestrator.templates import templates_dir
from orchestrator.windows.local import LocalTransport
from orchestrator.windows.scripts import PSScript

HOSTILE = "'; Remove-Item C:\\nope -WhatIf; $(Get-Date) `n \" ✓ 漢字\nsecond line"
ECHO = PSScript("param($Value, [string[]]$List)\nWrite-Output $Value\nWrite-Output ($List -join '|')\n", "t/echo.ps1")

wsb_only = pytest.mark.skipif(
    not (sys.platform == "win32" and os.environ.get("ORCH_TEST_WSB") == "1"),
    reason="set ORCH_TEST_WSB=1 on a Windows 11 host with Windows Sandbox",
)
winrm_only = pytest.mark.skipif(
    not all(os.environ.get(k) for k in ("ORCH_TEST_WINRM_HOST", "ORCH_TEST_WINRM_USER", "ORCH_TEST_WINRM_PASSWORD")),
    reason="set ORCH_TEST_WINRM_HOST, ORCH_TEST_WINRM_USER and ORCH_TEST_WINRM_PASSWORD",
)
pytestmark = pytest.mark.windows_host


@wsb_only
def test_local_transport_round_trips_hostile_parameters() -> None:
    result = LocalTransport(WindowsHostSettings.model_validate({})).run(ECHO, {"Value": HOSTILE, "List": ["a", "b"]})
    assert result.output == [HOSTILE, "a|b"]


@wsb_only
def test_guest_runner_on_the_host(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    out = tmp_path / "out"
    out.mkdir()
    job.write_text(
        json.dumps(
            {
                "version": 1,
                "argv": ["cmd.exe", "/c", "echo hello & ping -n 30 127.0.0.1 > nul"],
                "env": {},
                "cwd": str(tmp_path / "ws"),
                "timeout_s": 3,
                "output_bytes": 100,
                "stdin": None,
                "files": [],
                "artifacts": [],
                "max_artifact_bytes": 1000,
            }
        ),
        encoding="utf-8",
    )
    runner = templates_dir() / "guest" / "runner.ps1"
    subprocess.run(
        ["powershell.exe", "-NoProfile", "-ExecutionPolicy", "Bypass", "-File", str(runner), "-JobPath", str(job),
         "-OutDir", str(out)],
        check=True,
        timeout=120,
    )  # fmt: skip
    result = json.loads((out / "result.json").read_text(encoding="utf-8-sig"))
    assert result["timed_out"] is True and (out / "done").exists()
    assert (out / "stdout.txt").read_text().startswith("hello")


@wsb_only
def test_whole_wsb_job(tmp_path: Path) -> None:
    settings = Settings.model_validate({"runtime_dir": str(tmp_path / "run"), "data_dir": str(tmp_path / "data")})
    provider = WsbProvider(settings)
    assert provider.availability().available
    spec = parse_job_spec({"command": ["cmd.exe", "/c", "echo hello"], "limits": {"timeout_s": 120}})
    box = provider.create("live-test", spec)
    try:
        out = OutputCapture(1 << 20)
        outcome = provider.exec(box, provider.default_request(spec), out, CancelToken())
        assert outcome.exit_code == 0 and out.stdout.text().strip() == "hello"
    finally:
        assert provider.destroy(box).clean


@winrm_only
def test_winrm_transport(tmp_path: Path) -> None:
    from orchestrator.windows.winrm import WinRMTransport

    settings = WindowsHostSettings.model_validate(
        {
            "transport": "winrm",
            "host": os.environ["ORCH_TEST_WINRM_HOST"],
            "username": os.environ["ORCH_TEST_WINRM_USER"],
            "password": os.environ["ORCH_TEST_WINRM_PASSWORD"],
            "auth": os.environ.get("ORCH_TEST_WINRM_AUTH", "negotiate"),
            "cert_validation": os.environ.get("ORCH_TEST_WINRM_CERT_VALIDATION", "1") != "0",
        }
    )
    transport = WinRMTransport(settings)
    try:
        assert transport.run(ECHO, {"Value": HOSTILE, "List": ["a", "b"]}).output == [HOSTILE, "a|b"]
        local = tmp_path / "up.bin"
        local.write_bytes(b"payload\x00\xff")
        remote = "C:\\Windows\\Temp\\orch-live-test.bin"
        transport.copy_to(local, remote)
        transport.copy_from(remote, tmp_path / "down.bin", max_bytes=100)
        assert (tmp_path / "down.bin").read_bytes() == b"payload\x00\xff"
    finally:
        transport.close()
