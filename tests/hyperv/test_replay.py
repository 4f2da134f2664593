"""The provider against the shared ReplayTransport and a recording file, in strict order."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cancel import CancelToken
from orchestrator.output import OutputCapture
from orchestrator.providers.base import ExecRequest
from orchestrator.providers.hyperv import HyperVProvider, HyperVSettings
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec
from orchestrator.windows.replay import ReplayTransport

RECORDING = Path(__file__).resolve().parents[1] / "data" / "recordings" / "hyperv" / "cold-job.json"


def test_cold_job_replays_in_order() -> None:
    transport = ReplayTransport.from_file(RECORDING, strict_order=True)
    hv = HyperVSettings.model_validate({"guest_password": "pw", "exec_grace_s": 0, "ready_initial_backoff_s": 0.001})
    provider = HyperVProvider(Settings(), transport, hyperv=hv, sleep=lambda s: None, poll_interval_s=0.01)

    box = provider.create("replay-job", JobSpec.model_validate({"command": ["python", "-V"]}))
    output = OutputCapture(100)
    outcome = provider.exec(box, ExecRequest(["python", "-V"], {}, "/workspace", 30), output, CancelToken())
    report = provider.destroy(box)

    assert outcome.exit_code == 7 and output.stdout.text() == "hi\n"
    assert outcome.usage["metering"]["maximum_memory_mb"] == 2048.0
    assert report.clean
    assert transport.pending() == []
    # every call named the same VM, and no input ISO was needed (no files, no mounts)
    names = {call.parameters.get("VMName") for call in transport.calls}
    assert names == {box.plan.vm_name}
    assert "copy_to" not in transport.script_names()
    run = transport.calls_to("hyperv/run-job.ps1")[0]
    assert run.timeout_s is not None and run.timeout_s > 30
    assert "pw" not in run.text  # the password travels as a parameter only
