"""LocalTransport's subprocess handling, with a stand-in for powershell.exe (there is none on Linux)."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from orchestrator.errors import PayloadTooLargeError, ScriptError, TransportError, TransportTimeoutError
from orchestrator.settings import WindowsHostSettings
from orchestrator.windows.local import LocalTransport
from orchestrator.windows.scripts import PSScript

HERE = Path(__file__).resolve().parent


@pytest.fixture
def transport(tmp_path: Path) -> LocalTransport:
    exe = tmp_path / "powershell"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {HERE / "fake_powershell.py"} "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return LocalTransport(WindowsHostSettings.model_validate({"powershell": str(exe)}))


def test_parameters_reach_the_script_as_json_unchanged(transport: LocalTransport) -> None:
    hostile = "'; Remove-Item C:\\ -Recurse; $(x) `n\"\n✓ " + "y" * 50_000
    result = transport.run(PSScript("# FAKE: ok\n", "t/ok.ps1"), {"Value": hostile, "List": [1, "a"], "Flag": True})
    assert json.loads(result.output[0]) == {"Value": hostile, "List": [1, "a"], "Flag": True}
    assert result.output[1] == {"n": 1} and result.warnings == ["careful"] and not result.had_errors


def test_terminating_error_becomes_script_error_with_its_record(transport: LocalTransport) -> None:
    with pytest.raises(ScriptError) as info:
        transport.run(PSScript("# FAKE: fail\n", "t/fail.ps1"))
    record = info.value.details["error_record"]
    assert record["message"] == "Access is denied" and record["fully_qualified_error_id"] == "UnauthorizedAccess"
    assert info.value.details["script"] == "t/fail.ps1"


def test_timeout_kills_the_whole_process_tree(transport: LocalTransport, tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(TransportTimeoutError):
        transport.run(PSScript("# FAKE: sleep-tree\n", "t/sleep.ps1"), {"PidFile": str(pid_file)}, timeout_s=1.5)
    assert time.monotonic() - started < 10
    child = int(pid_file.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild survived the timeout")


@pytest.mark.parametrize(
    ("action", "needle"), [("exit3", "exited with code 3"), ("no-result", "no result"), ("garbage", "not valid JSON")]
)
def test_broken_powershell_runs_become_transport_errors(transport: LocalTransport, action: str, needle: str) -> None:
    with pytest.raises(TransportError, match=needle) as info:
        transport.run(PSScript(f"# FAKE: {action}\n", "t/x.ps1"))
    assert type(info.value) is TransportError


def test_missing_powershell(tmp_path: Path) -> None:
    transport = LocalTransport(WindowsHostSettings.model_validate({"powershell": str(tmp_path / "nope.exe")}))
    with pytest.raises(TransportError) as info:
        transport.run("Write-Output 1")
    assert info.value.code == "transport.powershell_not_found"


def test_unserialisable_parameters_are_refused_before_running(transport: LocalTransport) -> None:
    with pytest.raises(TransportError, match="JSON"):
        transport.run("x", {"Bad": object()})


def test_copy_from_enforces_the_size_cap(transport: LocalTransport, tmp_path: Path) -> None:
    remote = tmp_path / "remote.bin"
    remote.write_bytes(b"x" * 100)
    transport.copy_from(str(remote), tmp_path / "ok", max_bytes=100)
    assert (tmp_path / "ok").read_bytes() == b"x" * 100
    with pytest.raises(PayloadTooLargeError):
        transport.copy_from(str(remote), tmp_path / "big", max_bytes=99)
    assert not (tmp_path / "big").exists()
    with pytest.raises(ScriptError):
        transport.copy_from(str(tmp_path / "missing"), tmp_path / "m", max_bytes=10)
    transport.copy_to(remote, str(tmp_path / "up" / "copy.bin"))
    assert (tmp_path / "up" / "copy.bin").read_bytes() == b"x" * 100
