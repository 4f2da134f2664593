"""HyperVProvider over a fake Hyper-V host, through every failure path. Every path ends with nothing left."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cancel import CancelToken
from orchestrator.errors import (
    CapacityError,
    HostUnreachableError,
    InvalidMountError,
    SandboxCreateError,
    ScriptError,
)
from orchestrator.output import OutputCapture
from orchestrator.providers.base import ExecRequest, Provider
from orchestrator.providers.hyperv import HyperVProvider, HyperVSettings
from orchestrator.settings import Settings
from orchestrator.spec import JobSpec
from orchestrator.windows.transport import PSErrorRecord
from tests.hyperv.fakehost import FakeHyperVHost


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(host: FakeHyperVHost, *, clock: FakeClock | None = None, **overrides: Any) -> HyperVProvider:
    hv = HyperVSettings.model_validate(
        {
            "guest_password": "s3cret!",
            "ready_initial_backoff_s": 1,
            "ready_max_backoff_s": 8,
            "exec_grace_s": 0,
            **overrides,
        }
    )
    clock = clock or FakeClock()
    return HyperVProvider(Settings(), host, hyperv=hv, clock=clock, sleep=clock.sleep)


def make_real_clock(host: FakeHyperVHost, **overrides: Any) -> HyperVProvider:
    hv = HyperVSettings.model_validate({"guest_password": "s3cret!", "exec_grace_s": 0, **overrides})
    return HyperVProvider(Settings(), host, hyperv=hv, sleep=lambda s: None, poll_interval_s=0.01)


def spec(tmp_path: Path | None = None, **kw: Any) -> JobSpec:
    data: dict[str, Any] = {"command": ["python", "main.py"], "files": [{"path": "main.py", "content": "print(1)"}]}
    if tmp_path is not None:
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / "data.csv").write_text("a,b\n")
        data["mounts"] = [{"source": str(tmp_path / "in"), "target": "inputs"}]
    data.update(kw)
    return JobSpec.model_validate(data)


def request(timeout_s: float = 30.0) -> ExecRequest:
    return ExecRequest(argv=["python", "main.py"], env={"A": "1"}, cwd="/workspace", timeout_s=timeout_s)


@pytest.fixture
def host() -> FakeHyperVHost:
    return FakeHyperVHost()


def test_is_a_provider(host: FakeHyperVHost) -> None:
    assert isinstance(make(host), Provider)
    assert HyperVProvider.name == "hyperv"


def test_happy_path_create_exec_collect_destroy(host: FakeHyperVHost, tmp_path: Path) -> None:
    provider = make(host)
    box = provider.create("job-1", spec(tmp_path, artifacts=["out/*"]))
    assert [s for s in host.steps() if s != "probe-guest"] == [
        "create-vm",
        "remove-nic",
        "copy_to",
        "attach-inputs",
        "start-vm",
        "prepare-guest",
    ]
    vm = host.vms[box.plan.vm_name]
    assert vm.adapters == 0 and vm.state == "Running" and vm.dvd == box.plan.iso_path
    assert host.files[box.plan.iso_path.lower()].startswith(b"\0" * 16)  # a real ISO (system area) was uploaded

    output = OutputCapture(1024)
    outcome = provider.exec(box, request(), output, CancelToken())
    assert outcome.exit_code == 0 and not outcome.timed_out
    assert output.stdout.text() == "hello\n"
    assert outcome.usage["image"] == "win2022-v1" and outcome.usage["warm_pool"] is False
    assert outcome.usage["metering"]["average_processor_mhz"] == 812.0
    run = next(p for s, p in host.calls if s == "run-job")
    job = json.loads(run["JobJson"])
    assert job["argv"] == ["python", "main.py"] and job["env"] == {"A": "1"} and job["cwd"] == r"C:\Jobs\workspace"

    host.guest_files = {"out/a.txt": b"A" * 10, "out/b.txt": b"B" * 20, "other.txt": b"no"}
    dest = tmp_path / "artifacts"
    artifacts = provider.collect(box, ["out/*"], dest, max_bytes=25)
    assert [(a.path, a.size) for a in artifacts] == [("out/a.txt", 10)]  # b.txt would exceed the 25-byte budget
    assert (dest / "out" / "a.txt").read_bytes() == b"A" * 10

    report = provider.destroy(box)
    assert report.clean and host.leftovers() == []
    assert provider.capacity.used == (0, 0)


def test_creation_fails_halfway_and_nothing_is_left(host: FakeHyperVHost, tmp_path: Path) -> None:
    host.fail("attach-inputs", PSErrorRecord("The operation failed because the file was not found."))
    provider = make(host)
    with pytest.raises(ScriptError, match="attach-inputs"):
        provider.create("job-2", spec(tmp_path))
    assert host.steps()[-1] == "teardown"
    assert host.leftovers() == [] and provider.capacity.used == (0, 0)


def test_network_adapter_that_will_not_go_fails_creation(host: FakeHyperVHost) -> None:
    host.sticky_nic = True
    provider = make(host)
    with pytest.raises(SandboxCreateError) as info:
        provider.create("job-3", spec())
    assert info.value.code == "sandbox.network_not_removed"
    assert "start-vm" not in host.steps() and host.leftovers() == []


def test_guest_never_ready_times_out_with_bounded_backoff(host: FakeHyperVHost) -> None:
    host.ready_after = 10**6
    clock = FakeClock()
    provider = make(host, clock=clock, ready_timeout_s=60)
    with pytest.raises(SandboxCreateError) as info:
        provider.create("job-4", spec())
    assert info.value.code == "sandbox.guest_not_ready"
    assert clock.sleeps[:4] == [1, 2, 4, 8] and max(clock.sleeps) == 8  # exponential, capped
    assert sum(clock.sleeps) <= 60
    assert host.leftovers() == []


def test_bad_guest_credentials_fail_fast(host: FakeHyperVHost) -> None:
    provider = make(host, guest_password="wrong")
    with pytest.raises(SandboxCreateError) as info:
        provider.create("job-5", spec())
    assert info.value.code == "sandbox.guest_auth_failed"
    assert host.steps().count("probe-guest") == 1 and host.leftovers() == []


def test_job_overrun_turns_the_vm_off(host: FakeHyperVHost) -> None:
    host.run_hangs = True
    provider = make_real_clock(host)
    box = provider.create("job-6", spec())
    outcome = provider.exec(box, request(timeout_s=0.2), OutputCapture(100), CancelToken())
    assert outcome.timed_out and outcome.exit_code is None
    assert host.vms[box.plan.vm_name].state == "Off"
    assert provider.destroy(box).clean and host.leftovers() == []


def test_cancel_turns_the_vm_off(host: FakeHyperVHost) -> None:
    host.run_hangs = True
    provider = make_real_clock(host)
    box = provider.create("job-7", spec())
    cancel = CancelToken()
    threading.Timer(0.1, cancel.cancel, args=("user asked",)).start()
    outcome = provider.exec(box, request(timeout_s=30), OutputCapture(100), cancel)
    assert outcome.error_code == "job.cancelled" and outcome.error_message == "user asked"
    assert "turn-off" in host.steps()
    assert provider.destroy(box).clean and host.leftovers() == []


def test_host_connection_drops_mid_job(host: FakeHyperVHost) -> None:
    provider = make_real_clock(host)
    box = provider.create("job-8", spec())
    host.fail("run-job", HostUnreachableError("the WinRM connection was reset"))
    with pytest.raises(HostUnreachableError):
        provider.exec(box, request(), OutputCapture(100), CancelToken())
    assert provider.destroy(box).clean and host.leftovers() == []


def test_teardown_failing_once_is_retried(host: FakeHyperVHost) -> None:
    provider = make(host)
    box = provider.create("job-9", spec())
    host.fail("teardown", HostUnreachableError("connection reset"))
    report = provider.destroy(box)
    assert report.clean and host.steps().count("teardown") == 2 and host.leftovers() == []


def test_teardown_that_leaves_things_reports_them_and_gc_removes_them_later(host: FakeHyperVHost) -> None:
    provider = make(host, teardown_attempts=2)
    box = provider.create("job-10", spec())
    still_there = {"vm": box.plan.vm_name, "leftovers": [f"vm:{box.plan.vm_name}"], "problems": ["locked"]}
    host.fail("teardown", lambda p: still_there, times=2)
    report = provider.destroy(box)
    assert not report.clean and report.leftovers == [f"vm:{box.plan.vm_name}"]
    assert host.leftovers() != []
    removed = provider.reap_orphans(set())
    assert removed == [box.plan.vm_name] and host.leftovers() == []


def test_hostile_guest_replies(host: FakeHyperVHost, tmp_path: Path) -> None:
    provider = make(host)
    box = provider.create("job-11", spec())
    host.raw_reply = {"vm": "x", "result": '{"exit_code": "rm -rf"}', "stdout": "!!not base64!!", "stderr": 5}
    outcome = provider.exec(box, request(), OutputCapture(100), CancelToken())
    assert outcome.error_code == "sandbox.bad_guest_reply" and outcome.exit_code is None

    host.raw_reply = None
    host.runner_result = {"exit_code": None, "error": {"code": "evil.code", "message": "m"}, "stdout_bytes": 10**9}
    host.stdout = b"x" * 50
    output = OutputCapture(10)
    outcome = provider.exec(box, request(), output, CancelToken())
    assert outcome.error_code == "runner.error"  # unknown codes from the guest are not passed through
    assert output.stdout.getvalue() == b"x" * 10 and output.stdout.truncated

    host.guest_files = {"ok.txt": b"ok", "big.bin": b"z" * 100}
    host.listing_override = [
        "2|ok.txt",
        "2|../../etc/passwd",
        "2|/etc/shadow",
        "nonsense",
        "-5|ok.txt",
        "2|ok.txt",
        "1|big.bin",
    ]  # big.bin lies about its size
    artifacts = provider.collect(box, ["*"], tmp_path / "a", max_bytes=50)
    assert [a.path for a in artifacts] == ["ok.txt"]
    assert not (tmp_path / "etc").exists()
    assert provider.destroy(box).clean and host.leftovers() == []


def test_runner_timeout_and_command_not_found(host: FakeHyperVHost) -> None:
    provider = make(host)
    box = provider.create("job-12", spec())
    host.runner_result = {"exit_code": None, "timed_out": True}
    assert provider.exec(box, request(), OutputCapture(10), CancelToken()).timed_out
    host.runner_result = {"exit_code": None, "error": {"code": "job.command_not_found", "message": "no python"}}
    outcome = provider.exec(box, request(), OutputCapture(10), CancelToken())
    assert outcome.error_code == "job.command_not_found"
    host.runner_result = {"exit_code": 3}
    assert provider.exec(box, request(), OutputCapture(10), CancelToken()).exit_code == 3
    run_dirs = {p["JobDir"] for s, p in host.calls if s == "run-job"}
    assert len(run_dirs) == 3  # a fresh output folder per run (sessions run several)
    assert provider.destroy(box).clean


def test_invalid_mounts_fail_before_touching_the_host(host: FakeHyperVHost) -> None:
    provider = make(host)
    with pytest.raises(InvalidMountError):
        provider.create("job-13", spec(mounts=[{"source": "/x", "target": "/etc"}]))
    assert host.calls == []


def test_capacity_is_respected(host: FakeHyperVHost) -> None:
    provider = make(host, max_vms=1)
    box = provider.create("job-14", spec())
    with pytest.raises(CapacityError):
        provider.create("job-15", spec())
    provider.destroy(box)
    provider.destroy(provider.create("job-15", spec()))
    assert host.leftovers() == []


def test_data_disk_children_are_created_and_removed(host: FakeHyperVHost) -> None:
    provider = make(host)
    box = provider.create("job-16", spec(mounts=[{"source": r"D:\data\corpus.vhdx", "target": "corpus"}]))
    (disk,) = box.plan.data_disks
    assert disk.child.lower() in host.files
    prepare = next(p for s, p in host.calls if s == "prepare-guest")
    assert prepare["DiskLabels"] == ["corpus"] and prepare["DiskTargets"] == ["corpus"]
    assert provider.destroy(box).clean and host.leftovers() == []


def test_garbage_collector_only_takes_what_is_ours_and_orphaned(host: FakeHyperVHost) -> None:
    provider = make(host)
    live = provider.create("live-job", spec())
    host.add_orphan("orch-crashed-12345678", "orchestrator:hyperv:v1 sandbox=crashed image=win2022-v1")
    host.add_orphan("orch-not-marked-1", "someone's VM")
    host.add_orphan("dev-box", "orchestrator:hyperv:v1 sandbox=x")  # not our prefix
    host.dirs.add(r"c:\programdata\orchestrator\vms\orch-halfmade-abcdef01")  # crash before New-VM
    removed = provider.reap_orphans({"live-job"})
    assert sorted(removed) == ["orch-crashed-12345678", "orch-halfmade-abcdef01"]
    assert live.plan.vm_name in host.vms and "orch-not-marked-1" in host.vms and "dev-box" in host.vms
    provider.destroy(live)


def test_availability(host: FakeHyperVHost, monkeypatch: pytest.MonkeyPatch) -> None:
    no_host = HyperVProvider(Settings(), hyperv=HyperVSettings.model_validate({"guest_password": "x"}))
    monkeypatch.setattr("sys.platform", "linux")
    result = no_host.availability()
    assert not result.available and "Windows host" in result.reason and "ORCH_WINDOWS__HOST" in result.fix
    winrm = HyperVProvider(Settings.model_validate({"windows": {"transport": "winrm"}}))
    assert "ORCH_WINDOWS__HOST" in winrm.availability().fix

    ok = make(host).availability()
    assert ok.available and ok.details["image"]["version"] == "win2022-v1"
    host.images.clear()
    missing = make(host).availability()
    assert not missing.available and "build-image.ps1" in missing.fix
    no_password = HyperVProvider(Settings(), host)
    assert "ORCH_HYPERV_GUEST_PASSWORD" in no_password.availability().fix


def test_capabilities(host: FakeHyperVHost) -> None:
    caps = make(host, max_iops=500).capabilities()
    assert caps.name == "hyperv" and caps.network_modes == ("none",) and caps.sessions
    assert "MaximumIOPS 500" in caps.limits["disk_iops"]


def test_saved_state_fast_path(host: FakeHyperVHost) -> None:
    provider = make(host, clone_mode="saved_state")
    provider.build_saved_state()
    assert host.leftovers() == []  # the template VM is gone; only its export remains
    box = provider.create("job-17", spec())
    assert "import-vm" in host.steps() and host.steps().count("create-vm") == 1  # once, for the template
    assert provider.destroy(box).clean and host.leftovers() == []
    big = provider.create("job-18", spec(limits={"memory_mb": 8192}))  # other shape: cold boot
    assert host.steps().count("create-vm") == 2
    provider.destroy(big)
