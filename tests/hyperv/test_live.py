"""Opt-in: against a real Hyper-V host. Has NOT run in CI (no Windows there).

Local (the tests run on the Hyper-V host itself):  ORCH_TEST_HYPERV=1
Remote over WinRM:  ORCH_TEST_WINRM_HOST, ORCH_TEST_WINRM_USER, ORCH_TEST_WINRM_PASSWORD
Both also need the image and guest account: ORCH_HYPERV_DEFAULT_IMAGE, ORCH_HYPERV_GUEST_PASSWORD (or
ORCH_HYPERV_GUEST_SECRETS_FILE), and the other ORCH_HYPERV_* settings if not at their defaults.
Every VM is destroyed at the end, and the garbage collector must then find nothing of ours.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cancel import CancelToken
from orchestrator.output import OutputCapture
from orchestrator.providers.base import ExecRequest
from orchestrator.providers.hyperv import HyperVProvider, HyperVSettings
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec

# Read at import time: an autouse fixture strips ORCH_* from the environment for the unit tests.
_ENV = {k: v for k, v in os.environ.items() if k.startswith("ORCH_")}
_LOCAL = _ENV.get("ORCH_TEST_HYPERV") == "1"
_REMOTE = bool(_ENV.get("ORCH_TEST_WINRM_HOST"))

pytestmark = [
    pytest.mark.windows_host,
    pytest.mark.skipif(not (_LOCAL or _REMOTE), reason="set ORCH_TEST_HYPERV=1 or ORCH_TEST_WINRM_HOST to run"),
]


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[HyperVProvider]:
    for key, value in _ENV.items():
        if key.startswith("ORCH_HYPERV_"):
            monkeypatch.setenv(key, value)
    if _LOCAL:
        if sys.platform != "win32":
            pytest.skip("ORCH_TEST_HYPERV=1 needs the tests to run on the Hyper-V host")
        settings = Settings.model_validate({"windows": {"transport": "local"}})
    else:
        settings = Settings.model_validate(
            {
                "windows": {
                    "transport": "winrm",
                    "host": _ENV["ORCH_TEST_WINRM_HOST"],
                    "username": _ENV.get("ORCH_TEST_WINRM_USER"),
                    "password": _ENV.get("ORCH_TEST_WINRM_PASSWORD"),
                }
            }
        )
    p = HyperVProvider(settings, hyperv=HyperVSettings())
    created: list[object] = []
    p.created_for_test = created  # type: ignore[attr-defined]
    yield p
    for box in created:
        p.destroy(box)  # type: ignore[arg-type]
    p.close()


def test_available(provider: HyperVProvider) -> None:
    result = provider.availability()
    assert result.available, f"{result.reason} ({result.fix})"


def test_job_end_to_end_leaves_nothing(provider: HyperVProvider, tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {
            "command": ["python", "main.py"],
            "files": [{"path": "main.py", "content": "print('hello from hyperv')"}],
            "artifacts": ["out.txt"],
            "limits": {"timeout_s": 120},
        }
    )
    started = time.monotonic()
    box = provider.create("live-e2e", spec)
    provider.created_for_test.append(box)  # type: ignore[attr-defined]
    provision_s = time.monotonic() - started
    output = OutputCapture(1 << 20)
    outcome = provider.exec(box, ExecRequest(["python", "main.py"], {}, "/workspace", 60), output, CancelToken())
    assert outcome.exit_code == 0, outcome
    assert "hello from hyperv" in output.stdout.text()
    assert outcome.usage["image"] and "metering" in outcome.usage
    print(f"provision {provision_s:.1f}s, usage {outcome.usage}")  # recorded in docs/hyperv.md when run
    provider.created_for_test.remove(box)  # type: ignore[attr-defined]
    assert provider.destroy(box).clean
    assert provider.reap_orphans(set()) == []


def test_overrun_is_turned_off(provider: HyperVProvider) -> None:
    box = provider.create("live-overrun", JobSpec.model_validate({"command": ["python", "-c", "0"]}))
    provider.created_for_test.append(box)  # type: ignore[attr-defined]
    request = ExecRequest(["python", "-c", "import time; time.sleep(600)"], {}, "/workspace", 5)
    outcome = provider.exec(box, request, OutputCapture(1024), CancelToken())
    assert outcome.timed_out


def test_no_network_adapter(provider: HyperVProvider) -> None:
    box = provider.create("live-nonet", JobSpec.model_validate({"command": ["python", "-c", "0"]}))
    provider.created_for_test.append(box)  # type: ignore[attr-defined]
    code = "import socket; socket.create_connection(('1.1.1.1', 53), timeout=5)"
    outcome = provider.exec(
        box, ExecRequest(["python", "-c", code], {}, "/workspace", 60), OutputCapture(4096), CancelToken()
    )
    assert outcome.exit_code not in (0, None)
