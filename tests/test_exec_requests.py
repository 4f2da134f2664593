"""The engine asks each provider how a spec's program runs on its guests."""

from __future__ import annotations

from orchestrator.engine import SCRIPT_PATH, exec_request
from orchestrator.providers.hyperv import HyperVProvider
from orchestrator.providers.linux import LinuxProvider
from orchestrator.providers.wsb import WsbProvider
from orchestrator.settings import Settings
from orchestrator.spec import parse_job_spec


def test_linux_runs_the_script_from_its_internal_mount(settings: Settings) -> None:
    spec = parse_job_spec({"script": "echo hi", "stdin": "x"})
    request = exec_request(LinuxProvider(settings), spec)
    assert request.argv == ["/bin/sh", SCRIPT_PATH]
    assert request.stdin == b"x" and request.cwd == "/workspace"


def test_windows_guests_get_windows_paths_and_powershell(settings: Settings) -> None:
    spec = parse_job_spec({"script": "Write-Output hi", "limits": {"timeout_s": 9}})
    for provider in (HyperVProvider(settings), WsbProvider(settings)):
        request = exec_request(provider, spec)
        assert request.argv[-1].startswith("C:\\"), request.argv
        assert any("powershell" in part.lower() for part in request.argv[:-1]), request.argv
        assert request.timeout_s == 9
    python = parse_job_spec({"script": "print(1)", "interpreter": ["python"]})
    assert exec_request(HyperVProvider(settings), python).argv[0] == "python"
